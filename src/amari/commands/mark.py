"""amari mark IMAGE_OR_DIR... --out DIR: give other tools' images amari's watermark, fingerprint and C2PA."""

from __future__ import annotations

HELP = "mark images made by other tools (A1111, ComfyUI, InvokeAI) with amari's watermark, fingerprint and C2PA"
DESCRIPTION = """\
Copy each image (or every image in a folder, keeping relative paths) into --out as a PNG that carries
every mark amari writes:

  watermark    amari's invisible watermark (survives JPEG, resizing and cropping from 256 px a side)
  fingerprint  recorded in the cache folder's registry, so `amari verify` recognises copies later
  c2pa         content credentials declaring AI-generated media, signed with your key (see keygen;
               AMARI_C2PA_KEY or --key); without a key or the c2pa extra, none, and a note says so
  metadata     the source's own text chunks (A1111 parameters, ComfyUI workflow, ...) plus amari's
               JSON chunk marking it synthetic and naming the source file and its SHA-256

The originals are only read, never changed; an --out that would overwrite one is refused. Each output
appears complete or not at all. Running `amari mark` asserts that the images are AI-generated.

Exit status 0 when every image was marked, 1 when some could not be read (each named on stderr)."""


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="images or folders to mark")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the marked PNGs")
    parser.add_argument(
        "--key",
        metavar="PATH",
        help="PEM private key for C2PA (its chain: AMARI_C2PA_CERT or the same path with .pem); "
        "default: AMARI_C2PA_KEY, else the key `amari keygen` wrote",
    )


def run(args) -> int:
    import sys

    from amari.errors import UsageError
    from amari.provenance import credentials
    from amari.provenance.mark import mark_images

    if args.key and not credentials.is_available():
        raise UsageError(f"--key needs C2PA support: {credentials.INSTALL_HINT}")
    key = credentials.configured_key(args.key) if credentials.is_available() else None
    note = credentials.signing_note(key)
    if note:
        print(note, file=sys.stderr)
    failures = []

    def report(marked) -> None:
        marks = [
            f"watermark ({marked.watermark})" if marked.watermark else "no watermark (under 64 px)",
            "fingerprint registered",
            "C2PA signed" if marked.signed else "no C2PA",
        ]
        print(f"{marked.source} -> {marked.output}: {', '.join(marks)}", flush=True)

    def skip(error) -> None:
        failures.append(error)
        print(f"WARNING: cannot read {error.path}: {error.reason}", file=sys.stderr)

    done = mark_images(args.images, args.out, key, on_marked=report, on_error=skip)
    if not done and not failures:
        raise UsageError("no images found to mark")
    return 1 if failures else 0
