"""What a round did, read from the workspace after its mining: the candidates judged and accepted, their
mean sim-score, the group's average and its spread of head pose (amari's pose estimate from dlib's 68
landmarks on each member's face, found in the miner's cache: no face is detected again)."""

from __future__ import annotations

import numpy as np

from amari.faces import clusters
from amari.faces import descriptors as face_lib
from amari.storage.images import load_rgb, shrink_to
from amari.storage.layout import SIM_GROUP


class PoseCache:
    """(yaw, pitch) of each group member by content hash, kept across rounds (most members stay)."""

    def __init__(self):
        self.poses: dict[str, tuple[float, float] | None] = {}

    def spread(self, view, rows, settings) -> tuple[float | None, float | None]:
        """Population standard deviation of yaw and pitch (degrees) over the members with a pose."""
        from amari.errors import ImageError
        from amari.faces.pose import estimate_pose

        todo = [r for r in rows if r.content_hash not in self.poses]
        faces = view.cached_faces([r.content_hash for r in todo], settings.key)
        for row in todo:
            face = face_lib.largest(faces.get(row.content_hash) or [])
            pose = None
            if face is not None:
                try:
                    image = load_rgb(view.layout.root / SIM_GROUP / row.name)
                    if settings.max_side:  # the cached box is the shrunk image's
                        image = shrink_to(image, settings.max_side)
                    found = estimate_pose(face_lib.landmarks(image, [face.box], points=68)[0])
                    pose = (found.yaw, found.pitch)
                except (ImageError, ValueError):  # gone since, or no pose in degenerate landmarks
                    pose = None
            self.poses[row.content_hash] = pose
        known = np.array([self.poses[r.content_hash] for r in rows if self.poses.get(r.content_hash)])
        if len(known) == 0:
            return None, None
        return float(known[:, 0].std()), float(known[:, 1].std())


def round_figures(view, after: int, until: int, settings, poses: PoseCache) -> dict:
    """A round's numbers from batches after..until of the workspace (`amari.mine.WorkspaceView`)."""
    candidates, accepted = view.batch_totals(after, until)
    scores = view.candidate_scores(after, until)
    rows = [r for r in view.images() if r.folder == SIM_GROUP and r.descriptor is not None]
    group = np.array([r.descriptor for r in rows])
    yaw_sd, pitch_sd = poses.spread(view, rows, settings)
    return dict(
        candidates=candidates,
        accepted=accepted,
        group_size=len(rows),
        group_mean=float(clusters.spread(group).mean()) if len(rows) else None,
        fresh_mean=float(np.mean(scores)) if scores else None,
        fresh_faces=len(scores),
        yaw_sd=yaw_sd,
        pitch_sd=pitch_sd,
    )
