"""`amari select` on a workspace of real face photos: scores, group folders, diverse picks, refusals."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from amari.cli import main
from amari.errors import UsageError, WorkspaceError
from amari.faces import descriptors as faces
from amari.faces.embeddings import EmbeddingCache, FaceEncoder
from amari.select import GroupSpec, SelectConfig, parse_groups, run
from amari.select.stage import MANIFEST, farthest_point_order, read_manifest
from amari.storage.images import load_rgb
from amari.storage.layout import SelectLayout
from amari.study.demo import SAMPLE_FACES


def select(workspace, out, config, encoder=None):
    return run(config, SelectLayout(workspace, out), encoder=encoder)


T1_BOXES = SAMPLE_FACES  # dlib's face boxes (top, right, bottom, left) in t1.jpg, the sample photo


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, data_dir) -> Path:
    """A miner workspace: six real faces and their mirror images, a picture with no face, a broken file."""
    root = tmp_path_factory.mktemp("workspace")
    group = root / "sim-group"
    group.mkdir()
    for folder in ("almost-sim", "unknown-person"):
        (root / folder).mkdir()
    photo = Image.open(data_dir / "t1.jpg").convert("RGB")
    for index, (top, right, bottom, left) in enumerate(T1_BOXES):
        cx, cy = (left + right) // 2, (top + bottom) // 2
        crop = photo.crop((cx - 150, cy - 150, cx + 150, cy + 150))
        crop.save(group / f"face{index}.png")
        ImageOps.mirror(crop).save(group / f"face{index}_mirror.png")
    photo.crop((0, 700, 300, 886)).save(group / "table.png")
    (group / "broken.jpg").write_bytes(b"not a jpeg")
    shutil.copy(group / "face0.png", root / "almost-sim" / "face0.png")
    return root


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> FaceEncoder:
    return FaceEncoder(cache=EmbeddingCache(tmp_path_factory.mktemp("cache") / "faces.sqlite"))


@pytest.fixture(scope="module")
def expected_scores(workspace) -> dict[str, float]:
    """Scores computed directly with dlib: each largest face's mean distance to all, itself included."""
    names, descriptors = [], []
    for path in sorted((workspace / "sim-group").glob("face*.png")):
        names.append(path.name)
        descriptors.append(faces.largest(faces.encode(load_rgb(path))).descriptor)
    descriptors = np.array(descriptors)
    distances = np.linalg.norm(descriptors[:, None] - descriptors[None], axis=2)
    return dict(zip(names, distances.mean(axis=1)))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- group specs and the pure walk ------------------------------------------------------------------


def test_parse_groups():
    assert parse_groups("a_312=all,b_11=11, c_4=4") == (
        GroupSpec("a_312", None),
        GroupSpec("b_11", 11),
        GroupSpec("c_4", 4),
    )


@pytest.mark.parametrize("text", ["a=0", "a=-3", "a=x", "a", "=4", "../up=4", "a=2,A=3", "a=2,,b=3"])
def test_bad_group_specs_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_groups(text)


