"""`amari prepare`'s settings (light: no numpy)."""

from __future__ import annotations

from dataclasses import dataclass

from amari.config.settings import Settings, setting
from amari.errors import UsageError

CROP_MODES = ("random", "face")


@dataclass(frozen=True)
class PrepareConfig(Settings):
    size: int = setting(512, "output side in pixels")
    seed: int | None = setting(None, "random seed, for a reproducible run (default: fresh, recorded in the manifest)")
    crop: str = setting("random", "random: the study's crop; face: keep the whole face in frame", choices=CROP_MODES)
    check_faces: bool = setting(False, "look for a face in every output and report the share found")
    face_margin: float = setting(0.25, "share of the face box kept on each side of it with --crop face")
    detect_max_side: int = setting(1024, "faces are searched on a copy no larger than this (speed)", cli=False)
    force: bool = setting(False, "write into a non-empty DST (existing files are never overwritten)", toml=False)

    def check(self):
        if self.size < 8:
            raise UsageError(f"--size must be at least 8 pixels, not {self.size}")
        if self.crop not in CROP_MODES:
            raise UsageError(f"unknown crop mode {self.crop!r}: use one of {', '.join(CROP_MODES)}")
        if self.seed is not None and self.seed < 0:
            raise UsageError(f"--seed must be a non-negative integer, not {self.seed}")
        if not 0 <= self.face_margin <= 2:
            raise UsageError(f"face margin must be between 0 and 2, not {self.face_margin}")
        if self.detect_max_side < 64:
            raise UsageError("detect_max_side must be at least 64 pixels")

    @property
    def finds_faces(self) -> bool:
        return self.crop == "face" or self.check_faces
