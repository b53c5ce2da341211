"""IP-Adapter: generation conditioned on images of the identity (the sim-group's faces) through diffusers'
`load_ip_adapter`, with the mean of their image embeddings.

Only variants that need nothing but a CLIP image encoder are offered (h94/IP-Adapter's `plus-face` and
`full-face`, Apache-2.0): the FaceID variants need insightface's face model, whose weights are for
non-commercial research only. A variant is named once and resolved per model family (`FACE_VARIANTS`,
keyed by the family's base name as InvokeAI writes it); a `.safetensors` file of the same layout works
too, its image encoder in `image_encoder/` beside it or given as a folder. Pickled `.bin` adapters are
refused. The guide's embedding is computed once per guide and kept while the guide is the same.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from amari.errors import ModelError, UsageError

HUB_REPO = "h94/IP-Adapter"
IMAGE_ENCODER_FOLDER = "image_encoder"
# The face variants that need only a CLIP image encoder (ViT-H/14, `models/image_encoder` of the repo), by
# family. SD 2.x has none; a family that gains one adds its file here.
FACE_VARIANTS: dict[str, dict[str, str]] = {
    "plus-face": {
        "sd-1": "models/ip-adapter-plus-face_sd15.safetensors",
        "sdxl": "sdxl_models/ip-adapter-plus-face_sdxl_vit-h.safetensors",
    },
    "full-face": {"sd-1": "models/ip-adapter-full-face_sd15.safetensors"},
}
HUB_IMAGE_ENCODER = "models/image_encoder"
GUIDE_SIDE = 224  # CLIP's input: guide images are kept no larger, so passing them around stays cheap


@dataclass(frozen=True)
class Guide:
    """The images generation is conditioned on (face crops, RGB arrays), named by their content."""

    key: str  # a short digest of the images' content hashes: which guide made an image
    images: tuple = field(default=(), compare=False, hash=False, repr=False)


def make_guide(images, hashes) -> Guide:
    """A guide from RGB arrays and the content hashes of the files they came from."""
    import numpy as np
    from PIL import Image

    digest = hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:12]
    small = []
    for image in images:
        picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
        scale = GUIDE_SIDE / min(picture.size)
        if scale < 1:
            picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.BICUBIC)
        small.append(np.array(picture))
    return Guide(digest, tuple(small))


@dataclass(frozen=True)
class IpAdapter:
    """An IP-Adapter and what it is guided by: `weights` is a variant name or a .safetensors file."""

    weights: str
    scale: float
    guide: Guide
    image_encoder: str | None = None

    def __post_init__(self):
        if not (math.isfinite(self.scale) and self.scale >= 0):
            raise UsageError(f"IP-Adapter scale must be a number >= 0, not {self.scale}")
        if not self.guide.images:
            raise UsageError("an IP-Adapter needs at least one image to be guided by")


def check_adapter_weights(weights: str) -> None:
    """Refuse what cannot be an adapter before any model loads."""
    if weights in FACE_VARIANTS:
        return
    path = Path(weights).expanduser()
    if path.suffix.lower() != ".safetensors":
        known = ", ".join(FACE_VARIANTS)
        raise UsageError(
            f"IP-Adapter {weights!r}: give a variant ({known}) or a .safetensors file "
            "(pickled .bin adapters are not loaded)"
        )
    if not path.is_file():
        raise UsageError(f"IP-Adapter file not found: {path}")


def resolve(weights: str, image_encoder: str | None, base: str | None) -> tuple[Path, Path]:
    """(weights file, image encoder folder) for a model of family `base`."""
    check_adapter_weights(weights)
    if weights in FACE_VARIANTS:
        files = FACE_VARIANTS[weights]
        if base not in files:
            raise ModelError(
                f"IP-Adapter {weights!r} exists for {', '.join(files)}, not for this model ({base or 'unknown family'})"
            )
        path = _from_hub(files[base])
        encoder = Path(image_encoder).expanduser() if image_encoder else _from_hub(HUB_IMAGE_ENCODER, folder=True)
    else:
        path = Path(weights).expanduser().resolve()
        encoder = Path(image_encoder).expanduser() if image_encoder else path.parent / IMAGE_ENCODER_FOLDER
    if not (encoder / "config.json").is_file():
        raise ModelError(f"no CLIP image encoder in {encoder} (config.json and its weights; --image-encoder DIR)")
    return path, encoder


def _from_hub(name: str, folder: bool = False) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    from amari.models.files import is_offline

    try:
        if folder:
            root = snapshot_download(HUB_REPO, allow_patterns=[f"{name}/*"], local_files_only=is_offline())
            return Path(root) / name
        return Path(hf_hub_download(HUB_REPO, name, local_files_only=is_offline()))
    except Exception as exc:  # noqa: BLE001 - network, cache and hub errors all end the same way
        raise ModelError(
            f"IP-Adapter file {HUB_REPO}/{name} is not in the Hugging Face cache and could not be fetched "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); while online, run once, "
            "or give the .safetensors file's path"
        ) from None


@dataclass
class AdapterState:
    """What a loaded pipeline holds of an adapter: its files, its encoder, the guide's embeddings."""

    weights: Path | None = None
    encoder_folder: Path | None = None
    encoder: object = None
    embeddings: dict = field(default_factory=dict)  # guide key -> (negative, positive) tensor


