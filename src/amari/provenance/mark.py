"""`amari mark`: give images made by other tools (A1111, ComfyUI, InvokeAI) every mark amari writes.

Each image is read, never written: the marked copy goes into the output folder as a PNG (lossless, so
the watermark keeps its full strength and the text chunks have a place) with

- amari's watermark in the pixels;
- its fingerprint in the cache folder's registry (and the output folder's workspace or study, if any);
- C2PA content credentials when a signing key is configured;
- the source's text chunks carried over unchanged (A1111's `parameters`, ComfyUI's `prompt` and
  `workflow`, InvokeAI's metadata), A1111's EXIF comment of a JPEG or WebP as a `parameters` chunk,
  and amari's JSON chunk saying the image is synthetic, which file it came from and its SHA-256.

Transparency is flattened onto white, as everywhere in amari. A source that carries C2PA credentials
keeps its history: the copy's manifest says it was opened from the source (its manifest the ingredient)
and edited, rather than created.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from amari.errors import ImageError, UsageError

AGENT = "amari mark"


@dataclass(frozen=True)
class Marked:
    source: Path
    output: Path
    watermark: str | None  # the mark embedded: "tile2", "dwtDctSvd" or None (under 64 px)
    signed: bool  # C2PA credentials attached
    registries: list[Path] = field(default_factory=list)


def plan(inputs: list[str | os.PathLike], out_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(source, output) pairs: a folder's images keep their relative paths, each output is `.png`."""
    from amari.storage.images import image_files, is_image_path

    out_dir = Path(out_dir)
    sources: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            if out_dir.resolve().is_relative_to(item.resolve()):  # a second run would mark the outputs again
                raise UsageError(f"--out {out_dir} is inside {item}, a folder to mark; choose another folder")
            sources += [(path, path.relative_to(item)) for path in image_files(item)]
        elif item.exists() and not is_image_path(item):
            raise UsageError(f"{item}: not an image file (by its extension)")
        else:
            sources.append((item, Path(item.name)))
    # PNG sources claim `name.png` first; a.jpg beside a.png becomes a-jpg.png.
    order = sorted(range(len(sources)), key=lambda i: sources[i][1].suffix.lower() != ".png")
    targets: dict[int, Path] = {}
    taken: set[Path] = set()
    for index in order:
        relative = sources[index][1]
        target = out_dir / relative.with_suffix(".png")
        number = 1
        while target.absolute() in taken:
            tag = relative.suffix.lstrip(".").lower() + (f"-{number}" if number > 1 else "")
            target = out_dir / relative.with_name(f"{relative.stem}-{tag}.png")
            number += 1
        taken.add(target.absolute())
        targets[index] = target
    pairs = [(source, targets[index]) for index, (source, _) in enumerate(sources)]
    originals = {source.resolve() for source, _ in pairs if source.exists()}
    for _, target in pairs:
        if target.resolve() in originals:
            raise UsageError(f"--out {out_dir} would overwrite the original {target}; choose another folder")
    return pairs


def source_metadata(image, data: bytes, source: Path, file_format: str) -> tuple[dict[str, str], dict]:
    """The text chunks to carry over, and the parameters amari records, for one source image."""
    from amari.provenance.fingerprint import file_digest
    from amari.provenance.infotext import PARAMETERS_KEY, parse_a1111_parameters
    from amari.provenance.png import AMARI_KEY, exif_comment

    text = {key: value for key, value in image.info.items() if isinstance(value, str) and key != AMARI_KEY}
    if PARAMETERS_KEY not in text:
        comment = exif_comment(image)
        if comment:
            text[PARAMETERS_KEY] = comment
    params: dict = {
        "marked_by": AGENT,
        "source": {"file": source.name, "format": file_format, "sha256": file_digest(data)},
    }
    try:  # an image amari made before: keep what its own JSON said
        earlier = json.loads(image.info.get(AMARI_KEY) or "null")
    except (TypeError, ValueError):
        earlier = None
    if isinstance(earlier, dict):
        params["source"]["amari"] = earlier
    if text.get(PARAMETERS_KEY):
        fields = parse_a1111_parameters(text[PARAMETERS_KEY])
        names = {
            "prompt": "prompt",
            "negative_prompt": "negative_prompt",
            "Seed": "seed",
            "Steps": "steps",
            "Sampler": "sampler",
            "CFG scale": "cfg_scale",
            "Model": "model",
            "width": "width",
            "height": "height",
        }
        params.update({ours: fields[theirs] for theirs, ours in names.items() if fields.get(theirs) not in (None, "")})
    return text, params


def mark_file(source: Path, output: Path, key=None, registries: list[Path] | None = None) -> Marked:
    """Mark one image; raises ImageError when the source cannot be read."""
    from PIL import Image

    from amari.provenance.png import marked_png, write_marked
    from amari.provenance.registries import registry_paths_for
    from amari.provenance.watermark import method_for
    from amari.storage.images import open_image, read_bytes, to_rgb

    data = read_bytes(source)
    image = open_image(data, path=source)
    try:
        with Image.open(io.BytesIO(data)) as header:
            file_format = header.format or source.suffix.lstrip(".").upper()
    except OSError as exc:
        raise ImageError(source, f"cannot read: {exc}") from None
    text, params = source_metadata(image, data, source, file_format)
    rgb = to_rgb(image)
    targets = registries if registries is not None else registry_paths_for(output)
    parent = _parent(data, source, file_format) if key is not None else None
    marked, png = marked_png(rgb, params, text=text, agent=AGENT, title=output.name, key=key, parent=parent)
    write_marked(output, marked, png, params, agent=AGENT, registries=targets)
    return Marked(
        source=source,
        output=output,
        watermark=method_for(rgb.shape[1], rgb.shape[0]),
        signed=key is not None,
        registries=list(targets),
    )


def _parent(data: bytes, source: Path, file_format: str):
    """The source as the ingredient of the copy's credentials, when it carries credentials of its own."""
    from PIL import Image

    from amari.provenance.credentials import Parent, read_credentials

    mime = Image.MIME.get(file_format.upper())
    if mime is None or read_credentials(data, mime) is None:
        return None
    return Parent(data=data, mime=mime, title=source.name)


def mark_images(
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    key=None,
    on_marked: Callable[[Marked], None] | None = None,
    on_error: Callable[[ImageError], None] | None = None,
) -> list[Marked]:
    """Mark every image in `inputs` (files or folders) into `out_dir`; unreadable ones are skipped."""
    done = []
    for source, output in plan(inputs, out_dir):
        try:
            marked = mark_file(source, output, key)
        except ImageError as exc:
            if on_error is None:
                raise
            on_error(exc)
            continue
        done.append(marked)
        if on_marked is not None:
            on_marked(marked)
    return done
