"""`amari score`'s settings (light: no numpy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amari.config.settings import Settings, check_cpus, setting
from amari.errors import UsageError
from amari.faces.settings import FaceSettings


@dataclass(frozen=True)
class ScoreConfig(Settings):
    group: Path = setting(help="folder of the group's images", metavar="DIR")
    csv: Path | None = setting(None, "also write path,sim_score,faces,face_found,error to a CSV", metavar="OUT")
    faces: FaceSettings = setting(FaceSettings(), "how faces are found", include=("detector", "upsample", "jitters"))
    cpus: int = setting(1, "processes to use; -1 means all cores", runtime=True)
    use_cache: bool = setting(True, "do not read or write the descriptor cache", flag="--no-cache")

    def check(self):
        check_cpus(self.cpus)
        if self.csv is not None and Path(self.csv).is_dir():
            raise UsageError(f"--csv {self.csv} is a folder; give the path of a CSV file to write")
