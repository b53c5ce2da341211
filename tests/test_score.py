import csv
import shutil

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from amari.cli import main
from amari.faces import descriptors as faces
from amari.storage.images import load_rgb


@pytest.fixture(scope="module")
def group(tmp_path_factory, t1_people):
    folder = tmp_path_factory.mktemp("group")
    base = Image.open(t1_people[3])
    base.save(folder / "a.png")
    ImageEnhance.Brightness(base).enhance(1.15).save(folder / "b.png")
    base.crop((6, 6, base.width - 4, base.height - 4)).save(folder / "c.png")
    Image.new("RGB", (50, 50)).save(folder / "noface.png")
    return folder


def test_scores_are_mean_distances_to_the_group(capsys, tmp_path, group, t1_people):
    probe = tmp_path / "probe"
    probe.mkdir()
    shutil.copy(t1_people[3], probe / "same.png")
    shutil.copy(t1_people[1], probe / "other.png")
    Image.new("RGB", (64, 64), "white").save(probe / "blank.png")
    out = tmp_path / "scores.csv"
    assert main(["score", str(probe), "--group", str(group), "--csv", str(out)]) == 0
    captured = capsys.readouterr()
    lines = dict(line.rsplit(",", 1) for line in captured.out.splitlines())
    assert lines[str(probe / "blank.png")] == "no face found"
    assert "noface.png" in captured.err

    members = [faces.largest(faces.encode(load_rgb(group / n))).descriptor for n in ("a.png", "b.png", "c.png")]
    for name in ("same.png", "other.png"):
        descriptor = faces.largest(faces.encode(load_rgb(probe / name))).descriptor
        expected = np.mean([np.linalg.norm(descriptor - m) for m in members])
        assert float(lines[str(probe / name)]) == pytest.approx(expected, abs=1e-4)
    assert float(lines[str(probe / "same.png")]) < 0.4 < float(lines[str(probe / "other.png")])

    rows = {r["path"]: r for r in csv.DictReader(out.open())}
    assert rows[str(probe / "blank.png")]["face_found"] == "0"
    assert float(rows[str(probe / "same.png")]["sim_score"]) == pytest.approx(
        float(lines[str(probe / "same.png")]), abs=1e-4
    )


def test_group_without_faces_is_an_error(capsys, tmp_path, t1_people):
    empty_group = tmp_path / "g"
    empty_group.mkdir()
    Image.new("RGB", (40, 40)).save(empty_group / "x.png")
    assert main(["score", str(t1_people[0]), "--group", str(empty_group)]) == 2
    assert "holds no image with a face" in capsys.readouterr().err


def test_missing_image_is_an_error(capsys, tmp_path, group):
    assert main(["score", str(tmp_path / "nope.png"), "--group", str(group)]) == 2
    assert "no such file" in capsys.readouterr().err
