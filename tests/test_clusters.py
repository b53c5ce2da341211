"""Face clustering (amari.faces.clusters) on real photos of several people, and its rules by hand."""

from __future__ import annotations

import numpy as np
import pytest

from amari.faces import clusters
from amari.faces.descriptors import DESCRIPTOR_SIZE


def on_axis(*positions: float) -> np.ndarray:
    points = np.zeros((len(positions), DESCRIPTOR_SIZE))
    points[:, 0] = positions
    return points


def test_chinese_whispers_groups_real_photos_by_person_and_is_reproducible(people_faces):
    descriptors, labels, _ = people_faces
    found = clusters.chinese_whispers(descriptors, 0.5)
    assert np.array_equal(found, clusters.chinese_whispers(descriptors, 0.5))
    scores = clusters.pairwise_scores(found, labels)
    assert scores.precision == 1.0 and scores.recall > 0.8  # no two people together, most pairs found
    # Labels are numbered by first appearance: the first photo is in cluster 0.
    assert found[0] == 0 and set(found) == set(range(found.max() + 1))


def test_chinese_whispers_gives_dlibs_own_labels(people_faces):
    import dlib

    descriptors, _, _ = people_faces
    shuffled = descriptors[np.random.default_rng(1).permutation(len(descriptors))]
    for faces in (descriptors, shuffled):
        theirs = dlib.chinese_whispers_clustering([dlib.vector(row.tolist()) for row in faces], 0.5)
        ours = clusters.chinese_whispers(faces, 0.5)
        assert len(set(zip(ours, theirs))) == len(set(ours)) == len(set(theirs))  # the same partition
    assert clusters.links(np.zeros((2, DESCRIPTOR_SIZE)), 0.5, block=1) == [(0, 0), (0, 1), (1, 1)]


def test_dbscan_follows_its_rule_on_points_by_hand():
    # Within 0.5 (inclusive): 0, 0.4, 0.8 chain (0.4 apart); 0.8 has two neighbours besides itself.
    points = on_axis(0.0, 0.4, 0.8, 3.0, 3.5, 9.0)
    assert clusters.dbscan(points, eps=0.5, min_samples=2).tolist() == [0, 0, 0, 1, 1, -1]
    # min_samples 3: 0 and 3.0 have only one neighbour besides themselves; 0.4 is a core point and
    # carries 0 and 0.8 as border points; 3.0, 3.5 and 9.0 are noise.
    assert clusters.dbscan(points, eps=0.5, min_samples=3).tolist() == [0, 0, 0, -1, -1, -1]
    assert clusters.dbscan(np.empty((0, DESCRIPTOR_SIZE))).tolist() == []


def test_dbscan_on_real_photos_mixes_no_two_people(people_faces):
    descriptors, labels, _ = people_faces
    scores = clusters.pairwise_scores(clusters.dbscan(descriptors, 0.5, 2), labels)
    assert scores.precision == 1.0 and scores.recall > 0.8


def test_pairwise_scores_by_hand():
    truth = ["a", "a", "a", "b", "b", "c"]  # true pairs: 3 + 1 = 4
    found = [0, 0, 1, 1, 1, -1]  # pairs put together: 1 (0,1) + 3 (2,3,4) = 4; correct: (0,1) and (3,4)
    scores = clusters.pairwise_scores(found, truth)
    assert (scores.predicted_pairs, scores.true_pairs, scores.correct_pairs, scores.clusters) == (4, 4, 2, 2)
    assert scores.precision == pytest.approx(0.5) and scores.recall == pytest.approx(0.5)
    assert clusters.pairwise_scores([-1, -1], ["a", "a"]).precision == 1.0  # nothing put together
    with pytest.raises(ValueError):
        clusters.pairwise_scores([0], ["a", "b"])


def test_clusters_centroid_and_spread():
    labels = np.array([2, 2, -1, 5, 5, 5, 7])
    assert [c.tolist() for c in clusters.clusters(labels)] == [[3, 4, 5], [0, 1], [6]]
    assert [c.tolist() for c in clusters.clusters(labels, min_size=2)] == [[3, 4, 5], [0, 1]]
    points = on_axis(0.0, 0.3, 0.9)
    assert clusters.centroid(points)[0] == pytest.approx(0.4)
    assert clusters.spread(points) == pytest.approx([0.4, 0.3, 0.5])  # (0+0.3+0.9)/3, (0.3+0+0.6)/3, (0.9+0.6+0)/3
    with pytest.raises(ValueError):
        clusters.centroid(np.empty((0, DESCRIPTOR_SIZE)))
