"""`amari mine --identities K` and `amari audit` end to end, on real photos of several people.

The miner gets a folder of 22 photos: four each of four people, three of a fifth, two of a sixth and
one of a seventh. Held back from it, the gallery of the audit: the fifth photo of four of the mined
people, and five photos each of two people the miner never saw.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from amari.cli import main
from crashhooks import crash_command

MINED = {"amy": 4, "bernadette": 4, "howard": 4, "sheldon": 4, "obama": 3, "penny": 2, "biden": 1}
ENOUGH = {"amy", "bernadette", "howard", "sheldon", "obama"}  # at least three photos: an identity each
HELD_BACK = ("amy", "bernadette", "howard", "sheldon")  # their fifth photo is in the gallery
STRANGERS = ("raj", "stuart")  # in the gallery only


@pytest.fixture(scope="module")
def photo_sets(tmp_path_factory, people):
    root = tmp_path_factory.mktemp("photo-sets")
    folder, gallery = root / "folder", root / "gallery"
    for name, count in MINED.items():
        (folder / name).mkdir(parents=True)
        for path in people[name][:count]:
            shutil.copy(path, folder / name / path.name)
    for name in HELD_BACK:
        (gallery / name).mkdir(parents=True)
        shutil.copy(people[name][4], gallery / name / people[name][4].name)
    for name in STRANGERS:
        shutil.copytree(people[name][0].parent, gallery / name)
    return folder, gallery


def mine_args(workspace: Path, folder: Path, *extra: str) -> list[str]:
    return [
        "mine",
        "--workspace",
        str(workspace),
        "--source",
        f"folder:{folder}",
        "--identities",
        "6",
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="module")
def mined(photo_sets, tmp_path_factory):
    folder, _ = photo_sets
    workspace = tmp_path_factory.mktemp("mined") / "ws"
    assert main(mine_args(workspace, folder)) == 0
    return workspace


def person(name: str) -> str:
    """The person a workspace file shows: the folder source names it PERSON__FILE."""
    return name.split("__")[0]


def held(workspace: Path) -> dict[str, list[str]]:
    """Each identity folder's sim-group, as the people in it."""
    return {
        folder.name: sorted(person(p.name) for p in (folder / "sim-group").iterdir())
        for folder in sorted(workspace.glob("identity-*"))
    }


def test_one_identity_per_person_with_enough_photos_and_nobody_mixed(mined):
    identities = held(mined)
    assert all(len(set(people)) == 1 for people in identities.values()), identities
    assert sorted(people[0] for people in identities.values()) == sorted(ENOUGH)
    assert all(len(people) == MINED[people[0]] for people in identities.values())  # every photo found its person
    unknown = {person(p.name) for p in (mined / "unknown-person").iterdir()}
    assert unknown == {"penny", "biden"}
    assert not (mined / "sim-group").exists() and not (mined / "almost-sim").exists()
    rows = list(csv.DictReader((mined / "archive.csv").open()))
    assert "found-identity-01" in rows[0]["event"] and int(rows[-1]["group_size"]) == 19