def test_farthest_point_walk_takes_one_from_each_cluster_best_first():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    points = np.vstack([c + rng.normal(0, 0.3, size=(5, 2)) for c in centres])
    scores = rng.uniform(0.3, 0.4, size=len(points))
    order = farthest_point_order(points, scores, 4)
    assert order[0] == int(np.argmin(scores))
    assert sorted(i // 5 for i in order) == [0, 1, 2, 3]
    assert farthest_point_order(points, scores, 7)[:4] == order  # a smaller pick starts a larger one
    with pytest.raises(ValueError):
        farthest_point_order(points, scores, 21)


# -- by score ---------------------------------------------------------------------------------------


def test_score_groups_are_best_first_with_true_scores(workspace, encoder, expected_scores, tmp_path):
    out = tmp_path / "groups"
    config = SelectConfig(groups=parse_groups("a_all=all,b_5=5,c_2=2"))
    result = select(workspace, out, config, encoder=encoder)

    assert sorted((p.name, why) for p, why in result.skipped) == [
        ("broken.jpg", "not an image file (or a format amari cannot read)"),
        ("table.png", "no face found"),
    ]
    scores = {m.path.name: m.score for m in result.members}
    assert scores == pytest.approx(expected_scores, abs=1e-9)

    ranked = sorted(expected_scores, key=expected_scores.get)
    for name, size in (("a_all", 12), ("b_5", 5), ("c_2", 2)):
        folder = out / name
        rows = read_manifest(folder / MANIFEST)
        assert list(rows[0]) == ["file", "source", "score"]
        assert [r["file"] for r in rows] == ranked[:size]
        assert sorted(p.name for p in folder.iterdir()) == sorted(ranked[:size] + [MANIFEST])
        for row in rows:
            assert row["source"] == f"sim-group/{row['file']}"
            assert float(row["score"]) == pytest.approx(expected_scores[row["file"]], abs=1e-6)
            assert sha(folder / row["file"]) == sha(workspace / "sim-group" / row["file"])
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no staging folders left


def test_count_larger_than_the_group_writes_nothing(workspace, encoder, tmp_path):
    out = tmp_path / "groups"
    with pytest.raises(UsageError, match="13 images but only 12"):
        select(workspace, out, SelectConfig(groups=parse_groups("a=4,big=13")), encoder=encoder)
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(UsageError, match="only 14"):
        select(workspace, out, SelectConfig(groups=parse_groups("huge=99")), encoder=encoder)


def test_existing_group_folder_needs_force_and_is_then_replaced(workspace, encoder, tmp_path):
    out = tmp_path / "groups"
    (out / "b").mkdir(parents=True)
    (out / "b" / "stale.png").write_bytes(b"old")
    config = SelectConfig(groups=parse_groups("a=3,b=2"))
    with pytest.raises(UsageError, match="--force"):
        select(workspace, out, config, encoder=encoder)
    assert not (out / "a").exists() and (out / "b" / "stale.png").exists()
    select(workspace, out, SelectConfig(groups=config.groups, force=True), encoder=encoder)
    assert not (out / "b" / "stale.png").exists()
    assert len(read_manifest(out / "b" / MANIFEST)) == 2 and len(read_manifest(out / "a" / MANIFEST)) == 3


def test_refuses_an_output_inside_the_sim_group_and_a_non_workspace(workspace, encoder, tmp_path):
    before = sorted(p.name for p in (workspace / "sim-group").iterdir())
    with pytest.raises(UsageError, match="inside the workspace"):
        select(workspace, workspace / "sim-group" / "groups", SelectConfig(groups=parse_groups("a=2")), encoder=encoder)
    assert sorted(p.name for p in (workspace / "sim-group").iterdir()) == before
    with pytest.raises(WorkspaceError, match="sim-group"):
        select(tmp_path, tmp_path / "out", SelectConfig(groups=parse_groups("a=2")), encoder=encoder)


# -- diverse ----------------------------------------------------------------------------------------


def test_diverse_pick_spreads_over_pose_within_tolerance(workspace, encoder, tmp_path):
    scores = select(workspace, tmp_path / "s", SelectConfig(groups=parse_groups("all=all")), encoder=encoder)
    ordered = sorted(m.score for m in scores.members)
    tolerance = float(ordered[8])  # leaves the nine best members as candidates
    config = SelectConfig(groups=parse_groups("every=all,four=4,two=2"), by="diverse", tolerance=tolerance)
    result = select(workspace, tmp_path / "d", config, encoder=encoder)

    four = result.groups["four"]
    assert all(p.member.score <= tolerance for p in four)
    assert four[0].member.score == ordered[0]  # the walk starts at the best member
    assert [p.member.path for p in result.groups["two"]] == [p.member.path for p in four[:2]]
    yaws = [p.yaw for p in four]
    assert min(yaws) < 0 < max(yaws)  # both directions of head turn are represented
    best_four = sorted(scores.members, key=lambda m: m.score)[:4]
    diverse_names = {p.member.path.name for p in four}
    assert diverse_names != {m.path.name for m in best_four}

    rows = read_manifest(tmp_path / "d" / "four" / MANIFEST)
    assert list(rows[0]) == ["file", "source", "score", "yaw"]
    assert [r["file"] for r in rows] == [p.member.path.name for p in four]
    assert [float(r["yaw"]) for r in rows] == pytest.approx(yaws, abs=0.01)
    assert len(read_manifest(tmp_path / "d" / "every" / MANIFEST)) == 12  # `all`: every member


def test_diverse_refuses_more_than_the_tolerance_allows(workspace, encoder, tmp_path):
    config = SelectConfig(groups=parse_groups("a=4"), by="diverse", tolerance=0.01)
    with pytest.raises(UsageError, match="tolerance"):
        select(workspace, tmp_path / "out", config, encoder=encoder)
    assert not (tmp_path / "out" / "a").exists()


# -- command line -----------------------------------------------------------------------------------


def test_cli_select(workspace, tmp_path, capsys):
    out = tmp_path / "groups"
    assert main(["select", "--workspace", str(workspace), "--out", str(out), "--groups", "a=all,c=3"]) == 0
    stdout, stderr = capsys.readouterr()
    assert "12 sim-group members scored; 2 skipped" in stdout and "c: 3 images" in stdout
    assert "table.png: no face found" in stderr
    assert len(read_manifest(out / "c" / MANIFEST)) == 3

    assert main(["select", "--workspace", str(workspace), "--out", str(out), "--groups", "c=3"]) == 2
    assert capsys.readouterr().err.startswith("amari select: error:")
    assert main(["select", "--workspace", str(workspace), "--out", str(out), "--groups", "z=50"]) == 2
    assert "only" in capsys.readouterr().err


def test_sim_group_without_any_face_is_a_workspace_error(workspace, encoder, tmp_path):
    group = tmp_path / "ws" / "sim-group"
    group.mkdir(parents=True)
    shutil.copy(workspace / "sim-group" / "table.png", group / "table.png")
    with pytest.raises(WorkspaceError, match="no image"):
        select(tmp_path / "ws", tmp_path / "out", SelectConfig(groups=parse_groups("a=all")), encoder=encoder)
    assert not (tmp_path / "out").exists()
