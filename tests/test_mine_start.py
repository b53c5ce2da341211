"""The cluster start: an empty group seeded with the largest coherent cluster of the first N faces.

By hand on points in descriptor space (the rules), on real photos of several people (the choice), and
end to end with `amari mine --source folder:` where the two closest faces are a near-duplicate pair of
someone who is not the person with the most photos.
"""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from amari.cli import main
from amari.faces.descriptors import DESCRIPTOR_SIZE
from amari.mine import policy
from amari.mine.policy import Faces, MinerState, PolicyConfig, Verdict
from amari.mine.start import CLUSTER, DBSCAN, StartConfig, cluster_start, found_clusters


def at(*positions: float) -> np.ndarray:
    """Faces on one axis of descriptor space, a known distance apart."""
    points = np.zeros((len(positions), DESCRIPTOR_SIZE))
    points[:, 0] = positions
    return points


def faces(points: np.ndarray, prefix: str = "f") -> Faces:
    return Faces(tuple(f"{prefix}{i}" for i in range(len(points))), points)


CONFIG = StartConfig(CLUSTER, candidates=9, min_size=2, threshold=0.5)


def test_the_largest_cluster_within_the_bound_wins_and_ties_go_to_the_most_cohesive():
    # A near-duplicate pair (0.01 apart), a loose trio (0.4 apart: mean 0.356) and a tight trio (0.2 apart: mean 0.178).
    seen = faces(at(0.0, 0.01, 10.0, 10.4, 10.8, 20.0, 20.2, 20.4, 30.0))
    seeding = cluster_start(seen, 0.5, CONFIG)
    assert seeding.keys == ("f5", "f6", "f7") and seeding.judge_rest
    assert "3 of 9 faces" in seeding.reason and "next: 3 faces at 0.356, 2 faces at 0.005" in seeding.reason
    # The tightest pair is what the policy's own start would take.
    assert policy.pair_start(seen, 0.5).keys == ("f0", "f1")
    # A bound the tight trio exceeds leaves the pair.
    assert cluster_start(seen, 0.1, CONFIG).keys == ("f0", "f1")
    assert cluster_start(seen, 0.001, CONFIG) is None


def test_it_waits_for_n_faces_unless_the_source_has_no_more():
    seen = faces(at(0.0, 0.1, 0.2, 5.0))
    assert cluster_start(seen, 0.5, CONFIG) is None  # 4 of 9
    assert cluster_start(seen, 0.5, CONFIG, complete=True).keys == ("f0", "f1", "f2")


def test_dbscan_and_the_minimum_size():
    seen = faces(at(0.0, 0.3, 0.6, 5.0, 5.1))
    config = StartConfig(CLUSTER, candidates=5, min_size=3, clustering=DBSCAN, threshold=0.35)
    assert [c.members.tolist() for c in found_clusters(seen.vectors, config)] == [[0, 1, 2]]
    assert cluster_start(seen, 0.5, config).keys == ("f0", "f1", "f2")
    with pytest.raises(ValueError):
        StartConfig(CLUSTER, min_size=1)


def test_the_policy_judges_the_faces_not_chosen_against_the_seeded_group():
    pool = faces(at(0.0, 0.1, 0.2, 0.55), prefix="p")  # three near each other, one 0.45 beyond the last
    candidates = [("c0", at(0.15)[0]), ("c1", at(9.0)[0]), ("c2", None)]
    config = StartConfig(CLUSTER, candidates=6, min_size=3, threshold=0.3)
    outcome = policy.finish_batch(
        MinerState(batch=1),
        PolicyConfig(),
        Faces(),
        candidates,
        pool=pool,
        start=lambda seen, bound: cluster_start(seen, bound, config),
    )
    assert outcome.seeds == ("p0", "p1", "p2", "c0")
    assert outcome.seed_reason.startswith("cluster start: 4 of 6 faces")
    verdicts = {j.key: j.verdict for j in outcome.judgements + outcome.placed}
    # p3 is 0.41 from the seeds on average: inside the bound of 0.5; c1 is far; c2 has no face.
    assert verdicts == {"c0": Verdict.UNKNOWN, "c1": Verdict.UNKNOWN, "c2": Verdict.UNKNOWN, "p3": Verdict.SIM}
    assert set(outcome.joined) == {"p0", "p1", "p2", "c0", "p3"} and "analysis" in outcome.events


def test_chinese_whispers_on_real_photos_picks_the_person_with_the_most(people_faces):
    descriptors, labels, _ = people_faces
    seen = Faces(tuple(range(len(labels))), descriptors)
    seeding = cluster_start(seen, 0.5, StartConfig(CLUSTER, candidates=len(labels)))
    chosen = {labels[i] for i in seeding.keys}
    assert chosen == {"deepface-1"} and len(seeding.keys) == (labels == "deepface-1").sum()


@pytest.fixture(scope="module")
def crowd(tmp_path_factory, people):
    """Every photo of several people, and two nearly identical copies of one of Amy's: the closest pair."""
    folder = tmp_path_factory.mktemp("crowd") / "photos"
    folder.mkdir()
    for person, photos in people.items():
        for photo in photos:
            shutil.copy(photo, folder / f"{person}-{photo.name}")
    with Image.open(people["amy"][0]) as amy:
        ImageEnhance.Brightness(amy.convert("RGB")).enhance(1.03).save(folder / "amy-copy.png")
    return folder


def group_people(workspace) -> list[str]:
    return sorted(path.name.rsplit("-", 1)[0] for path in (workspace / "sim-group").iterdir())


def test_cluster_start_seeds_with_the_person_who_has_the_most_photos(tmp_path, crowd, people, people_faces, capsys):
    # The closest two faces of the folder are Amy's near-duplicates: the policy's own start would take them.
    from amari.faces import descriptors as face_lib
    from amari.storage.images import load_rgb

    descriptors, labels, _ = people_faces
    copy = face_lib.encode(load_rgb(crowd / "amy-copy.png"))[0].descriptor
    seen = Faces((*labels, "amy-copy"), np.vstack([descriptors, copy]))
    assert policy.pair_start(seen, 0.5).keys == ("amy", "amy-copy")

    workspace = tmp_path / "ws"
    args = ["mine", "--workspace", str(workspace), "--source", f"folder:{crowd}", "--quiet", "--start", "cluster"]
    assert main([*args, "--start-candidates", "80"]) == 0  # fewer faces than that: clustered once read
    in_group = group_people(workspace)
    assert set(in_group) == {"deepface-1"} and len(in_group) >= len(people["deepface-1"]) - 1
    conn = sqlite3.connect(workspace / "mine.sqlite")
    reasons = [r for (r,) in conn.execute("SELECT reason FROM decisions WHERE reason LIKE 'bootstrap:%'")]
    assert len(reasons) == len(people["deepface-1"]) and all("cluster start: 8 of 56 faces" in r for r in reasons)
    assert "the group starts with 8 faces: cluster start" in capsys.readouterr().err
    unknown = {path.name.rsplit("-", 1)[0] for path in (workspace / "unknown-person").iterdir()}
    assert unknown == set(people) - {"deepface-1"}  # everyone else judged against the group, and left out
