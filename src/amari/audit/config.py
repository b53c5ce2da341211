"""`amari audit`'s settings (light: no numpy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amari.config.settings import Settings, check_cpus, check_positive, setting
from amari.errors import UsageError
from amari.faces.settings import FaceSettings

SAME_PERSON = 0.6  # face_recognition's tolerance; amari.faces.clusters.SAME_PERSON (that module needs numpy)


@dataclass(frozen=True)
class AuditConfig(Settings):
    """Which gallery of real faces, and how near a mined face may come to one."""

    gallery: Path | None = setting(
        None,
        "a folder of real photos (every face in it counts), or an index file `amari audit --build-index` made",
        metavar="DIR_OR_INDEX",
    )
    threshold: float = setting(
        SAME_PERSON,
        "a gallery face this near an identity's centroid or a member flags the identity (dlib's same-person threshold)",
        metavar="D",
    )
    margin: float = setting(0.10, "width of the warning band above the threshold", metavar="D")
    separation: float = setting(
        SAME_PERSON, "two identities whose centroids are nearer than this are flagged as not distinct", metavar="D"
    )
    nearest: int = setting(3, "gallery faces listed for each identity's centroid, whatever their distance", metavar="N")
    exact_limit: int = setting(
        100_000,
        "galleries of up to this many faces are searched exactly; larger ones with an approximate index "
        "(faiss-cpu, the `audit` extra) when it is installed",
        metavar="N",
    )
    recall: float = setting(
        0.99, "recall of the approximate index against exact search, set when the index is built", metavar="R"
    )
    stop: bool = setting(
        True, "a study stops after the audit when it raises a flag (false: go on, the report shows it)", cli=False
    )
    faces: FaceSettings = setting(
        FaceSettings(), "how faces are found", include=("detector", "upsample", "max_side"), study=True
    )
    cpus: int = setting(1, "processes that find the gallery's faces; -1 means all cores", runtime=True)
    use_cache: bool = setting(
        True,
        "do not keep the gallery's face descriptors in the descriptor cache (they are biometric data)",
        flag="--no-cache",
    )

    def check(self) -> None:
        check_positive(threshold=self.threshold, nearest=self.nearest, exact_limit=self.exact_limit)
        check_cpus(self.cpus)
        if self.margin < 0:
            raise UsageError(f"margin must be >= 0, not {self.margin}")
        if not 0 < self.separation < 2:
            raise UsageError(f"separation must be in (0, 2), not {self.separation}")
        if not 0 < self.recall <= 1:
            raise UsageError(f"recall must be in (0, 1], not {self.recall}")

    @property
    def band(self) -> float:
        """The farthest distance a match is reported at (a warning)."""
        return self.threshold + self.margin
