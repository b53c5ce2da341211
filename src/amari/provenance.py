"""Provenance on every image amari writes, and reading it back.

Marks that do not depend on each other, so that at least one survives what happens to a file:

1. An invisible watermark in the pixels (`amari.watermark`): a tiled pattern that survives JPEG,
   resizing and cropping on images from 256 px a side; smaller ones from 64 px carry the older
   DWT-DCT-SVD mark. Images under 64 px a side are written without one (`MIN_WATERMARK_SIDE`).
2. A fingerprint in registries (`amari.fingerprint`): the cache folder's, and the workspace's or
   study's, so that `amari verify` recognises re-encoded, resized or cropped copies.
3. C2PA content credentials (`amari.credentials`), signed with the user's key when one is
   configured and the optional `c2pa-python` package is installed.
4. A PNG text chunk `parameters` in AUTOMATIC1111's layout, so "PNG info" in A1111, ComfyUI or
   InvokeAI shows prompt, seed, steps, sampler, CFG, size and model.
5. A PNG text chunk `amari` holding JSON: `"synthetic": true`, the generator, and every parameter.

Files are written to a hidden temporary name in the target folder and renamed into place, so a
reader (the miner, another tool watching the folder) never sees half an image; the fingerprint is
registered before the rename, so every file that appears is registered.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from amari import __version__
from amari.errors import ImageError
from amari.watermark import (  # noqa: F401
    MIN_WATERMARK_SIDE,
    PAYLOAD,
    WatermarkReading,
    can_carry_watermark,
    embed_watermark,
    method_for,
    read_watermark,
)
from amari.watermark import check_rgb as _check_rgb

PARAMETERS_KEY = "parameters"
AMARI_KEY = "amari"
GENERATOR = f"amari {__version__}"

# amari scheduler names as A1111 writes them in its `Sampler:` field.
A1111_SAMPLER_NAMES = {
    "ddim": "DDIM",
    "pndm": "PLMS",
    "k_lms": "LMS",
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M Karras",
    "unipc": "UniPC",
}


# 1. Watermark: amari.watermark, re-exported above for the callers that import it from here.


# 2. A1111 `parameters` text -----------------------------------------------------------------------

def _quote(value) -> str:
    # A1111 writes a value as JSON only when a plain one would break its `key: value, ` list.
    text = str(value)
    if any(char in text for char in ',:\n"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def a1111_parameters(params: dict) -> str:
    """The `parameters` text A1111 writes: prompt, `Negative prompt:` line, then `Key: value, ...`."""
    fields: dict[str, object] = {}
    if params.get("steps") is not None:
        fields["Steps"] = params["steps"]
    if params.get("sampler"):
        fields["Sampler"] = A1111_SAMPLER_NAMES.get(params["sampler"], params["sampler"])
    if params.get("cfg_scale") is not None:
        fields["CFG scale"] = params["cfg_scale"]
    if params.get("seed") is not None:
        fields["Seed"] = params["seed"]
    if params.get("width") and params.get("height"):
        fields["Size"] = f"{params['width']}x{params['height']}"
    if params.get("model_hash"):
        fields["Model hash"] = params["model_hash"]
    if params.get("model"):
        fields["Model"] = params["model"]
    if params.get("eta"):
        fields["Eta"] = params["eta"]
    for embedding in params.get("embeddings") or ():
        fields[f"TI {embedding['token']}"] = Path(embedding["path"]).name
    enhance = params.get("enhance") or {}
    if enhance.get("scale") and enhance.get("upscaler"):
        fields["Postprocess upscale by"] = enhance["scale"]
        fields["Postprocess upscaler"] = Path(str(enhance["upscaler"])).stem
    if enhance.get("face_restorer"):
        fields["Postprocess face restoration"] = Path(str(enhance["face_restorer"])).stem
    lines = [str(params.get("prompt", ""))]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in fields.items()))
    return "\n".join(lines)


_FIELD = re.compile(r'\s*([\w][\w \-/+()]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _parse_fields(line: str) -> dict[str, str]:
    fields = {}
    for key, value in _FIELD.findall(line):
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        fields[key.strip()] = value
    return fields


def parse_a1111_parameters(text: str) -> dict:
    """Prompt, negative prompt and the `Key: value` fields of an A1111 `parameters` text.

    Field values are strings as written (`"Seed": "123"`); `Size` also gives `width` and `height`.
    """
    lines = text.strip("\n").split("\n")
    fields: dict[str, object] = {}
    if lines and len(_FIELD.findall(lines[-1])) >= 3:
        fields = _parse_fields(lines.pop())
    prompt_lines, negative_lines, target = [], [], None
    target = prompt_lines
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:"):].lstrip()
        target.append(line)
    result: dict[str, object] = {"prompt": "\n".join(prompt_lines),
                                 "negative_prompt": "\n".join(negative_lines), **fields}
    size = re.fullmatch(r"(\d+)x(\d+)", str(fields.get("Size", "")))
    if size:
        result["width"], result["height"] = int(size.group(1)), int(size.group(2))
    return result


# 3. Writing ---------------------------------------------------------------------------------------

def amari_metadata(params: dict, watermark_method: str | None) -> dict:
    """The JSON amari stores beside the A1111 text: synthetic flag, generator, watermark, params."""
    return {"synthetic": True, "generator": GENERATOR,
            "watermark": {"method": watermark_method or "none", "payload": PAYLOAD.decode(),
                          "embedded": watermark_method is not None},
            **params}


def save_png(image, path: str | os.PathLike, params: dict, *, registries: list[Path] | None = None) -> Path:
    """Write `image` (PIL or uint8 RGB array) as a PNG at `path` with every mark amari has.

    `params` holds what made the image (prompt, negative_prompt, seed, steps, sampler, cfg_scale,
    width, height, model, enhance, ...); it must be JSON-serialisable. The fingerprint goes into
    `registries` (default: the cache's, and the workspace's or study's around `path`). The file
    appears atomically.
    """
    from amari import credentials

    rgb = _check_rgb(image)
    key = credentials.configured_key() if credentials.is_available() else None
    return write_png(rgb, path, {PARAMETERS_KEY: a1111_parameters(params)}, params, key=key,
                     registries=registries)


def write_png(rgb: np.ndarray, path: str | os.PathLike, text: dict[str, str], params: dict, *, key=None,
              agent: str = "amari", registries: list[Path] | None = None) -> Path:
    """The writer behind save_png and `amari mark`: watermark, `text` chunks plus amari's JSON chunk,
    C2PA credentials when `key` (a credentials.SigningKey) is given, fingerprint, atomic rename."""
    from amari import credentials, fingerprint

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: provenance is written into PNG files only")
    rgb = _check_rgb(rgb)
    marked = embed_watermark(rgb)
    info = PngImagePlugin.PngInfo()
    for name, value in text.items():
        if name != AMARI_KEY:
            info.add_text(name, value)
    method = method_for(rgb.shape[1], rgb.shape[0])
    info.add_text(AMARI_KEY, json.dumps(amari_metadata(params, method), ensure_ascii=False))
    buffer = io.BytesIO()
    Image.fromarray(marked).save(buffer, format="PNG", pnginfo=info)
    data = buffer.getvalue()
    if key is not None:
        data = credentials.sign_png(data, key, params, path.name, agent)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and without an image suffix, so folder scans skip it until the rename.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        with open(temporary, "xb") as out:
            out.write(data)
        fingerprint.register(marked, path, data, _registry_info(params, agent), registries)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _registry_info(params: dict, agent: str) -> dict:
    # What a fingerprint match reports about the image; the full parameters stay in the image.
    keep = ("seed", "model", "sampler", "steps", "width", "height", "marked_by", "source")
    info = {name: params[name] for name in keep if params.get(name) is not None}
    if params.get("prompt"):
        info["prompt"] = str(params["prompt"])[:300]
    return {"generator": GENERATOR, "agent": agent, **info}


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


def read_provenance(path: str | os.PathLike, data: bytes | None = None) -> Provenance:
    """Watermark and metadata of the image at `path` (or of its bytes `data`); raises ImageError when
    it cannot be read."""
    return read_image(path, data)[0]


def read_image(path: str | os.PathLike, data: bytes | None = None) -> tuple[Provenance, np.ndarray]:
    """read_provenance and the decoded RGB pixels, for callers that go on to check the other marks."""
    from amari.images import open_image, read_bytes, to_rgb

    path = Path(path)
    data = read_bytes(path) if data is None else data
    image = open_image(data, path=path)
    with Image.open(io.BytesIO(data)) as header:
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
    rgb = to_rgb(image)
    try:
        reading = read_watermark(rgb)
    except ValueError as exc:
        raise ImageError(path, f"cannot read watermark: {exc}") from None
    found = Provenance(path=path, format=file_format,
                       width=image.width, height=image.height, watermark=reading,
                       parameters=parameters,
                       fields=parse_a1111_parameters(parameters) if parameters else {},
                       amari=amari)
    return found, rgb
