"""Guided generation: the sim-group's most typical faces guide the next candidates through an IP-Adapter.

Once the group holds `guide_from` faces, the `guide_images` members with the lowest member score (each
one's mean distance to the group, as the analysis computes it) are cropped around their faces and handed
to the source as the guide of what it generates next (`DiffusersSource.guide`); the crops are read once
per image. The policy judges guided candidates exactly as any others, and each image's metadata names
the adapter, its scale and the guide. The streaming engine's generator runs ahead of the policy, so a
batch made ahead may carry the guide before the latest batch; its metadata says which.
"""

from __future__ import annotations

import numpy as np

from amari.errors import ImageError
from amari.faces import clusters
from amari.faces.crops import face_crop
from amari.storage.layout import SIM_GROUP


class Guidance:
    """What guides the source, kept up to date with the group."""

    def __init__(self, config, encoder):
        self.config, self.encoder = config, encoder
        self.crops: dict[str, np.ndarray] = {}  # content hash -> face crop
        self.guided_by: tuple[str, ...] | None = None

    def update(self, workspace, source) -> str | None:
        """Give the source the group's current guide; returns a line to log when the guide changed."""
        from amari.generate import IpAdapter, make_guide

        config = self.config
        rows = [r for r in workspace.images(SIM_GROUP) if r.descriptor is not None]
        if len(rows) < config.guide_from:
            if self.guided_by:
                source.guide(None)
                self.guided_by = None
                return f"guidance off: the group holds {len(rows)} faces, fewer than {config.guide_from}"
            return None
        scores = clusters.spread(np.array([r.descriptor for r in rows]))
        typical = sorted(np.argsort(scores, kind="stable")[: config.guide_images])
        chosen = tuple(rows[i].content_hash for i in typical)
        if chosen == self.guided_by:
            return None
        crops = {rows[i].content_hash: self._crop(workspace, rows[i]) for i in typical}
        crops = {digest: crop for digest, crop in crops.items() if crop is not None}  # a file gone since
        if not crops:
            return None
        guide = make_guide(list(crops.values()), list(crops))
        source.guide(IpAdapter(config.ip_adapter, config.ip_adapter_scale, guide, config.image_encoder))
        self.guided_by = chosen
        self.crops = crops  # only the guide's are kept
        scale = config.ip_adapter_scale
        return f"guide {guide.key}: the group's {len(crops)} most typical faces, IP-Adapter scale {scale:g}"

    def _crop(self, workspace, row) -> np.ndarray | None:
        if row.content_hash not in self.crops:
            path = workspace.root / SIM_GROUP / row.name
            try:
                self.crops[row.content_hash] = face_crop(path, self.encoder.faces(path), self.config.faces)
            except ImageError:  # gone since the group was read
                return None
        return self.crops[row.content_hash]
