"""Faces grouped by person: clustering over descriptor arrays, and how well a grouping matches the truth.

Pure functions over (N × 128) descriptor arrays and label arrays; no files, no models. Labels are
integers, one per face; -1 means "in no cluster" (DBSCAN's noise, a face an identity never took).

- `chinese_whispers`: dlib's Chinese Whispers over the graph of pairs closer than a threshold (`links`;
  dlib's `face_clustering.py` example uses 0.5), deterministic for the same faces in the same order;
- `dbscan`: DBSCAN's rule (a core face has at least `min_samples` faces within `eps`, itself included;
  clusters are the core faces linked within `eps` and the faces within `eps` of one), as scikit-learn
  defines it;
- `clusters`, `centroid`, `spread`: what a cluster is made of and how tight it is;
- `pairwise_scores`: pairwise precision and recall of a grouping against ground-truth labels.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from amari.faces.descriptors import DESCRIPTOR_SIZE, distance_matrix

NOISE = -1
SAME_PERSON = 0.6  # face_recognition's tolerance: two faces closer than this are the same person
CLUSTER_THRESHOLD = 0.5  # dlib's face_clustering.py example links faces closer than this


def _rows(descriptors) -> np.ndarray:
    return np.asarray(descriptors, dtype=np.float64).reshape(-1, DESCRIPTOR_SIZE)


def _first_seen_order(labels) -> np.ndarray:
    """Labels renumbered 0, 1, ... in the order they first appear (noise stays -1)."""
    renamed: dict[int, int] = {}
    out = np.full(len(labels), NOISE, dtype=np.int64)
    for i, label in enumerate(labels):
        if label == NOISE:
            continue
        out[i] = renamed.setdefault(int(label), len(renamed))
    return out


def links(descriptors, threshold: float, block: int = 1024) -> list[tuple[int, int]]:
    """Every pair (i, j), j >= i (each face with itself too), whose distance is below `threshold`, in
    the order dlib's `chinese_whispers_clustering` lists them: matrix products choose the candidates
    (blocks of `block` rows), exact differences decide them."""
    rows = _rows(descriptors)
    norms = np.einsum("ij,ij->i", rows, rows)
    edges: list[tuple[int, int]] = []
    for start in range(0, len(rows), block):
        part = rows[start : start + block]
        squared = norms[start : start + block, None] + norms[None, :] - 2.0 * (part @ rows.T)
        first, second = np.nonzero(squared < (threshold + 1e-6) ** 2)
        first = first + start
        upper = second >= first
        first, second = first[upper], second[upper]
        diff = rows[first] - rows[second]
        near = np.sqrt(np.einsum("ij,ij->i", diff, diff)) < threshold
        edges += list(zip(first[near].tolist(), second[near].tolist()))
    return edges


def chinese_whispers(descriptors, threshold: float = CLUSTER_THRESHOLD) -> np.ndarray:
    """dlib's Chinese Whispers over `links(descriptors, threshold)`: the labels dlib's
    `chinese_whispers_clustering` gives, a few times faster on thousands of faces. Every face gets a
    label (a face linked to none is a cluster of one); labels are numbered by first appearance."""
    rows = _rows(descriptors)
    if len(rows) == 0:
        return np.empty(0, dtype=np.int64)
    import dlib

    return _first_seen_order(dlib.chinese_whispers(links(rows, threshold)))


def dbscan(descriptors, eps: float = CLUSTER_THRESHOLD, min_samples: int = 2) -> np.ndarray:
    """DBSCAN's labels (-1: noise), faces visited in their order as scikit-learn's `DBSCAN` does with the
    default Euclidean metric: neighbours are within `eps` inclusive, a face counts among its own."""
    rows = _rows(descriptors)
    labels = np.full(len(rows), NOISE, dtype=np.int64)
    if len(rows) == 0:
        return labels
    near = distance_matrix(rows) <= eps
    core = near.sum(axis=1) >= min_samples
    cluster = 0
    for start in range(len(rows)):
        if labels[start] != NOISE or not core[start]:
            continue
        labels[start] = cluster
        queue = deque([start])
        while queue:
            face = queue.popleft()
            if not core[face]:
                continue  # a border face joins but does not reach further
            for neighbour in np.flatnonzero(near[face]):
                if labels[neighbour] == NOISE:
                    labels[neighbour] = cluster
                    queue.append(neighbour)
        cluster += 1
    return labels


def clusters(labels, min_size: int = 1) -> list[np.ndarray]:
    """The indices of each cluster with at least `min_size` faces (noise left out), largest first; equal
    sizes in the order of their first face."""
    labels = np.asarray(labels)
    found = [np.flatnonzero(labels == label) for label in dict.fromkeys(labels.tolist()) if label != NOISE]
    found = [members for members in found if len(members) >= min_size]
    return sorted(found, key=lambda members: (-len(members), members[0]))


def centroid(descriptors) -> np.ndarray:
    """The mean descriptor of a group of faces."""
    rows = _rows(descriptors)
    if len(rows) == 0:
        raise ValueError("an empty group has no centroid")
    return rows.mean(axis=0)


def spread(descriptors) -> np.ndarray:
    """Each face's mean distance to every face of the group, itself included (the miner's member score)."""
    return distance_matrix(_rows(descriptors)).mean(axis=1)


@dataclass(frozen=True)
class PairwiseScores:
    """Pairs of faces: those a grouping put together, those that truly belong together, and both."""

    predicted_pairs: int
    true_pairs: int
    correct_pairs: int
    clusters: int  # groups the grouping formed (noise not counted)

    @property
    def precision(self) -> float:
        """Of the pairs put together, the share that are one person (1.0 when none were put together)."""
        return self.correct_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        """Of the pairs that are one person, the share put together."""
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0


def _pairs(counts: np.ndarray) -> int:
    return int((counts * (counts - 1) // 2).sum())


def pairwise_scores(labels, truth) -> PairwiseScores:
    """Pairwise precision and recall of `labels` (-1: in no group) against ground-truth labels."""
    labels, truth = np.asarray(labels), np.asarray(truth)
    if labels.shape != truth.shape:
        raise ValueError(f"{len(labels)} labels for {len(truth)} true labels")
    grouped = labels != NOISE
    _, predicted = np.unique(labels[grouped], return_counts=True)
    _, true = np.unique(truth, return_counts=True)
    both = np.array([f"{a}\0{b}" for a, b in zip(labels[grouped], truth[grouped])])
    _, correct = np.unique(both, return_counts=True) if len(both) else (None, np.empty(0, dtype=np.int64))
    return PairwiseScores(_pairs(predicted), _pairs(true), _pairs(correct), len(predicted))
