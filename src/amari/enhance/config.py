"""The enhance stage's settings (no heavy imports here, so configs can be read cheaply)."""

from __future__ import annotations

from dataclasses import dataclass

from amari.config.settings import Settings, setting
from amari.errors import UsageError
from amari.execution.devices import check_device


@dataclass(frozen=True)
class EnhanceConfig(Settings):
    """How a generated image is upscaled and its faces restored (defaults: the study's settings).

    upscaler: a known name (see `amari.models.files.KNOWN_MODELS`) or a path to a `.pth`/`.safetensors`
        super-resolution model; None keeps the input and only resizes it to `scale` (Lanczos).
    face_restorer: a known name or a path to a GFPGAN model; None skips face restoration.
    scale: final size relative to the input. The upscaler's own output (x4 for Real-ESRGAN x4plus) is
        resized to it with Lanczos, as Real-ESRGAN's tool does for its `outscale`.
    tile: the upscaler runs on tiles of at most this many input pixels a side, each with a margin of
        context, so memory stays bounded for large inputs; 0 runs the whole image at once.
    device: "auto" picks CUDA, then Apple MPS, then the CPU.
    half: run the upscaler and the face restorer in 16-bit floats on CUDA (ignored elsewhere): float16
        where spandrel says the architecture supports it (Real-ESRGAN), else bfloat16 where it does and the
        GPU has it (GFPGAN).
    restore_weight: how much of the restored face replaces the upscaled one inside the face mask,
        from 0 (none) to 1 (all). GFPGAN's own tool passes a `weight` of 0.5 that the v1.3/v1.4 clean
        network ignores, so the study's faces were fully restored: 1.0 reproduces it.
    min_face_score: faces whose dlib HOG detection score is below this are left alone. HOG also
        "finds" faces in badges and patterns (scores near 0.1), and GFPGAN would paint a face there;
        real faces, even small ones, score about 0.3 and up.
    """

    upscaler: str | None = setting(
        "RealESRGAN_x4plus", "known upscaler name or .pth/.safetensors path; none: resize only"
    )
    face_restorer: str | None = setting("GFPGANv1.4", "known GFPGAN name or model path; none: no face restoration")
    scale: float = setting(2.0, "final size relative to the generated image")
    tile: int = setting(
        512,
        "upscale in tiles of at most this many input pixels a side; 0: whole image (a batch of images is "
        "upscaled in passes of as many as the GPU's free memory holds)",
    )
    device: str = setting("auto", "auto: cuda, then mps, then cpu")
    half: bool = setting(True, "run the upscaler (float16) and GFPGAN (bfloat16) in 16-bit floats on CUDA")
    restore_weight: float = setting(1.0, "share of the restored face blended over the upscaled one")
    min_face_score: float = setting(0.2, "faces with a lower dlib HOG detection score are left alone")

    @property
    def restores(self) -> bool:
        return self.face_restorer is not None and self.restore_weight > 0

    def check(self):
        if not 0 < self.scale <= 16:
            raise UsageError(f"scale must be in (0, 16], not {self.scale!r}")
        if self.tile != 0 and self.tile < 32:
            raise UsageError(f"tile must be 0 (no tiling) or at least 32 pixels, not {self.tile!r}")
        check_device(self.device)
        if not 0 <= self.restore_weight <= 1:
            raise UsageError(f"restore_weight must be between 0 and 1, not {self.restore_weight!r}")
        for field in ("upscaler", "face_restorer"):
            value = getattr(self, field)
            if value is not None and not str(value).strip():
                raise UsageError(f"{field} must be a model name, a path, or None")
