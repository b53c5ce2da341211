"""Many identities (amari.mine.identities): placing candidates, founding from the pool, separation, and a
whole stream of real photos of several people, as pure functions over descriptors."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from amari.faces import clusters
from amari.faces.descriptors import DESCRIPTOR_SIZE
from amari.mine import identities, policy
from amari.mine.identities import FoundingConfig, IdentitiesState, Identity
from amari.mine.policy import Faces, MinerState, PolicyConfig, Verdict


def on_axis(*positions: float) -> np.ndarray:
    points = np.zeros((len(positions), DESCRIPTOR_SIZE))
    points[:, 0] = positions
    return points


def faces(prefix: str, *positions: float) -> Faces:
    return Faces(tuple(f"{prefix}{i}" for i in range(len(positions))), on_axis(*positions))


def test_a_candidate_goes_to_the_nearest_identity_that_accepts_it():
    # Positions in eighths and sixteenths, so that the scores below are exact.
    groups = {1: faces("a", 0.0, 0.25), 2: faces("b", 0.75, 1.0)}
    bounds = {1: 0.5, 2: 0.4}
    candidates = [
        ("x", on_axis(0.5)[0]),  # scores 0.375 (1) and 0.375 (2): both accept, equally: the older identity
        ("y", on_axis(0.625)[0]),  # 0.5 (1) and 0.25 (2): both accept: the nearer, 2
        ("z", on_axis(2.0)[0]),  # 1.875 (1) and 1.125 (2): too far for both
        ("w", on_axis(1.3125)[0]),  # 1.1875 (1) and 0.4375 (2): almost for 2 (0.4 < 0.4375 < 0.5)
        ("v", None),
    ]
    placed = {p.key: p for p in identities.place(candidates, groups, bounds, almost_band=0.10)}
    assert (placed["x"].identity, placed["x"].judgement.verdict) == (1, Verdict.SIM)
    assert (placed["y"].identity, placed["y"].judgement.verdict) == (2, Verdict.SIM)
    assert (placed["z"].identity, placed["z"].judgement.verdict) == (None, Verdict.UNKNOWN)
    assert placed["z"].judgement.score == 1.125  # the nearest identity's score is kept
    assert (placed["w"].identity, placed["w"].judgement.verdict) == (2, Verdict.ALMOST)
    assert placed["v"].judgement.reason == "no face found"
    assert identities.place([("u", on_axis(0.0)[0])], {}, {}, 0.1)[0].judgement.reason == "no identity yet"


def test_trim_drops_the_farthest_face_until_every_face_is_within_the_bound():
    points = on_axis(0.0, 0.1, 0.2, 2.0)
    assert identities.trim(points, 0.5).tolist() == [0, 1, 2]
    assert len(identities.trim(on_axis(0.0, 3.0), 0.5)) == 1  # one face alone is within any bound


def test_a_cluster_founds_an_identity_only_far_enough_from_every_other(people_faces):
    descriptors, labels, _ = people_faces
    amy, raj, leonard = (descriptors[labels == name] for name in ("amy", "raj", "leonard"))
    pool = Faces(tuple(f"f{i}" for i in range(len(amy) + len(raj))), np.vstack([amy, raj]))
    founded = identities.found(pool, {}, room=5, first_number=1, config=PolicyConfig(), founding=FoundingConfig())
    assert [len(f.members) for f in founded] == [5, 5] and [f.number for f in founded] == [1, 2]
    assert all(f.state == MinerState() for f in founded)  # a fresh state, as references seed one identity
    # Raj's centroid is 0.59 from Leonard's: closer than the separation, so Raj founds nothing.
    centroids = {7: clusters.centroid(leonard)}
    raj_pool = Faces(tuple(f"r{i}" for i in range(len(raj))), raj)
    assert identities.found(raj_pool, centroids, 5, 8, PolicyConfig(), FoundingConfig()) == []
    loose = FoundingConfig(separation=0.55)
    assert [f.nearest for f in identities.found(raj_pool, dict(centroids), 5, 8, PolicyConfig(), loose)] == [
        pytest.approx(float(np.linalg.norm(clusters.centroid(raj) - centroids[7])))
    ]
    # Too few faces, or no room left: nothing.
    assert identities.found(Faces(pool.keys[:2], pool.vectors[:2]), {}, 5, 1, PolicyConfig(), FoundingConfig()) == []
    assert identities.found(pool, {}, 0, 1, PolicyConfig(), FoundingConfig()) == []


def test_of_two_identities_too_near_the_smaller_retires_and_of_equals_the_younger():
    centroids = {1: on_axis(0.0)[0], 2: on_axis(0.5)[0], 3: on_axis(5.0)[0], 4: on_axis(5.3)[0]}
    retired = identities.separate(centroids, {1: 9, 2: 4, 3: 6, 4: 6}, separation=0.6)
    assert sorted(r.number for r in retired) == [2, 4]
    assert "identity-01" in next(r.reason for r in retired if r.number == 2)


def test_state_round_trips_through_json_and_numbers_are_never_reused():
    state = IdentitiesState(
        7, (Identity(1, replace(MinerState(), hi=0.43, batch=5)), Identity(2, retired="why", founded=3))
    )
    assert IdentitiesState.from_json(state.to_json()) == state
    assert state.next_number == 3 and [i.number for i in state.live()] == [1]


def test_founding_config_checks_its_values():
    for bad in (dict(identities=0), dict(found_size=1), dict(separation=0.0), dict(cluster_threshold=2.5)):
        with pytest.raises(ValueError):
            FoundingConfig(**bad)


def test_a_batch_asks_for_what_the_identities_want_and_a_finished_one_rests():
    done = replace(MinerState(), avg=0.3, done=True)
    state = IdentitiesState(4, (Identity(1, done), Identity(2, replace(MinerState(), n=9))))
    config = PolicyConfig(target=5)
    plan = identities.begin(state, {1: 6, 2: 3}, config, FoundingConfig(identities=2))
    assert set(plan.planned) == {2} and plan.n == 9 and not plan.founding and plan.state.batch == 5
    plan = identities.begin(state, {1: 6, 2: 3}, config, FoundingConfig(identities=3))
    assert plan.founding and plan.n == 9
    assert identities.finished(state, {1: 6, 2: 3}, config, FoundingConfig(identities=1))
    assert not identities.finished(state, {1: 6, 2: 3}, config, FoundingConfig(identities=2))


def mine_stream(descriptors, order, founding: FoundingConfig, config: PolicyConfig = PolicyConfig()):
    """The batch loop with folders as a dict: {key: ("group"|"almost", number) or ("unknown", None)}."""
    vectors = {f"f{i}": descriptors[i] for i in order}
    stream, folder = list(vectors), {}
    state = IdentitiesState()

    def faces_where(where) -> Faces:
        keys = [k for k in vectors if folder.get(k) == where]
        return Faces(tuple(keys), np.array([vectors[k] for k in keys]).reshape(-1, DESCRIPTOR_SIZE))

    for _ in range(200):
        live = [i.number for i in state.live()]
        groups = {n: faces_where(("group", n)) for n in live}
        sizes = {n: len(g) for n, g in groups.items()}
        if identities.finished(state, sizes, config, founding):
            break
        plan = identities.begin(state, sizes, config, founding)
        taken, stream = stream[: plan.n], stream[plan.n :]
        if plan.generates and not taken:
            break
        outcome = identities.finish(
            plan,
            config,
            founding,
            groups,
            [(k, vectors[k]) for k in taken],
            faces_where(("unknown", None)),
            {n: faces_where(("almost", n)) for n in live},
        )
        where = {Verdict.SIM: "group", Verdict.ALMOST: "almost"}
        for placed in outcome.placed:
            verdict = placed.judgement.verdict
            folder[placed.key] = (where[verdict], placed.identity) if verdict in where else ("unknown", None)
        for founded in outcome.founded:
            folder.update({k: ("group", founded.number) for k in founded.members})
        for number, batch in outcome.outcomes.items():
            if batch.analysis is not None:
                folder.update({k: ("almost", number) for k in batch.analysis.leaving})
            if batch.reset:
                folder.update({k: ("group", number) for k, f in folder.items() if f == ("almost", number)})
        for retired in outcome.retired:
            folder.update({k: ("unknown", None) for k, f in folder.items() if f[1] == retired.number})
        state = outcome.state
    return state, {int(k[1:]): f for k, f in folder.items()}


def test_a_stream_of_real_photos_founds_one_identity_per_person_and_mixes_nobody(people_faces):
    """Every person with at least three photos gets an identity of their own, in name order as a folder
    gives them and shuffled, except Raj, whose centroid lies nearer Leonard's than the separation."""
    descriptors, labels, _ = people_faces
    enough = {name for name in set(labels) if (labels == name).sum() >= 3} - {"raj"}
    for order in (np.arange(len(labels)), np.random.default_rng(3).permutation(len(labels))):
        state, folder = mine_stream(descriptors, order, FoundingConfig(identities=20))
        held = {}
        for i, (kind, number) in folder.items():
            if kind == "group":
                held.setdefault(number, set()).add(labels[i])
        assert all(len(people) == 1 for people in held.values())  # nobody mixed
        founded = [next(iter(people)) for people in held.values()]
        assert sorted(founded) == sorted(enough) or sorted(founded) == sorted(enough - {"leonard"} | {"raj"})
        assert len(state.live()) == len(held)
        scores = clusters.pairwise_scores(
            [folder[i][1] if folder[i][0] == "group" else -1 for i in range(len(labels))], labels
        )
        assert scores.precision == 1.0 and scores.recall > 0.7


def test_mining_stops_once_k_identities_are_finished():
    """Synthetic 128-d identities (pairwise ~0.3) among strangers: K = 2 of three people are mined to
    the target; the run stops with both finished and each group one person."""
    rng = np.random.default_rng(11)
    centres = [v / np.linalg.norm(v) for v in rng.normal(size=(3, DESCRIPTOR_SIZE))]
    spread = 0.3 / math.sqrt(2 * DESCRIPTOR_SIZE)
    people = rng.integers(0, 3, size=400)
    descriptors = np.array([centres[p] + rng.normal(scale=spread, size=DESCRIPTOR_SIZE) for p in people])
    config = PolicyConfig(target=12)
    state, folder = mine_stream(descriptors, np.arange(len(people)), FoundingConfig(identities=2), config)
    sizes = {}
    for i, (kind, number) in folder.items():
        if kind == "group":
            sizes.setdefault(number, set()).add(int(people[i]))
    assert len(state.live()) == 2 and all(len(p) == 1 for p in sizes.values())
    counts = {n: sum(1 for f in folder.values() if f == ("group", n)) for n in sizes}
    assert identities.finished(state, counts, config, FoundingConfig(identities=2))
    assert all(policy.finished(i.state, counts[i.number], config) for i in state.live())
