"""Provenance on every image amari writes, and reading it back.

Three marks, so that at least one survives whatever happens to a file:

1. An invisible watermark in the pixels (the `invisible-watermark` package, DWT-DCT-SVD on the U
   colour channel, the 40-bit payload `amari` repeated over the whole image). It survives saving as
   JPEG quality 90 from 128×128 up and lossless saving from 64×64 up; smaller images are written
   without one (`MIN_WATERMARK_SIDE`). The package's plain `dwtDct` method, which Stable Diffusion's
   reference scripts used, does not survive JPEG at quality 90 at any size, hence the SVD variant.
2. PNG text chunks that other tools read: `parameters` in AUTOMATIC1111's layout ("PNG info" in A1111
   and ComfyUI's import show prompt, seed, steps, sampler, CFG, size, model and embeddings) and
   `invokeai_metadata` for InvokeAI's "recall parameters" (`amari.infotext`).
3. A PNG text chunk `amari` holding JSON: `"synthetic": true`, the generator, and every parameter.

Files are written to a hidden temporary name in the target folder and renamed into place, so a
reader (the miner, another tool watching the folder) never sees half an image.
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
from amari.infotext import (
    INVOKEAI_KEY,
    PARAMETERS_KEY,
    a1111_parameters,
    add_text_chunk,
    invokeai_metadata,
    parse_a1111_parameters,
)

PAYLOAD = b"amari"
WATERMARK_METHOD = "dwtDctSvd"
# Each 4×4 block of the half-resolution wavelet band carries one bit; below 64 px a side there are
# too few blocks to repeat the 40 bits, and lossless saving already loses some of them.
MIN_WATERMARK_SIDE = 64
# Share of payload bits that must match. Unmarked images read 0.4-0.66; marked ones >= 0.93 after
# lossless saving from 64 px and after JPEG q90 from 128 px. 36 of 40 bits by chance: p < 1e-7.
DETECTION_THRESHOLD = 0.9

AMARI_KEY = "amari"
GENERATOR = f"amari {__version__}"
# zlib level of the PNGs amari writes: on photographs bench/png_level.py measured level 4 at about a
# third of the default 6's time for files 1-3 % larger (level 1: a quarter, but 15-20 % larger);
# docs/mining.md has the figures.
PNG_COMPRESS_LEVEL = 4


# 1. Watermark -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatermarkReading:
    """What the watermark decoder read: the bits as bytes and how many matched amari's payload."""

    found: bool
    bit_accuracy: float
    payload: bytes

    @property
    def bits_matched(self) -> int:
        return round(self.bit_accuracy * len(PAYLOAD) * 8)


def _payload_bits() -> list[int]:
    return [int(bit) for bit in np.unpackbits(np.frombuffer(PAYLOAD, dtype=np.uint8))]


def can_carry_watermark(width: int, height: int) -> bool:
    return min(width, height) >= MIN_WATERMARK_SIDE


def _embedder(bits: list[int]):
    # The package's WatermarkEncoder wrapper refuses images under 256×256; its embedder class is
    # the same code without that limit, which the measurements above cover down to 64×64.
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    return EmbedDwtDctSvd(watermarks=bits, wmLen=len(PAYLOAD) * 8)


def embed_watermark(rgb: np.ndarray) -> np.ndarray:
    """`rgb` (uint8 H×W×3) with amari's watermark; unchanged when smaller than MIN_WATERMARK_SIDE."""
    rgb = _check_rgb(rgb)
    height, width = rgb.shape[:2]
    if not can_carry_watermark(width, height):
        return rgb
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    marked = _embedder(_payload_bits()).encode(bgr)
    return np.ascontiguousarray(marked[..., ::-1])


def read_watermark(rgb: np.ndarray) -> WatermarkReading | None:
    """Decode amari's watermark from `rgb`; None when the image is too small to carry one."""
    rgb = _check_rgb(rgb)
    height, width = rgb.shape[:2]
    if not can_carry_watermark(width, height):
        return None
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    bits = np.asarray(_embedder([]).decode(bgr), dtype=np.uint8)
    accuracy = float(np.mean(bits == np.asarray(_payload_bits(), dtype=np.uint8)))
    return WatermarkReading(
        found=accuracy >= DETECTION_THRESHOLD, bit_accuracy=accuracy, payload=np.packbits(bits).tobytes()
    )


def _check_rgb(rgb) -> np.ndarray:
    if isinstance(rgb, Image.Image):
        rgb = np.asarray(rgb.convert("RGB"))
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 H×W×3 RGB image, got {rgb.dtype} {rgb.shape}")
    return rgb


# 3. Writing ---------------------------------------------------------------------------------------


def amari_metadata(params: dict, watermarked: bool) -> dict:
    """The JSON amari stores beside the A1111 text: synthetic flag, generator, watermark, params."""
    return {
        "synthetic": True,
        "generator": GENERATOR,
        "watermark": {"method": WATERMARK_METHOD, "payload": PAYLOAD.decode(), "embedded": watermarked},
        **params,
    }


def marked_png(image, params: dict) -> tuple[np.ndarray, bytes]:
    """`image` (PIL or uint8 RGB array) watermarked, and the PNG file holding it with amari's chunks.

    `params` holds what made the image (prompt, negative_prompt, seed, steps, sampler, cfg_scale,
    width, height, model, enhance, ...); it must be JSON-serialisable. The pixels returned are exactly
    the file's, so faces can be found in them without reading the file back.
    """
    rgb = _check_rgb(image)
    watermarked = can_carry_watermark(rgb.shape[1], rgb.shape[0])
    marked = embed_watermark(rgb)
    info = PngImagePlugin.PngInfo()
    add_text_chunk(info, PARAMETERS_KEY, a1111_parameters(params))
    add_text_chunk(info, INVOKEAI_KEY, json.dumps(invokeai_metadata(params), ensure_ascii=False))
    add_text_chunk(info, AMARI_KEY, json.dumps(amari_metadata(params, watermarked), ensure_ascii=False))
    buffer = io.BytesIO()
    Image.fromarray(marked).save(buffer, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return marked, buffer.getvalue()


def save_png(image, path: str | os.PathLike, params: dict) -> Path:
    """Write `image` as a PNG at `path` with watermark and metadata (`marked_png`), atomically."""
    from amari.files import write_atomic

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: provenance is written into PNG files only")
    _marked, data = marked_png(image, params)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, data)


# 4. Reading ---------------------------------------------------------------------------------------


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


def _exif_comment(image: Image.Image) -> str | None:
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


def read_provenance(path: str | os.PathLike) -> Provenance:
    """Watermark and metadata of the image at `path`; raises ImageError when it cannot be read."""
    from amari.images import open_image, to_rgb

    path = Path(path)
    image = open_image(path)
    with Image.open(path) as header:
        file_format = header.format or path.suffix.lstrip(".").upper()
    parameters = image.info.get(PARAMETERS_KEY) or _exif_comment(image)
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
    try:
        reading = read_watermark(to_rgb(image))
    except ValueError as exc:
        raise ImageError(path, f"cannot read watermark: {exc}") from None
    return Provenance(
        path=path,
        format=file_format,
        width=image.width,
        height=image.height,
        watermark=reading,
        parameters=parameters,
        fields=parse_a1111_parameters(parameters) if parameters else {},
        amari=amari,
    )
