"""amari verify IMAGE...: report each provenance mark of an image and whether amari made it."""

from __future__ import annotations

HELP = "report the watermark, fingerprint, C2PA credentials and metadata that mark an image as amari's"
DESCRIPTION = """\
For each image (or every image in a folder) report each mark separately, then a verdict:

  watermark    amari's invisible watermark, its score and how many of its 40 payload bits were read
               back, and the geometry it was found in (mirrored, rotated, rescaled); it survives JPEG,
               resizing, crops to half of each side, mirroring, small rotations, aspect changes and
               screenshots from 256 px a side (images of 64-255 px carry an older mark that survives
               JPEG 90; smaller ones carry none)
  fingerprint  whether the image is a copy (re-encoded, resized, cropped, mirrored) of an image in a
               fingerprint registry: the cache folder's, and those given with --registry
  c2pa         C2PA content credentials: valid or not, who signed them, whether you trust the signer
               (your own key's root, AMARI_C2PA_TRUST, --trust), whether they declare AI-generated
               media (needs the optional c2pa extra; any re-encode removes them)
  metadata     amari's JSON chunk ("synthetic": true, model, seed, ...) and the A1111-style "parameters"

The verdict is "synthetic, made by amari" only from evidence that cannot be typed in: the watermark,
a fingerprint match, or credentials from a signer you trust. amari's metadata and credentials from a
signer you do not trust are claims anyone can write: alone they give "claims to be made by amari,
not verified". "no amari provenance found" is not a claim that an image is a real photo.

Exit status 0 when every file was read (whatever the verdicts), 1 when some could not be (each named
on stderr), 2 when a --registry or --trust file does not exist. --json prints one JSON object per
image instead."""


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
    parser.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="PEM",
        help="trust C2PA credentials signed under the root certificates in this PEM file; repeatable",
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
    if reading.found and reading.method == "tile2":
        return f"amari watermark ({bits}, z {reading.score:.1f}{_geometry(reading)})"
    if reading.found and reading.method == "tile":
        return f"amari watermark of version 1 ({bits}, z {reading.score:.1f})"
    if reading.found:
        return f"amari watermark ({bits}, DWT-DCT-SVD mark of small and older images)"
    if reading.second is not None and reading.score >= TILE_THRESHOLD:
        return (
            f"no amari watermark: copies of its pattern at several shifts (z {reading.score:.1f} and "
            f"{reading.second:.1f}), as an average of other images' marks makes; not accepted"
        )
    if reading.score is not None:
        return f"no amari watermark (best match z {reading.score:.1f}, below {TILE_THRESHOLD}: chance level)"
    return f"no amari watermark ({bits} match, chance level)"


def _geometry(reading) -> str:
    """How the image was turned, mirrored or rescaled since amari wrote it, when it was."""
    parts = []
    if reading.mirrored:
        parts.append("mirrored")
    if reading.rotation is not None and abs(reading.rotation) >= 0.2:
        parts.append(f"rotated {reading.rotation:+.1f}°")
    if reading.aspect is not None and abs(reading.aspect - 1) >= 0.01:
        parts.append(f"aspect changed {reading.aspect:.2f}")
    if reading.scale is not None and abs(reading.scale - round(2 * reading.scale) / 2) > 0.01:
        parts.append(f"resized to {reading.scale:.2f}× a 512 px image")  # not a size amari writes
    return "; " + ", ".join(parts) if parts else ""


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
    if manifest.trusted:
        return f"trusted: signed by {manifest.signer} ({manifest.issuer}), generator {manifest.generator}, {declared}"
    return (
        f"valid but not a signer you trust (a claim: not your key's root, AMARI_C2PA_TRUST or --trust): signed "
        f"by {manifest.signer} ({manifest.issuer}), generator {manifest.generator}, {declared}"
    )


def _metadata_line(found) -> str:
    marks = []
    meta = found.amari or {}
    if meta:
        marks.append("amari metadata" + (" (synthetic: a claim anyone can write)" if meta.get("synthetic") else ""))
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
    named = result.marks or result.claims
    verdict = result.verdict + (f" ({', '.join(named)})" if named else "")
    if result.marks and result.claims:
        verdict += f"; also claimed by: {', '.join(result.claims)}"
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
    with Verifier(args.registry, trust=args.trust) as verifier:
        for path in _paths(args.images):
            try:
                result = verifier.check(path)
            except ImageError as exc:
                failures += 1
                print(f"WARNING: cannot read {exc.path}: {exc.reason}", file=sys.stderr)
                continue
            print(json.dumps(as_json(result), ensure_ascii=False) if args.json else _summary(result), flush=True)
    return 1 if failures else 0
