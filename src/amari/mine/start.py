"""How an empty sim-group starts without reference images: the cluster start.

The policy's own start (`amari.mine.policy.pair_start`) seeds the group with the two closest faces seen
so far, which picks whoever has one near-duplicate pair. The cluster start waits for the first N faces,
clusters their descriptors (dlib's Chinese Whispers at the same-person threshold, or DBSCAN; both from
`amari.faces.clusters`) and seeds the group with the largest cluster of at least `min_size` faces whose
mean distance is within the group's bound (of equal sizes, the most cohesive); every other face is then
judged against that group as any candidate would be. Pure functions over descriptors, like the policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amari.faces import clusters
from amari.mine.policy import Faces, Seeding, pair_start

PAIR, CLUSTER = "pair", "cluster"
STARTS = (PAIR, CLUSTER)
CHINESE_WHISPERS, DBSCAN = "chinese-whispers", "dbscan"
CLUSTERINGS = (CHINESE_WHISPERS, DBSCAN)


@dataclass(frozen=True)
class StartConfig:
    method: str = PAIR
    candidates: int = 32  # N: faces gathered before they are clustered
    min_size: int = 3  # faces a cluster needs to seed the group
    clustering: str = CHINESE_WHISPERS
    threshold: float = clusters.SAME_PERSON  # faces closer than this are linked

    def __post_init__(self):
        if self.method not in STARTS:
            raise ValueError(f"start must be one of {', '.join(STARTS)}, not {self.method!r}")
        if self.clustering not in CLUSTERINGS:
            raise ValueError(f"start clustering must be one of {', '.join(CLUSTERINGS)}, not {self.clustering!r}")
        if self.candidates < 2 or self.min_size < 2:
            raise ValueError(
                f"the cluster start needs at least 2 candidates and a minimum size of 2, "
                f"not {self.candidates} and {self.min_size}"
            )
        if not 0 < self.threshold < 2:
            raise ValueError(f"start threshold must be in (0, 2), not {self.threshold}")


@dataclass(frozen=True)
class Cluster:
    members: np.ndarray  # indices into the faces clustered
    mean: float  # the group analysis' average: each face's mean distance to all, itself included


def found_clusters(vectors: np.ndarray, config: StartConfig) -> list[Cluster]:
    """Every cluster of at least `min_size` faces, largest first (equal sizes: most cohesive first)."""
    if config.clustering == DBSCAN:
        labels = clusters.dbscan(vectors, config.threshold, config.min_size)
    else:
        labels = clusters.chinese_whispers(vectors, config.threshold)
    found = [Cluster(m, float(clusters.spread(vectors[m]).mean())) for m in clusters.clusters(labels, config.min_size)]
    return sorted(found, key=lambda c: (-len(c.members), c.mean, c.members[0]))


def cluster_start(faces: Faces, bound: float, config: StartConfig, complete: bool = False) -> Seeding | None:
    """The largest coherent cluster of the faces seen, once there are N of them (or all there will be:
    `complete`, a folder read to its end); None while waiting or when no cluster fits the bound."""
    if len(faces) < max(config.candidates, config.min_size) and not (complete and len(faces) >= config.min_size):
        return None
    found = found_clusters(faces.vectors, config)
    fitting = [c for c in found if c.mean <= bound]
    if not fitting:
        return None
    chosen = fitting[0]
    how = f"{config.clustering} at {config.threshold:g}"
    reason = (
        f"cluster start: {len(chosen.members)} of {len(faces)} faces, mean distance {chosen.mean:.3f} "
        f"within the bound {bound:.3f}, the largest of {len(found)} clusters of {config.min_size}+ faces ({how})"
    )
    passed = [c for c in found if c is not chosen][:3]
    if passed:
        beyond = " (above the bound)"
        reason += "; next: " + ", ".join(
            f"{len(c.members)} faces at {c.mean:.3f}{'' if c.mean <= bound else beyond}" for c in passed
        )
    return Seeding(tuple(faces.keys[i] for i in chosen.members), reason, judge_rest=True)


def starter(config: StartConfig, complete: bool = False):
    """The start the policy is given (`amari.mine.policy.finish_batch(start=...)`)."""
    if config.method == PAIR:
        return pair_start
    return lambda faces, bound: cluster_start(faces, bound, config, complete)


def waiting_note(config: StartConfig, faces: int) -> str | None:
    """What the log says while the cluster start waits for faces."""
    if config.method != CLUSTER:
        return None
    if faces < config.candidates:
        return f"cluster start: {faces} of {config.candidates} faces so far"
    return f"cluster start: no cluster of {config.min_size}+ faces among {faces} fits the bound yet"
