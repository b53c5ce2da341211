"""amari verify IMAGE...: report each provenance mark of an image and whether amari made it."""

from __future__ import annotations

HELP = "report the watermark, fingerprint, C2PA credentials and metadata that mark an image as amari's"
DESCRIPTION = """\
For each image (or every image in a folder) report each mark separately, then a verdict:

  watermark    amari's invisible watermark and how many of its 40 payload bits were read back; it
               survives JPEG, resizing and cropping from 256 px a side (images of 64-255 px carry an
               older mark that survives JPEG 90; smaller ones carry none)
  fingerprint  whether the image is a copy (re-encoded, resized, cropped, mirrored) of an image in a
               fingerprint registry: the cache folder's, and those given with --registry
  c2pa         C2PA content credentials: valid or not, who signed them, whether they declare AI-generated
               media (needs the optional c2pa extra; any re-encode removes them)
  metadata     amari's JSON chunk ("synthetic": true, model, seed, ...) and the A1111-style "parameters"

The verdict is "synthetic, made by amari" when any mark says so. "no amari provenance found" is not
a claim that an image is a real photo.

Exit status 0 when every file was read (whatever the verdicts), 1 when some could not be (each named
on stderr), 2 when a --registry does not exist. --json prints one JSON object per image instead."""


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="images or folders to check")
    parser.add_argument(
        "--registry",
        action="append",
        default=[],
        metavar="PATH",
        help="also search this fingerprint registry (a provenance.sqlite file, or a workspace "
        "or study folder holding one); repeatable",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per image on stdout")


def _paths(items) -> list:
    from pathlib import Path

    from amari.storage.images import image_files

    paths = []
    for item in items:
        path = Path(item)
        paths.extend(image_files(path) if path.is_dir() else [path])
    return paths


def _watermark_line(found) -> str:
    from amari.provenance.watermark import MIN_WATERMARK_SIDE, PAYLOAD_BITS, TILE_THRESHOLD

    reading = found.watermark
    if reading is None:
        return f"none (smaller than the {MIN_WATERMARK_SIDE} px a watermark needs)"
    bits = f"{reading.bits_matched}/{PAYLOAD_BITS} bits"
    if reading.found and reading.method == "tile":
        return f"amari watermark ({bits}, z {reading.score:.1f})"
    if reading.found:
        return f"amari watermark ({bits}, DWT-DCT-SVD mark of small and older images)"
    if reading.score is not None:
        return f"no amari watermark (best match z {reading.score:.1f}, below {TILE_THRESHOLD}: chance level)"
    return f"no amari watermark ({bits} match, chance level)"


def _fingerprint_line(result) -> str:
    from amari.provenance.fingerprint import HASH_BITS

    match = result.fingerprint
    if match is None:
        searched = ", ".join(result.registries) if result.registries else "no registry yet"
        return f"no match ({searched})"
    how = {"file": "identical file", "pixels": "same pixels, other metadata"}.get(
        match.kind, f"perceptual, {match.distance}/{HASH_BITS} bits apart" + (", mirrored" if match.mirrored else "")
    )
    about = ", ".join(f"{key} {match.info[key]}" for key in ("seed", "model", "agent") if match.info.get(key))
    return f"copy of {match.path} ({how}{'; ' + about if about else ''}) in {match.registry}"


def _c2pa_line(result) -> str:
    manifest = result.credentials
    if result.c2pa_note:
        return result.c2pa_note
    if manifest is None:
        return "none (no manifest in the file; any re-encode removes it)"
    declared = "AI-generated (trainedAlgorithmicMedia)" if manifest.synthetic else "no AI-generation claim"
    if not manifest.valid:
        return (
            f"invalid manifest ({', '.join(manifest.failures) or 'signature does not verify'}), signed by "
            f"{manifest.signer}"
        )
    trust = "trusted" if manifest.state == "Trusted" else "valid, signer not on a trust list"
    return f"{trust}: signed by {manifest.signer} ({manifest.issuer}), generator {manifest.generator}, {declared}"


def _metadata_line(found) -> str:
    marks = []
    meta = found.amari or {}
    if meta:
        marks.append("amari metadata" + (" (synthetic)" if meta.get("synthetic") else ""))
    if found.parameters:
        marks.append("A1111 parameters")
    return "; ".join(marks) or "none"


def _details(found) -> str:
    meta = found.amari or {}
    fields = found.fields or {}
    pairs = [
        ("generator", meta.get("generator")),
        ("model", meta.get("model") or fields.get("Model")),
        ("seed", meta.get("seed", fields.get("Seed"))),
        ("sampler", meta.get("sampler") or fields.get("Sampler")),
        ("steps", meta.get("steps", fields.get("Steps"))),
        ("cfg", meta.get("cfg_scale", fields.get("CFG scale"))),
        ("size", f"{meta['width']}x{meta['height']}" if meta.get("width") else fields.get("Size")),
        ("prompt", repr(prompt) if (prompt := meta.get("prompt", fields.get("prompt"))) is not None else None),
    ]
    return ", ".join(f"{key} {value}" for key, value in pairs if value not in (None, ""))


def _summary(result) -> str:
    found = result.provenance
    verdict = result.verdict + (f" ({', '.join(result.marks)})" if result.marks else "")
    lines = [
        f"{found.path}: {verdict}",
        f"  watermark    {_watermark_line(found)}",
        f"  fingerprint  {_fingerprint_line(result)}",
        f"  c2pa         {_c2pa_line(result)}",
        f"  metadata     {_metadata_line(found)}",
    ]
    details = _details(found)
    if details:
        lines.append(f"  made with    {details}")
    return "\n".join(lines)


def run(args) -> int:
    import json
    import sys

    from amari.errors import ImageError
    from amari.provenance.verification import Verifier, as_json

    failures = 0
    with Verifier(args.registry) as verifier:
        for path in _paths(args.images):
            try:
                result = verifier.check(path)
            except ImageError as exc:
                failures += 1
                print(f"WARNING: cannot read {exc.path}: {exc.reason}", file=sys.stderr)
                continue
            print(json.dumps(as_json(result), ensure_ascii=False) if args.json else _summary(result), flush=True)
    return 1 if failures else 0
