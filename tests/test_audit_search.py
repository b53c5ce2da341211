"""The audit's gallery search: exact search and the approximate index against brute force, on real faces."""

from __future__ import annotations

import numpy as np
import pytest

from amari.audit.search import ExactSearch, FaissSearch, exact_distances


def brute_within(queries, faces, radius):
    distances = exact_distances(queries, faces)
    return sorted((q, f) for q, f in zip(*np.nonzero(distances <= radius)))


@pytest.fixture(scope="module")
def gallery(people_faces):
    descriptors, labels, _ = people_faces
    queries = descriptors[::5] + 0.01  # near faces of the gallery, as a mined look-alike would be
    return descriptors.astype(np.float32), queries


def test_exact_search_finds_what_brute_force_finds(gallery, monkeypatch):
    faces, queries = gallery
    monkeypatch.setattr("amari.audit.search._CHUNK", 7)  # blocks that split the gallery unevenly
    search = ExactSearch(faces)
    for radius in (0.3, 0.6, 0.7):
        found = search.within(queries, radius)
        assert sorted((m.query, m.face) for m in found) == brute_within(queries, faces, radius)
        truth = exact_distances(queries, faces)
        assert all(m.distance == pytest.approx(truth[m.query, m.face], abs=1e-12) for m in found)
    nearest = search.nearest(queries, 4)
    truth = exact_distances(queries, faces)
    assert [[m.face for m in row] for row in nearest] == [np.argsort(row, kind="stable")[:4].tolist() for row in truth]
    assert len(ExactSearch(faces[:2]).nearest(queries[:1], 4)[0]) == 2  # fewer faces than asked for


def test_the_index_finds_what_exact_search_finds_on_real_faces(gallery):
    faces, queries = gallery
    index = FaissSearch.build(faces, recall=0.99)
    exact = ExactSearch(faces)
    pairs = [(m.query, m.face) for m in exact.within(queries, 0.6)]
    assert [(m.query, m.face) for m in index.within(queries, 0.6)] == pairs
    assert [[m.face for m in row] for row in index.nearest(queries, 3)] == [
        [m.face for m in row] for row in exact.nearest(queries, 3)
    ]
    again = FaissSearch.from_bytes(index.to_bytes(), faces, index.index.nprobe)
    assert [m.face for m in again.within(queries, 0.6)] == [m.face for m in index.within(queries, 0.6)]


def test_the_index_is_used_only_where_it_beats_exact_search():
    """Faces that cluster by person let the index look into few cells; faces without structure (random
    vectors, the hardest case) make it look into nearly all, and then exact search is used."""
    rng = np.random.default_rng(0)
    random = rng.standard_normal((4000, 128)).astype(np.float32)
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    centres = random[:400]
    people = np.repeat(centres, 10, axis=0) + rng.normal(scale=0.45 / np.sqrt(256), size=(4000, 128))
    assert not FaissSearch.build(random).pays
    index = FaissSearch.build(people)
    assert index.pays and index.calibrate(0.99, rng) >= 0.99