def apply_ip_adapter(pipe, state: AdapterState, wanted: IpAdapter | None, base: str | None, guidance: float) -> dict:
    """Make `pipe` hold the `wanted` adapter at its scale (or none); returns the call's extra arguments."""
    if wanted is None:
        if state.weights is not None:
            pipe.unload_ip_adapter()
            state.weights = None
        return {}
    weights, encoder = resolve(wanted.weights, wanted.image_encoder, base)
    if state.weights != weights or state.encoder_folder != encoder:
        if state.weights is not None:
            pipe.unload_ip_adapter()
        _load(pipe, state, weights, encoder)
    pipe.set_ip_adapter_scale(wanted.scale)
    embeds = state.embeddings.get(wanted.guide.key)
    if embeds is None:
        state.embeddings = {wanted.guide.key: _mean_embedding(pipe, state.encoder, wanted.guide)}  # one guide kept
        embeds = state.embeddings[wanted.guide.key]
    return {"ip_adapter_image_embeds": [embeds if guidance > 1 else embeds[1:]]}


def _load(pipe, state: AdapterState, weights: Path, encoder_folder: Path) -> None:
    from transformers import CLIPVisionModelWithProjection

    try:
        if state.encoder is None or state.encoder_folder != encoder_folder:
            state.encoder = CLIPVisionModelWithProjection.from_pretrained(
                encoder_folder, local_files_only=True, dtype=pipe.dtype
            ).to(pipe.device)
            state.encoder_folder = encoder_folder
        pipe.register_modules(image_encoder=state.encoder)  # so load_ip_adapter loads no encoder of its own
        pipe.load_ip_adapter(
            str(weights.parent),
            subfolder="",
            weight_name=weights.name,
            image_encoder_folder=None,
            local_files_only=True,
        )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{weights.name}: cannot load as an IP-Adapter for this model: {first}") from None
    state.weights, state.embeddings = weights, {}


def _mean_embedding(pipe, encoder, guide: Guide):
    """(negative, positive) image embeddings: the guide images' mean, as diffusers encodes one image."""
    import torch
    from diffusers.models.embeddings import ImageProjection
    from transformers import CLIPImageProcessor

    side = int(encoder.config.image_size)
    pixels = CLIPImageProcessor(size=side, crop_size=side)(list(guide.images), return_tensors="pt").pixel_values
    pixels = pixels.to(device=encoder.device, dtype=encoder.dtype)
    projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    with torch.inference_mode():
        if isinstance(projection, ImageProjection):  # the plain variant: the projected embedding
            positive = encoder(pixels).image_embeds.mean(0, keepdim=True)
            negative = torch.zeros_like(positive)
        else:  # plus, full: the penultimate hidden states, and those of a black image as the negative
            positive = encoder(pixels, output_hidden_states=True).hidden_states[-2].mean(0, keepdim=True)
            negative = encoder(torch.zeros_like(pixels[:1]), output_hidden_states=True).hidden_states[-2]
    return torch.stack([negative, positive])


def adapter_params(wanted: IpAdapter, base: str | None) -> dict:
    """What an image's metadata says of the adapter that guided it (file names only, never a folder)."""
    from amari.storage.files import sha256_once

    weights, _encoder = resolve(wanted.weights, wanted.image_encoder, base)
    return {
        "name": weights.stem,
        "hash": sha256_once(weights)[:12],
        "scale": wanted.scale,
        "guide": wanted.guide.key,
        "images": len(wanted.guide.images),
    }
