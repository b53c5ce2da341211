"""Nearest gallery faces: exact search with numpy, or an approximate index (faiss) for large galleries.

Both answer the same two questions over float32 descriptors: every gallery face within a radius of each
query (what the audit flags and warns about), and the k nearest (what it lists). Distances are always
recomputed exactly, in float64, for the pairs found, so the numbers match `face_recognition`'s.

The approximate index is faiss's inverted-file index (IVF-Flat: the faces split among √N k-means
cells, each query looking into `nprobe` of them). `nprobe` is set when the index is built: the
smallest that reaches the wanted recall@10 against exact search for a sample of the gallery's own
faces as queries, so the recall holds for queries like the gallery's faces (a real face, or a
synthetic one that resembles a real person). On faces without structure (random vectors) that
means looking into almost every cell; on real faces, which cluster by person, into few.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from amari.errors import UsageError
from amari.faces.descriptors import DESCRIPTOR_SIZE

_CHUNK = 65_536  # gallery rows per block of the exact search: a few tens of MB per query batch
CALIBRATION_QUERIES = 256
_SLACK = 1e-3  # distance: far beyond float32's rounding of a squared distance below 4
_SPARE = 8  # candidates beyond k kept for the exact re-ranking


@dataclass(frozen=True)
class Match:
    query: int
    face: int  # row of the gallery
    distance: float


def _as_rows(vectors) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, DESCRIPTOR_SIZE))


def _as_queries(vectors) -> tuple[np.ndarray, np.ndarray]:
    """Queries as given (float64: a centroid is not a float32 value) and in float32 for the search."""
    exact = np.asarray(vectors, dtype=np.float64).reshape(-1, DESCRIPTOR_SIZE)
    return exact, _as_rows(exact)


def exact_distances(queries: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Euclidean distances in float64 from exact differences (as `face_recognition` computes them)."""
    diff = np.asarray(queries, dtype=np.float64)[:, None, :] - np.asarray(faces, dtype=np.float64)[None, :, :]
    return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))


class ExactSearch:
    """Every gallery face compared with every query, in blocks (float32 BLAS, |q|² + |g|² - 2q·g), then the
    pairs found measured again exactly: the blocks only choose candidates, with room for their rounding."""

    kind = "exact"

    def __init__(self, faces):
        self.faces = _as_rows(faces)
        self.norms = np.einsum("ij,ij->i", self.faces, self.faces)

    def __len__(self) -> int:
        return len(self.faces)

    def _blocks(self, queries: np.ndarray):
        """(first row, squared distances of the queries to that block of the gallery, to about 1e-6)."""
        q_norms = np.einsum("ij,ij->i", queries, queries)
        for start in range(0, len(self.faces), _CHUNK):
            block = self.faces[start : start + _CHUNK]
            squared = q_norms[:, None] + self.norms[None, start : start + _CHUNK] - 2.0 * (queries @ block.T)
            yield start, np.maximum(squared, 0.0)

    def query(self, queries, radius: float, k: int) -> tuple[list[Match], list[list[Match]]]:
        """Every face within `radius` of each query, and each query's k nearest, in one pass over the gallery."""
        exact, queries = _as_queries(queries)
        k = min(k, len(self.faces))
        spare = k + _SPARE  # near-ties the rounding may have swapped are settled by the exact distances
        found: list[tuple[int, int]] = []
        best_d = np.empty((len(queries), 0), dtype=np.float32)
        best_i = np.empty((len(queries), 0), dtype=np.int64)
        for start, squared in self._blocks(queries):
            rows, cols = np.nonzero(squared <= (radius + _SLACK) ** 2)
            found += [(int(r), start + int(c)) for r, c in zip(rows, cols)]
            local = np.argpartition(squared, min(spare, squared.shape[1]) - 1, axis=1)[:, :spare]
            best_d = np.concatenate([best_d, np.take_along_axis(squared, local, 1)], axis=1)
            best_i = np.concatenate([best_i, local + start], axis=1)
            keep = np.argpartition(best_d, min(spare, best_d.shape[1]) - 1, axis=1)[:, :spare]
            best_d, best_i = np.take_along_axis(best_d, keep, 1), np.take_along_axis(best_i, keep, 1)
        return _exact_within(exact, self.faces, found, radius), _exact_nearest(exact, self.faces, best_i, k)

    def within(self, queries, radius: float) -> list[Match]:
        return self.query(queries, radius, 1)[0]

    def nearest(self, queries, k: int) -> list[list[Match]]:
        return self.query(queries, 0.0, k)[1]


