"""Provenance on every image amari writes, and reading it back.

Marks that do not depend on each other, so that at least one survives what happens to a file:

1. An invisible watermark in the pixels (`amari.provenance.watermark`): a tiled pattern that survives JPEG,
   resizing and cropping on images from 256 px a side; smaller ones from 64 px carry the older
   DWT-DCT-SVD mark. Images under 64 px a side are written without one (`MIN_WATERMARK_SIDE`).
2. A fingerprint in registries (`amari.provenance.fingerprint`): the cache folder's, and the workspace's or
   study's, so that `amari verify` recognises re-encoded, resized or cropped copies.
3. C2PA content credentials (`amari.provenance.credentials`), signed with the user's key when one is
   configured and the optional `c2pa-python` package is installed.
4. PNG text chunks that other tools read: `parameters` in AUTOMATIC1111's layout ("PNG info" in A1111
   and ComfyUI's import show prompt, seed, steps, sampler, CFG, size, model and embeddings) and
   `invokeai_metadata` for InvokeAI's "recall parameters" (`amari.provenance.infotext`).
5. A PNG text chunk `amari` holding JSON: `"synthetic": true`, the generator, and every parameter.

`marked_png` makes the file in memory (marks 1, 3, 4, 5) and `fingerprint_of` its fingerprint (2), so
that a worker process can do both; the writer then records the fingerprint and renames the file into
place (`write_marked`, or the miner's `FeedContext.accept`). Files are written to a hidden temporary
name in the target folder and renamed into place, so a reader (the miner, another tool watching the
folder) never sees half an image; the fingerprint is recorded before the rename, so every file that
appears is registered.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from amari import __version__
from amari.errors import ImageError
from amari.provenance.fingerprint import Fingerprint
from amari.provenance.infotext import (
    INVOKEAI_KEY,
    PARAMETERS_KEY,
    a1111_parameters,
    add_text_chunk,
    invokeai_metadata,
    parse_a1111_parameters,
)
from amari.provenance.watermark import (  # noqa: F401 - the watermark's names, for callers that import them from here
    MIN_WATERMARK_SIDE,
    PAYLOAD,
    WatermarkReading,
    can_carry_watermark,
    check_rgb,
    embed_watermark,
    method_for,
    read_watermark,
)

AMARI_KEY = "amari"
GENERATOR = f"amari {__version__}"
# zlib level of the PNGs amari writes: on photographs bench/png_level.py measured level 4 at about a
# third of the default 6's time for files 1-3 % larger (level 1: a quarter, but 15-20 % larger);
# docs/mining.md has the figures.
PNG_COMPRESS_LEVEL = 4


# 1. Watermark: amari.provenance.watermark, imported above.

# 2. Writing ---------------------------------------------------------------------------------------


def amari_metadata(params: dict, watermark_method: str | None) -> dict:
    """The JSON amari stores beside the A1111 text: synthetic flag, generator, watermark, params."""
    return {
        "synthetic": True,
        "generator": GENERATOR,
        "watermark": {
            "method": watermark_method or "none",
            "payload": PAYLOAD.decode(),
            "embedded": watermark_method is not None,
        },
        **params,
    }


def marked_png(
    image,
    params: dict,
    *,
    text: dict[str, str] | None = None,
    agent: str = "amari",
    title: str | None = None,
    key=None,
    parent=None,
    faces=None,
    face_scale: float = 1.0,
) -> tuple[np.ndarray, bytes]:
    """`image` (PIL or uint8 RGB array) watermarked, and the PNG file holding it with amari's chunks.

    `params` holds what made the image (prompt, negative_prompt, seed, steps, sampler, cfg_scale,
    width, height, model, enhance, ...); it must be JSON-serialisable. `text` are the text chunks
    besides amari's JSON (default: A1111's `parameters` and InvokeAI's metadata, made from `params`).
    With `key` (a `credentials.SigningKey`) the file carries C2PA credentials titled `title`, signed by
    `agent`; with `parent` (a `credentials.Parent`), they continue the credentials of the file it came
    from. The pixels returned are exactly the file's, so faces can be found and the fingerprint computed
    in them without reading the file back. The watermark leaves `faces` alone (found in a copy
    `face_scale` times smaller; by default it finds them itself, see `embed_watermark`).
    """
    rgb = check_rgb(image)
    marked = embed_watermark(rgb, faces, face_scale)
    if text is None:
        text = {
            PARAMETERS_KEY: a1111_parameters(params),
            INVOKEAI_KEY: json.dumps(invokeai_metadata(params)),
        }
    info = PngImagePlugin.PngInfo()
    for name, value in text.items():
        if name != AMARI_KEY:
            add_text_chunk(info, name, value)
    method = method_for(rgb.shape[1], rgb.shape[0])
    add_text_chunk(info, AMARI_KEY, json.dumps(amari_metadata(params, method)))
    buffer = io.BytesIO()
    Image.fromarray(marked).save(buffer, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    data = buffer.getvalue()
    if key is not None:
        from amari.provenance.credentials import sign_png

        data = sign_png(data, key, params, title, agent, parent)
    return marked, data


def registry_info(params: dict, agent: str = "amari") -> dict:
    """What a fingerprint match reports about the image; the full parameters stay in the image."""
    keep = ("seed", "model", "sampler", "steps", "width", "height", "marked_by", "source")
    info = {name: params[name] for name in keep if params.get(name) is not None}
    if params.get("prompt"):
        info["prompt"] = str(params["prompt"])[:300]
    return {"generator": GENERATOR, "agent": agent, **info}


def fingerprint_of(marked: np.ndarray, png: bytes, params: dict, agent: str = "amari") -> Fingerprint:
    """The fingerprint of a file `marked_png` made: the CPU work of registering it, done where the file
    was made; the writer only records it."""
    return Fingerprint.of(marked, png, registry_info(params, agent))


def write_marked(
    path: str | os.PathLike,
    marked: np.ndarray,
    png: bytes,
    params: dict,
    *,
    agent: str = "amari",
    registries: list[Path] | None = None,
) -> Path:
    """Write the file `marked_png` made at `path`, its fingerprint recorded first in `registries`
    (default: the cache's, and the workspace's or study's around `path`), then renamed into place."""
    from amari.provenance.registries import Registries, registry_paths_for

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Registries(registry_paths_for(path) if registries is None else registries) as opened:
        return opened.write(path, png, fingerprint_of(marked, png, params, agent))


def save_png(
    image,
    path: str | os.PathLike,
    params: dict,
    *,
    registries: list[Path] | None = None,
    faces=None,
) -> Path:
    """Write `image` as a PNG at `path` with every mark amari has (`marked_png`, `write_marked`),
    signed with the configured C2PA key if there is one. The file appears atomically. The watermark
    leaves `faces` alone (found in the image as given; by default it finds portrait-sized faces itself)."""
    from amari.provenance import credentials

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: provenance is written into PNG files only")
    key = credentials.configured_key() if credentials.is_available() else None
    marked, data = marked_png(image, params, title=path.name, key=key, faces=faces)
    return write_marked(path, marked, data, params, registries=registries)


# 3. Reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provenance:
    """What one image file says about where it came from."""

    path: Path
    format: str
    width: int
    height: int
    watermark: WatermarkReading | None  # None: too small to carry one
    parameters: str | None  # A1111 text, from a PNG chunk or a JPEG/WebP EXIF comment
    fields: dict = field(default_factory=dict)  # parse_a1111_parameters(parameters)
    amari: dict | None = None  # amari's JSON chunk

    @property
    def watermarked(self) -> bool:
        return self.watermark is not None and self.watermark.found

    @property
    def synthetic(self) -> bool:
        """True when the watermark or amari's metadata says amari made the image."""
        return self.watermarked or bool(self.amari and self.amari.get("synthetic"))


_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286


def exif_comment(image: Image.Image) -> str | None:
    # A1111 stores `parameters` of JPEG and WebP files in the EXIF UserComment (8-byte charset prefix).
    try:
        raw = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # noqa: BLE001 - a damaged EXIF block only means no comment
        return None
    if isinstance(raw, str):
        return raw or None
    if not isinstance(raw, bytes) or len(raw) <= 8:
        return None
    prefix, body = raw[:8], raw[8:]
    if prefix.startswith(b"UNICODE"):
        encoding = "utf-16-le" if body[:1] != b"\x00" and body[1:2] == b"\x00" else "utf-16-be"
    else:
        encoding = "utf-8"
    text = body.decode(encoding, errors="replace").rstrip("\x00")
    return text or None


def read_provenance(path: str | os.PathLike, data: bytes | None = None) -> Provenance:
    """Watermark and metadata of the image at `path` (or of its bytes `data`); raises ImageError when
    it cannot be read."""
    return read_image(path, data)[0]


def read_image(path: str | os.PathLike, data: bytes | None = None) -> tuple[Provenance, np.ndarray]:
    """read_provenance and the decoded RGB pixels, for callers that go on to check the other marks."""
    from amari.storage.images import open_image, read_bytes, to_rgb

    path = Path(path)
    data = read_bytes(path) if data is None else data
    image = open_image(data, path=path)
    with Image.open(io.BytesIO(data)) as header:
        file_format = header.format or path.suffix.lstrip(".").upper()
    parameters = image.info.get(PARAMETERS_KEY) or exif_comment(image)
    if not isinstance(parameters, str):
        parameters = None
    amari = None
    raw_json = image.info.get(AMARI_KEY)
    if raw_json:
        try:
            amari = json.loads(raw_json)
        except json.JSONDecodeError:
            amari = None
    if amari is not None and not isinstance(amari, dict):
        amari = None
    rgb = to_rgb(image)
    try:
        reading = read_watermark(rgb)
    except ValueError as exc:
        raise ImageError(path, f"cannot read watermark: {exc}") from None
    found = Provenance(
        path=path,
        format=file_format,
        width=image.width,
        height=image.height,
        watermark=reading,
        parameters=parameters,
        fields=parse_a1111_parameters(parameters) if parameters else {},
        amari=amari,
    )
    return found, rgb
