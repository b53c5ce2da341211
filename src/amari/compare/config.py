"""`amari compare`'s settings (light: no numpy)."""

from __future__ import annotations

from dataclasses import dataclass

from amari.config.settings import Settings, check_cpus, setting
from amari.errors import UsageError
from amari.faces.settings import FaceSettings


@dataclass(frozen=True)
class CompareConfig(Settings):
    tolerance: float = setting(0.6, "largest distance that counts as a match (lower is stricter)")
    show_distance: bool = setting(
        False,
        "also print the face distance (a bare flag, or true/false as face_recognition takes)",
        nargs="?",
        const=True,
        metavar="BOOL",
        cli_type=str,
    )
    faces: FaceSettings = setting(FaceSettings(), "how faces are found", include=("detector", "upsample", "jitters"))
    cpus: int = setting(1, "processes to use; -1 means all cores", runtime=True)
    use_cache: bool = setting(True, "do not read or write the descriptor cache", flag="--no-cache")

    def check(self):
        if not 0 < self.tolerance <= 2:
            raise UsageError(f"tolerance must be in (0, 2], not {self.tolerance}")
        check_cpus(self.cpus)