class FaissSearch:
    """faiss IVF-Flat over the gallery (see the module docstring); `nprobe` from `calibrate`."""

    kind = "ivf"

    def __init__(self, index, faces: np.ndarray):
        self.index, self.faces = index, _as_rows(faces)

    def __len__(self) -> int:
        return len(self.faces)

    @classmethod
    def build(cls, faces, recall: float = 0.99, seed: int = 0) -> FaissSearch:
        faiss = require_faiss()
        faces = _as_rows(faces)
        cells = max(1, int(round(math.sqrt(len(faces)))))
        quantizer = faiss.IndexFlatL2(DESCRIPTOR_SIZE)
        index = faiss.IndexIVFFlat(quantizer, DESCRIPTOR_SIZE, cells)
        rng = np.random.default_rng(seed)
        sample = faces[rng.choice(len(faces), size=min(len(faces), 64 * cells), replace=False)]
        index.train(sample)
        index.add(faces)
        search = cls(index, faces)
        search.calibrate(recall, rng)
        return search

    def calibrate(self, recall: float, rng: np.random.Generator, k: int = 10) -> float:
        """The smallest nprobe (doubling) whose recall@k on gallery faces as queries reaches `recall`."""
        queries = self.faces[rng.choice(len(self.faces), size=min(len(self.faces), CALIBRATION_QUERIES), replace=False)]
        truth = [{m.face for m in row} for row in ExactSearch(self.faces).nearest(queries, k)]
        probe, reached = 1, 0.0
        while True:
            self.index.nprobe = probe
            _, found = self.index.search(queries, k)
            reached = float(np.mean([len(t & set(f.tolist())) / len(t) for t, f in zip(truth, found)]))
            if reached >= recall or probe >= self.index.nlist:
                return reached
            probe = min(2 * probe, self.index.nlist)

    def within(self, queries, radius: float) -> list[Match]:
        exact, queries = _as_queries(queries)
        limits, _, labels = self.index.range_search(queries, float((radius + _SLACK) ** 2))
        found = [(q, int(labels[j])) for q in range(len(queries)) for j in range(limits[q], limits[q + 1])]
        return _exact_within(exact, self.faces, found, radius)

    def nearest(self, queries, k: int) -> list[list[Match]]:
        exact, queries = _as_queries(queries)
        k = min(k, len(self.faces))
        _, labels = self.index.search(queries, k + _SPARE)
        return _exact_nearest(exact, self.faces, labels, k)

    def query(self, queries, radius: float, k: int) -> tuple[list[Match], list[list[Match]]]:
        return self.within(queries, radius), self.nearest(queries, k)

    @property
    def pays(self) -> bool:
        """Whether the index is cheaper than exact search at its recall: it looks into at most a quarter of
        its cells (each cell's faces are compared one by one, where exact search multiplies matrices)."""
        return self.index.nprobe * 4 <= self.index.nlist

    def to_bytes(self) -> np.ndarray:
        return require_faiss().serialize_index(self.index)

    @classmethod
    def from_bytes(cls, data: np.ndarray, faces: np.ndarray, nprobe: int) -> FaissSearch:
        index = require_faiss().deserialize_index(np.asarray(data, dtype=np.uint8))
        index.nprobe = nprobe
        return cls(index, faces)


def _exact_within(queries: np.ndarray, faces: np.ndarray, found: list[tuple[int, int]], radius: float) -> list[Match]:
    if not found:
        return []
    pairs = np.array(found)
    diff = queries[pairs[:, 0]].astype(np.float64) - faces[pairs[:, 1]].astype(np.float64)
    distances = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    matches = [Match(int(q), int(f), float(d)) for (q, f), d in zip(pairs, distances) if d <= radius]
    return sorted(matches, key=lambda m: (m.query, m.distance, m.face))


def _exact_nearest(queries: np.ndarray, faces: np.ndarray, candidates: np.ndarray, k: int) -> list[list[Match]]:
    rows = []
    for q, row in enumerate(candidates):
        unique = np.unique(row[row >= 0])  # faiss marks a slot it could not fill with -1
        distances = exact_distances(queries[q : q + 1], faces[unique])[0]
        order = np.lexsort((unique, distances))[:k]
        rows.append([Match(q, int(unique[i]), float(distances[i])) for i in order])
    return rows


def require_faiss():
    try:
        import faiss
    except ImportError:
        raise UsageError(
            "the approximate index needs faiss-cpu: pip install 'amari[audit]' (or raise --exact-limit)"
        ) from None
    return faiss


def faiss_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("faiss") is not None