def test_the_workspace_says_which_identities_it_holds(mined):
    from amari.storage.layout import WorkspaceLayout

    layout = WorkspaceLayout(mined)
    assert layout.identities() == [1, 2, 3, 4, 5]
    assert WorkspaceLayout(mined, 2).sim_group == mined / "identity-02" / "sim-group"
    conn = sqlite3.connect(mined / "mine.sqlite")
    folders = {row[0] for row in conn.execute("SELECT DISTINCT folder FROM images")}
    conn.close()
    assert folders == {f"identity-0{n}/sim-group" for n in range(1, 6)} | {"unknown-person"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def audit_rows(folder: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((folder / "audit.csv").open()))


def flagged_people(workspace: Path, rows) -> set[str]:
    identities = held(workspace)
    return {identities[r["identity"]][0] for r in rows if r["level"] == "flag"}


def test_the_audit_flags_the_identities_whose_person_is_in_the_gallery_and_nobody_else(mined, photo_sets, capsys):
    _, gallery = photo_sets
    assert main(["audit", "--workspace", str(mined), "--gallery", str(gallery)]) == 3
    out = capsys.readouterr()
    assert "a flag was raised" in out.err and "FLAGGED" in out.out
    audit = mined / "audit"
    with (audit / "audit.csv").open() as handle:
        assert next(csv.reader(handle)) == ["identity", "member", "gallery", "distance", "level"]
    rows = audit_rows(audit)
    assert flagged_people(mined, rows) == set(HELD_BACK)
    for row in rows:
        if row["level"] == "flag":  # each flag is the person's own held-back photo
            assert row["gallery"].split("/")[0] == held(mined)[row["identity"]][0]
            assert float(row["distance"]) <= 0.6
        else:
            assert 0.6 < float(row["distance"]) <= 0.7
    assert {r["member"] for r in rows} >= {"centroid"}
    assert all(r["member"] == "centroid" or "__" in r["member"] for r in rows)  # member file names
    page = (audit / "index.html").read_text()
    assert str(gallery) not in page and str(mined) not in page  # relative links only
    assert "../identity-01/sim-group/" in page and "gallery/amy/amy5.jpg" in page
    # Nothing of the gallery was copied into the workspace.
    gallery_digests = {digest(p) for p in gallery.rglob("*.jpg")}
    assert not gallery_digests & {digest(p) for p in mined.rglob("*") if p.is_file()}


def test_an_index_file_gives_the_same_audit_and_a_clean_gallery_exits_zero(mined, photo_sets, tmp_path, capsys):
    _, gallery = photo_sets
    index = tmp_path / "gallery.npz"
    assert main(["audit", "--build-index", str(gallery), "--out", str(index)]) == 0
    assert "14 faces of 14 photos (exact search)" in capsys.readouterr().out
    assert main(["audit", "--workspace", str(mined), "--gallery", str(index), "--out", str(tmp_path / "a")]) == 3
    assert main(["audit", "--workspace", str(mined), "--gallery", str(gallery), "--out", str(tmp_path / "b")]) == 3
    assert (tmp_path / "a" / "audit.csv").read_text() == (tmp_path / "b" / "audit.csv").read_text()
    strangers = tmp_path / "strangers"
    for name in STRANGERS:
        shutil.copytree(gallery / name, strangers / name)
    assert main(["audit", "--workspace", str(mined), "--gallery", str(strangers), "--out", str(tmp_path / "c")]) == 0
    assert all(r["level"] == "warn" for r in audit_rows(tmp_path / "c"))


def test_a_damaged_or_unsafe_index_is_refused_with_one_line(mined, tmp_path, capsys):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"format": "amari-gallery-1"}], dtype=object))
    for index in (broken, pickled, tmp_path / "missing.npz"):
        assert main(["audit", "--workspace", str(mined), "--gallery", str(index), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("amari audit: error:") and len(err.splitlines()) == 1
    assert main(["audit", "--gallery", str(broken)]) == 2
    assert "--workspace" in capsys.readouterr().err


def test_moving_an_image_between_identities_is_curation(mined, photo_sets, tmp_path):
    folder, _ = photo_sets
    workspace = tmp_path / "ws"
    shutil.copytree(mined, workspace)
    identities = held(workspace)
    amy = next(name for name, people in identities.items() if people[0] == "amy")
    howard = next(name for name, people in identities.items() if people[0] == "howard")
    moved = sorted((workspace / amy / "sim-group").iterdir())[0]
    shutil.move(moved, workspace / howard / "sim-group" / moved.name)
    out = sorted((workspace / amy / "sim-group").iterdir())[0]
    shutil.move(out, workspace / "unknown-person" / out.name)
    assert main(mine_args(workspace, folder)) == 0
    assert (workspace / howard / "sim-group" / moved.name).exists()
    assert (workspace / "unknown-person" / out.name).exists()
    conn = sqlite3.connect(workspace / "mine.sqlite")
    rows = dict(conn.execute("SELECT name, folder || ':' || user_removed FROM images").fetchall())
    conn.close()
    assert rows[moved.name] == f"{howard}/sim-group:0" and rows[out.name] == "unknown-person:1"


def test_reference_images_and_several_identities_do_not_mix(photo_sets, people, tmp_path, capsys):
    folder, _ = photo_sets
    args = mine_args(tmp_path / "ws", folder, "--reference", str(people["amy"][0]))
    assert main(args) == 2
    assert "--reference seeds a single identity" in capsys.readouterr().err


# -- killed and resumed -------------------------------------------------------------------------------


def snapshot(workspace: Path) -> dict:
    """Everything that must not depend on when or how often a run was killed (no clock times)."""
    identities = [p.relative_to(workspace).as_posix() for p in sorted(workspace.glob("identity-*/*"))]
    folders = ["unknown-person", "incoming", *identities]
    files = {f"{folder}/{p.name}": digest(p) for folder in folders for p in sorted((workspace / folder).iterdir())}
    conn = sqlite3.connect(workspace / "mine.sqlite")
    try:
        tables = dict(
            images=conn.execute(
                "SELECT id, content_hash, folder, name, size, user_removed, first_batch, descriptor FROM images "
                "ORDER BY id"
            ).fetchall(),
            decisions=conn.execute(
                "SELECT d.batch, i.content_hash, d.verdict, d.reason, d.score, d.bound FROM decisions d "
                "JOIN images i ON i.id = d.image_id ORDER BY d.id"
            ).fetchall(),
            batches=conn.execute(
                "SELECT number, joined, group_size, event, state FROM batches ORDER BY number"
            ).fetchall(),
            identities=conn.execute("SELECT value FROM meta WHERE key = 'identities'").fetchall(),
            pending=conn.execute("SELECT * FROM pending_moves").fetchall(),
        )
    finally:
        conn.close()
    archive = [row[1:] for row in csv.reader((workspace / "archive.csv").open())]
    return dict(files=files, archive=archive, **tables)


# Met one after another on one workspace, each run resuming the last one's kill: a batch decided but not
# committed, a batch committed with its moves not done, an identity founded but not committed, between
# two batches.
CRASH_POINTS = [
    ("amari.mine.many:build_commit", 2, "after"),
    ("amari.mine.workspace:Workspace._apply_pending_moves", 3, "before"),
    ("amari.mine.identities:found", 1, "after"),
    ("amari.mine.many:reconcile", 2, "before"),
]


@pytest.mark.slow
def test_sigkill_during_mining_then_resume_ends_as_the_uninterrupted_run(mined, photo_sets, tmp_path):
    folder, _ = photo_sets
    expected = snapshot(mined)
    workspace = tmp_path / "ws"
    args = mine_args(workspace, folder)
    for target, calls, when in CRASH_POINTS:
        crashed = subprocess.run(crash_command(target, calls, when, *args), capture_output=True, text=True)
        assert crashed.returncode == -signal.SIGKILL, (target, calls, when, crashed.stderr[-2000:])
    finished = subprocess.run([sys.executable, "-m", "amari", *args], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert snapshot(workspace) == expected
    # The serial engine decides as the streaming one did.
    assert main(mine_args(tmp_path / "serial", folder, "--engine", "serial")) == 0
    assert snapshot(tmp_path / "serial") == expected


# -- in a study ---------------------------------------------------------------------------------------


def study_data(folder: Path, gallery: Path | None, **audit) -> dict:
    data = {
        "study": {"name": "many"},
        "mine": {"source": f"folder:{folder}", "identities": 6},
        "evaluate": {"prompts": ["a photo of amari"], "commands": [{"name": "sd1", "seed": 1}]},
    }
    if gallery is not None:
        data["audit"] = {"gallery": str(gallery), **audit}
    return data


def test_a_study_mines_several_identities_and_trains_the_one_it_names(photo_sets, tmp_path):
    from amari.errors import UsageError
    from amari.study.config import study_from_dict

    folder, gallery = photo_sets
    config = study_from_dict(study_data(folder, gallery), base=tmp_path)
    assert config.mine.identities == 6 and config.layout.identity == 1
    assert config.train.reference_group == tmp_path / "many" / "mine" / "identity-01" / "sim-group"
    assert config.audit.faces == config.mine.faces and config.report.audit == tmp_path / "many" / "audit"
    second = study_from_dict({**study_data(folder, None), "study": {"name": "many", "identity": 2}}, base=tmp_path)
    assert second.layout.workspace.sim_group.parent.name == "identity-02" and second.report.audit is None
    one = {**study_data(folder, None), "mine": {"source": f"folder:{folder}"}, "study": {"identity": 2}}
    with pytest.raises(UsageError, match=r"set \[mine\] identities above 1"):
        study_from_dict(one, base=tmp_path)
    other_faces = {**study_data(folder, None), "audit": {"gallery": str(gallery), "faces": {"detector": "cnn"}}}
    with pytest.raises(UsageError, match="set by the study"):
        study_from_dict(other_faces, base=tmp_path)


def test_a_study_audits_its_identities_and_stops_on_a_flag(mined, photo_sets, tmp_path, capsys):
    """The study's miner resumes the mined workspace; its audit flags four identities and the study
    stops before selecting anything; the report's section says what the audit found."""
    from amari.report.html import audit_html

    folder, gallery = photo_sets
    root = tmp_path / "many"
    shutil.copytree(mined, root / "mine", ignore=shutil.ignore_patterns("audit"))
    config = tmp_path / "many.toml"
    config.write_text(
        f'[study]\nname = "many"\nout = "{root}"\n[mine]\nsource = "folder:{folder}"\nidentities = 6\n'
        f'[audit]\ngallery = "{gallery}"\n[evaluate]\nprompts = ["a photo of amari"]\n'
        'commands = [{name = "sd1", seed = 1}]\n'
    )
    assert main(["study", str(config), "--until", "select"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("amari study: error: the audit raised a flag")
    assert not any("founded" in line for line in err)  # the miner resumed: nothing new to found
    assert (root / "audit" / "audit.csv").is_file() and not (root / "groups").exists()
    section = audit_html(root / "audit", root / "results" / "report")
    assert "Flagged as a real person of the gallery" in section and "../../audit/index.html" in section
    assert flagged_people(root / "mine", audit_rows(root / "audit")) == set(HELD_BACK)
