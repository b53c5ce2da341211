"""Enhance: Real-ESRGAN upscaling and GFPGAN face restoration, loaded through spandrel.

`EnhanceConfig` is cheap to import; `Enhancer` (and torch with it) loads on first use. The face
geometry (`face_plans`, `paste_faces`) needs only numpy and OpenCV, so CPU workers use it without torch.
"""

from __future__ import annotations

from amari.enhance.config import EnhanceConfig
from amari.lazy import lazy_exports

__getattr__ = lazy_exports(
    __name__,
    {
        "Enhancer": "amari.enhance.pipeline:Enhancer",
        "enhance_batch": "amari.enhance.pipeline:enhance_batch",
        "load_enhancer": "amari.enhance.pipeline:load_enhancer",
        "face_plans": "amari.enhance.paste:face_plans",
        "paste_faces": "amari.enhance.paste:paste_faces",
    },
)

__all__ = ["EnhanceConfig", "Enhancer", "enhance_batch", "face_plans", "load_enhancer", "paste_faces"]
