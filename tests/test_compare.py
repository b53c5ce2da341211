import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image, ImageOps

from amari.cli import main
from amari.storage.images import load_rgb
from test_faces import _dlib_reference


@pytest.fixture(scope="module")
def folders(tmp_path_factory, t1_people, data_dir):
    root = tmp_path_factory.mktemp("compare")
    known, unknown = root / "known", root / "unknown"
    known.mkdir()
    unknown.mkdir()
    for index in (0, 2, 4):
        shutil.copy(t1_people[index], known / f"person{index}.png")
    ImageOps.mirror(Image.open(t1_people[2])).save(unknown / "mirrored2.png")
    shutil.copy(t1_people[5], unknown / "stranger.png")
    Image.new("RGB", (90, 90), "white").save(unknown / "empty.png")
    (unknown / "broken.jpg").write_bytes((data_dir / "t1.jpg").read_bytes()[:3000])
    (unknown / "notes.png").write_text("not an image")
    return known, unknown


def _run(capsys, *argv):
    code = main(["compare", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_folder_output_follows_face_recognition(capsys, folders):
    known, unknown = folders
    code, lines, err = _run(capsys, known, unknown)
    assert code == 0
    assert lines == [
        f"{unknown / 'empty.png'},no_persons_found",
        f"{unknown / 'mirrored2.png'},person2",
        f"{unknown / 'stranger.png'},unknown_person",
    ]
    assert "broken.jpg" in err and "notes.png" in err


def test_paths_are_spelled_as_face_recognition_spells_them(capsys, folders, monkeypatch):
    """face_recognition_cli.py (`image_files_in_folder`) prints `os.path.join(folder, name)` with the folder
    exactly as typed, so `./unknown/` gives `./unknown/empty.png`; a single file prints as typed too."""
    known, unknown = folders
    monkeypatch.chdir(unknown.parent)
    _, lines, err = _run(capsys, "./known/", "./unknown/")
    names = ("empty.png", "mirrored2.png", "stranger.png")
    assert [line.split(",")[0] for line in lines] == [os.path.join("./unknown/", name) for name in names]
    assert "./unknown/broken.jpg" in err
    _, lines, _ = _run(capsys, "known", "./unknown//stranger.png")
    assert lines == ["./unknown//stranger.png,unknown_person"]


def test_distances_equal_dlib_own_numbers(capsys, folders):
    known, unknown = folders
    code, lines, _ = _run(capsys, "--show-distance", known, unknown / "mirrored2.png")
    assert code == 0 and len(lines) == 1
    path, name, distance = lines[0].split(",")
    expected = np.linalg.norm(
        _dlib_reference(load_rgb(known / "person2.png"))[0] - _dlib_reference(load_rgb(unknown / "mirrored2.png"))[0]
    )
    assert name == "person2"
    assert abs(float(distance) - expected) < 1e-6
    assert float(distance) < 0.4


def test_show_distance_accepts_face_recognition_spelling(capsys, folders):
    known, unknown = folders
    _, with_true, _ = _run(capsys, "--show-distance", "true", known, unknown / "stranger.png")
    _, with_false, _ = _run(capsys, "--show-distance", "false", known, unknown / "stranger.png")
    assert with_true == [f"{unknown / 'stranger.png'},unknown_person,None"]
    assert with_false == [f"{unknown / 'stranger.png'},unknown_person"]


def test_tolerance_changes_matches(capsys, folders):
    known, unknown = folders
    _, loose, _ = _run(capsys, "--tolerance", "0.99", known, unknown / "stranger.png")
    assert sorted(line.split(",")[1] for line in loose) == ["person0", "person2", "person4"]


def test_a_broken_single_file_is_one_error_line(capsys, folders):
    known, unknown = folders
    code, lines, err = _run(capsys, known, unknown / "broken.jpg")
    assert code == 1 and lines == []
    assert err.strip().count("\n") == 0 and "truncated" in err


def test_missing_known_folder_is_a_usage_error(capsys, tmp_path, folders):
    code, _, err = _run(capsys, tmp_path / "nobody", folders[1])
    assert code == 2 and "known people folder not found" in err


def test_parallel_and_cached_runs_print_the_same(capsys, folders):
    known, unknown = folders
    _, first, _ = _run(capsys, "--show-distance", "--cpus", "2", known, unknown)
    _, second, _ = _run(capsys, "--show-distance", known, unknown)
    assert first == second and len(first) == 3


def test_help_is_instant():
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "amari", "--help"], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0 and "compare" in result.stdout
    assert elapsed < 1.0, f"amari --help took {elapsed:.2f}s"
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import amari.cli, sys; amari.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'dlib', 'diffusers', 'numpy') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
    )
    assert check.stdout.strip() == "[]", check.stderr


def test_cli_subprocess_exit_codes(folders, tmp_path):
    known, unknown = folders
    ok = subprocess.run(
        [sys.executable, "-m", "amari", "compare", str(known), str(unknown / "empty.png")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and ok.stdout.strip().endswith("no_persons_found")
    bad = subprocess.run([sys.executable, "-m", "amari", "compare", str(known)], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("amari compare: error:")
    assert "Traceback" not in bad.stderr


def test_names_with_commas_or_line_breaks_are_quoted_as_csv(capsys, tmp_path, t1_people):
    import csv
    import io

    known, unknown = tmp_path / "known", tmp_path / "unknown"
    known.mkdir()
    unknown.mkdir()
    shutil.copy(t1_people[2], known / "Doe, Jane.png")
    shutil.copy(t1_people[2], known / "plain.png")
    ImageOps.mirror(Image.open(t1_people[2])).save(unknown / 'a "quoted"\nname.png')
    code = main(["compare", str(known), str(unknown)])
    out = capsys.readouterr().out
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert sorted(row[1] for row in rows) == ["Doe, Jane", "plain"]
    assert all(row[0] == str(unknown / 'a "quoted"\nname.png') for row in rows)
