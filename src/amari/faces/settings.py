"""How faces are found and described (light: the command line builds its options from it)."""

from __future__ import annotations

from dataclasses import dataclass

from amari.config.limits import MAX_UPSAMPLE, check_at_most
from amari.config.settings import Settings, setting
from amari.errors import UsageError


@dataclass(frozen=True)
class FaceSettings(Settings):
    """How faces are found and described; part of every cache key."""

    detector: str = setting(
        "hog", "face detector: hog (fast, the study's) or cnn (slower, finds turned faces)", choices=("hog", "cnn")
    )
    upsample: int = setting(1, "times the detector upsamples the image", metavar="N")
    landmarks: int = setting(5, "landmark points used to align a face for its descriptor (5 or 68)")
    jitters: int = setting(1, "re-samples per face descriptor", metavar="N")
    max_side: int | None = setting(
        None,
        "shrink images to at most this many pixels a side before finding faces "
        "(faster on large images; default: full size)",
        metavar="PX",
    )

    def check(self):
        if self.detector not in ("hog", "cnn"):
            raise UsageError(f"unknown face detector {self.detector!r}: use 'hog' or 'cnn'")
        if self.landmarks not in (5, 68):
            raise UsageError(f"landmarks must be 5 or 68, not {self.landmarks!r}")
        if self.upsample < 0 or self.jitters < 1:
            raise UsageError("upsample must be >= 0 and jitters >= 1")
        check_at_most(MAX_UPSAMPLE, "each doubles the side of the image the detector looks at", upsample=self.upsample)
        check_at_most(100, "each computes the descriptor once more", jitters=self.jitters)
        if self.max_side is not None and self.max_side < 32:
            raise UsageError("max_side must be at least 32 pixels")

    @property
    def key(self) -> str:
        return f"{self.detector}:up{self.upsample}:lm{self.landmarks}:j{self.jitters}:max{self.max_side or 0}"
