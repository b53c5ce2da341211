"""The enhance stage's settings (no heavy imports here, so configs can be read cheaply)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from amari.errors import UsageError

_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class EnhanceConfig:
    """How a generated image is upscaled and its faces restored (defaults: the study's settings).

    upscaler: a known name (see `amari.models.KNOWN_MODELS`) or a path to a `.pth`/`.safetensors`
        super-resolution model; None keeps the input and only resizes it to `scale` (Lanczos).
    face_restorer: a known name or a path to a GFPGAN model; None skips face restoration.
    scale: final size relative to the input. The upscaler's own output (x4 for Real-ESRGAN x4plus) is
        resized to it with Lanczos, as Real-ESRGAN's tool does for its `outscale`.
    tile: the upscaler runs on tiles of at most this many input pixels a side, each with a margin of
        context, so memory stays bounded for large inputs; 0 runs the whole image at once.
    device: "auto" picks CUDA, then Apple MPS, then the CPU.
    half: run the upscaler in float16 on CUDA (ignored elsewhere; GFPGAN always runs in float32).
    restore_weight: how much of the restored face replaces the upscaled one inside the face mask,
        from 0 (none) to 1 (all). GFPGAN's own tool passes a `weight` of 0.5 that the v1.3/v1.4 clean
        network ignores, so the study's faces were fully restored: 1.0 reproduces it.
    min_face_score: faces whose dlib HOG detection score is below this are left alone. HOG also
        "finds" faces in badges and patterns (scores near 0.1), and GFPGAN would paint a face there;
        real faces, even small ones, score about 0.3 and up.
    """

    upscaler: str | None = "RealESRGAN_x4plus"
    face_restorer: str | None = "GFPGANv1.4"
    scale: float = 2.0
    tile: int = 512
    device: str = "auto"
    half: bool = True
    restore_weight: float = 1.0
    min_face_score: float = 0.2

    def __post_init__(self):
        if not 0 < self.scale <= 16:
            raise UsageError(f"scale must be in (0, 16], not {self.scale!r}")
        if self.tile != 0 and self.tile < 32:
            raise UsageError(f"tile must be 0 (no tiling) or at least 32 pixels, not {self.tile!r}")
        if not _DEVICE.fullmatch(self.device):
            raise UsageError(f"device must be auto, cpu, mps, cuda or cuda:N, not {self.device!r}")
        if not 0 <= self.restore_weight <= 1:
            raise UsageError(f"restore_weight must be between 0 and 1, not {self.restore_weight!r}")
        for field in ("upscaler", "face_restorer"):
            value = getattr(self, field)
            if value is not None and not str(value).strip():
                raise UsageError(f"{field} must be a model name, a path, or None")
