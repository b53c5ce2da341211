"""Enhance: Real-ESRGAN upscaling and GFPGAN face restoration, loaded through spandrel.

`EnhanceConfig` is cheap to import; `Enhancer` (and torch with it) loads on first access.
"""

from __future__ import annotations

from amari.enhance.config import EnhanceConfig

__all__ = ["EnhanceConfig", "Enhancer"]


def __getattr__(name):
    if name == "Enhancer":
        from amari.enhance.pipeline import Enhancer

        return Enhancer
    raise AttributeError(f"module 'amari.enhance' has no attribute {name!r}")
