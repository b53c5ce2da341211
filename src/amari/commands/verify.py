"""amari verify IMAGE...: read back the watermark and metadata amari writes."""

from __future__ import annotations

HELP = "read the invisible watermark and the metadata that mark an image as amari's (synthetic)"
DESCRIPTION = """\
For each image (or every image in a folder) report what marks it as synthetic:

  watermark   amari's invisible watermark, with how many of its 40 bits were read back (it survives
              re-saving, also as JPEG quality 90 from 128x128 pixels up; images under 64 px a side
              carry none)
  metadata    amari's JSON chunk ("synthetic": true, model, seed, sampler, ...)
  parameters  the A1111-style text other tools show as "PNG info"

Exit status 0 when every file was read, 1 when some could not be. --json prints one JSON object per
image instead."""


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="images or folders to check")
    parser.add_argument("--json", action="store_true", help="one JSON object per image on stdout")


def _paths(items) -> list:
    from pathlib import Path

    from amari.images import image_files

    paths = []
    for item in items:
        path = Path(item)
        paths.extend(image_files(path) if path.is_dir() else [path])
    return paths


def _summary(found) -> str:
    marks = []
    if found.watermark is None:
        marks.append(f"no watermark (smaller than the {_min_side()} px a watermark needs)")
    elif found.watermark.found:
        marks.append(f"amari watermark ({found.watermark.bits_matched}/40 bits)")
    else:
        marks.append(f"no amari watermark ({found.watermark.bits_matched}/40 bits match, chance level)")
    meta = found.amari or {}
    if meta:
        marks.append("amari metadata" + (" (synthetic)" if meta.get("synthetic") else ""))
    if found.parameters:
        marks.append("A1111 parameters")
    verdict = "synthetic, made by amari" if found.synthetic else "no amari provenance found"
    details = _details(found)
    return f"{found.path}: {verdict}: " + "; ".join(marks) + (f"\n  {details}" if details else "")


def _min_side() -> int:
    from amari.provenance import MIN_WATERMARK_SIDE

    return MIN_WATERMARK_SIDE


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
        ("prompt", repr(meta.get("prompt", fields.get("prompt"))) if (meta or fields) else None),
    ]
    return ", ".join(f"{key} {value}" for key, value in pairs if value not in (None, ""))


def _as_json(found) -> dict:
    reading = found.watermark
    return {
        "path": str(found.path),
        "format": found.format,
        "width": found.width,
        "height": found.height,
        "synthetic": found.synthetic,
        "watermark": None
        if reading is None
        else {"found": reading.found, "bit_accuracy": reading.bit_accuracy, "payload_hex": reading.payload.hex()},
        "amari": found.amari,
        "parameters": found.parameters,
    }


def run(args) -> int:
    import json
    import sys

    from amari.errors import ImageError
    from amari.provenance import read_provenance

    failures = 0
    for path in _paths(args.images):
        try:
            found = read_provenance(path)
        except ImageError as exc:
            failures += 1
            print(f"WARNING: cannot read {exc.path}: {exc.reason}", file=sys.stderr)
            continue
        print(json.dumps(_as_json(found), ensure_ascii=False) if args.json else _summary(found), flush=True)
    return 1 if failures else 0
