"""`amari report`: every number equals a recomputation from results.csv, the charts are real PNGs, and
the HTML page renders in a real headless Chromium with every image present.

`render_report` below is also used by the end-to-end study test. Without Chromium the browser tests
skip, except in CI (CI=true), where a missing browser is a failure that says how to install it.
"""

import csv
import json
import os
import random
import re
import shutil
import statistics
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from amari.cli import main
from amari.mine.workspace import ARCHIVE_COLUMNS
from amari.report import ReportConfig as ReportOptions
from amari.report import run
from amari.report.charts import CHARTS
from amari.report.html import caption
from amari.report.stats import read_training_metrics
from amari.storage.layout import ResultsLayout
from amari.storage.results import CellResult, ResultsManifest, read_manifest, write_manifest, write_results


def build_report(folder, options=ReportOptions()):
    return run(options, ResultsLayout(folder))


PROMPTS = (
    "a photo of amari",
    "a photograph of amari walking outside",
    "a side profile image of amari",
    "an extremely detailed photograph of amari",
)
COMMANDS = (("sd1", 335728730), ("sd2", 691007764), ("sd3", 1295044561), ("sd4", 2565311105), ("sd5", 1995053400))
GROUPS = ("a_312", "b_11", "c_4", "ctrl")
TOLERANCE = 0.40


# -- a results folder with realistic numbers --------------------------------------------------------


@dataclass
class Synthetic:
    folder: Path
    cells: list


def _variant(photo: Image.Image, index: int) -> Image.Image:
    image = photo.resize((128, 128))
    if index % 2:
        image = ImageOps.mirror(image)
    return ImageEnhance.Brightness(image).enhance(0.8 + 0.1 * (index % 5))


def make_results(folder: Path, photos: list[Path], seed: int = 7, all_missed: bool = False) -> Synthetic:
    """A full 4 × 5 × 4 grid of real face crops with scores drawn the way the study's came out."""
    rng = random.Random(seed)
    cells = []
    for p, prompt in enumerate(PROMPTS):
        for c, (command, command_seed) in enumerate(COMMANDS):
            for g, group in enumerate(GROUPS):
                image = f"images/{group}/p{p + 1}-{command}.png"
                (folder / image).parent.mkdir(parents=True, exist_ok=True)
                with Image.open(photos[(p + c + g) % len(photos)]) as photo:
                    _variant(photo.convert("RGB"), p * 7 + c * 3 + g).save(folder / image)
                missed = all_missed or rng.random() < (0.45 if "side profile" in prompt else 0.1)
                centre = 0.8 if group == "ctrl" else 0.42 + 0.03 * g
                cell = CellResult(
                    prompt_index=p,
                    prompt=prompt,
                    command=command,
                    seed=command_seed,
                    group=group,
                    image=image,
                    faces=0 if missed else rng.choice((1, 1, 1, 2)),
                    prompt_sent=prompt.replace("amari", "woman" if group == "ctrl" else f"<amari-{group}>"),
                    scorers="dlib+dlib-cnn+arcface",
                )
                if missed:
                    cnn = rng.random() < 0.5
                    cell = _replace(
                        cell,
                        cnn_faces=int(cnn),
                        cnn_sim_score=rng.uniform(0.35, 0.9) if cnn else None,
                        cnn_yaw=rng.uniform(-80, 80) if cnn else None,
                    )
                else:
                    cell = _replace(
                        cell,
                        sim_score=min(0.99, max(0.3, rng.gauss(centre, 0.05))),
                        yaw=rng.uniform(-40, 40),
                        arcface_similarity=rng.uniform(0.1, 0.9),
                    )
                cells.append(cell)
    write_results(folder / "results.csv", cells)
    metrics = {}
    for group, images in (("a_312", 312), ("b_11", 11), ("c_4", 4)):
        path = folder / f"metrics-{group}.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["global_step", "epoch", "loss", "lr", "images_per_second"])
            for step in range(0, 15501, 500):
                writer.writerow([step, step * 2 / (images * 100), 0.1, 0.01, 3.0])
        metrics[group] = str(path)
    archive = folder / "archive.csv"
    with open(archive, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(ARCHIVE_COLUMNS)
        for batch in range(1, 30):
            writer.writerow(
                [
                    batch * 60.0,
                    2 + batch * 3,
                    batch * 10,
                    0.5 - batch * 0.003,
                    0.5 - batch * 0.002,
                    batch,
                    3,
                    4,
                    "batch",
                ]
            )
    write_manifest(
        folder,
        ResultsManifest(
            study="synthetic",
            prompts=PROMPTS,
            commands=COMMANDS,
            groups=GROUPS,
            control="ctrl",
            tolerance=TOLERANCE,
            model="tiny",
            family="SDXL",
            sampler="k_lms",
            steps=250,
            guidance=7.5,
            width=128,
            height=128,
            sim_group_faces=9,
            scorers=("dlib", "dlib-cnn", "arcface"),
            training_metrics=tuple(metrics.items()),
            mining_archive=str(archive),
        ),
    )
    return Synthetic(folder, cells)


def _replace(cell, **changes):
    from dataclasses import replace

    return replace(cell, **changes)


@pytest.fixture(scope="module")
def synthetic_results(tmp_path_factory, t1_people) -> Synthetic:
    return make_results(tmp_path_factory.mktemp("results"), t1_people)


@pytest.fixture(scope="module")
def report(synthetic_results):
    return build_report(synthetic_results.folder, ReportOptions(thumbnail=96))


# -- recomputation, independent of amari's code -----------------------------------------------------


def expected_numbers(csv_path: Path) -> dict:
    rows = list(csv.DictReader(open(csv_path, newline="")))
    missed = defaultdict(int)
    scores = defaultdict(list)
    arcface = defaultdict(list)
    cnn = defaultdict(lambda: [0, 0])
    for row in rows:
        keys = [(row["prompt"], row["group"]), ("prompt", row["prompt"]), ("group", row["group"]), "all"]
        for key in keys:
            if row["face_found"] == "false":
                missed[key] += 1
                if row["cnn_faces"] != "":
                    cnn[key][1] += 1
                    cnn[key][0] += int(row["cnn_faces"]) > 0
            if row["sim_score"]:
                scores[key].append(float(row["sim_score"]))
            if row["arcface_similarity"]:
                arcface[key].append(float(row["arcface_similarity"]))
    return {"rows": rows, "missed": missed, "scores": scores, "arcface": arcface, "cnn": cnn}


def mean_text(values) -> str:
    return f"{sum(values) / len(values):.4f}" if values else "–"


class Tables(HTMLParser):
    """Rows of cell texts of every <table class="data">, by id."""

    def __init__(self):
        super().__init__()
        self.tables, self._id, self._row, self._cell = {}, None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("class") == "data":
            self._id = attrs["id"]
            self.tables[self._id] = []
        elif self._id and tag == "tr":
            self._row = []
        elif self._id and tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._id = None
        elif self._id and tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif self._id and tag == "tr" and self._row is not None:
            self.tables[self._id].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def html_tables(path: Path) -> dict:
    parser = Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.tables


# -- the numbers ------------------------------------------------------------------------------------


def test_summary_json_equals_a_recomputation_from_the_csv(synthetic_results, report):
    expected = expected_numbers(synthetic_results.folder / "results.csv")
    summary = json.loads(report.summary_json.read_text())
    assert summary["prompts"] == list(PROMPTS) and summary["groups"] == list(GROUPS)
    assert summary["total"]["images"] == len(expected["rows"]) == 80
    assert summary["total"]["not_found"] == expected["missed"]["all"]
    for item in summary["by_prompt_group"]:
        key = (item["prompt"], item["group"])
        scores = expected["scores"][key]
        assert item["images"] == 5
        assert item["not_found"] == expected["missed"][key]
        assert item["scored"] == len(scores)
        if scores:
            assert item["mean_sim"] == pytest.approx(statistics.fmean(scores), abs=1e-12)
        else:
            assert item["mean_sim"] is None
        assert [item["cnn_found"], item["cnn_checked"]] == expected["cnn"][key]
    for group, stats in summary["by_group"].items():
        scores = expected["scores"][("group", group)]
        assert stats["not_found"] == expected["missed"][("group", group)]
        assert stats["mean_sim"] == pytest.approx(sum(scores) / len(scores), abs=1e-12)
        assert stats["min_sim"] == min(scores) and stats["max_sim"] == max(scores)
        assert stats["within_tolerance"] == sum(s <= TOLERANCE for s in scores)
        assert stats["mean_arcface"] == pytest.approx(statistics.fmean(expected["arcface"][("group", group)]))
    for prompt, stats in summary["by_prompt"].items():
        assert stats["not_found"] == expected["missed"][("prompt", prompt)]


def test_html_tables_show_the_recomputed_numbers(synthetic_results, report):
    expected = expected_numbers(synthetic_results.folder / "results.csv")
    tables = html_tables(report.html)
    not_found = tables["not-found"]
    assert not_found[0] == ["prompt", "a-312", "b-11", "c-4", "ctrl", "total"]
    for row in not_found[1:-1]:
        prompt = row[0]
        assert row[1:5] == [str(expected["missed"][(prompt, g)]) for g in GROUPS]
        assert row[5] == str(expected["missed"][("prompt", prompt)])
    assert not_found[-1] == ["all prompts"] + [str(expected["missed"][("group", g)]) for g in GROUPS] + [
        str(expected["missed"]["all"])
    ]
    for row in tables["sim-per-prompt"][1:]:  # each mean followed by its interval: "0.4174 [0.3932, 0.4463]"
        assert [cell.split(" [")[0] for cell in row[1:]] == [mean_text(expected["scores"][(row[0], g)]) for g in GROUPS]
    for row in tables["groups"][1:]:
        group = row[0].replace("-", "_")
        scores = expected["scores"][("group", group)]
        assert row[1:4] + row[5:] == [
            "20",
            str(len(scores)),
            mean_text(scores),
            f"{min(scores):.4f}",
            f"{max(scores):.4f}",
            str(sum(s <= TOLERANCE for s in scores)),
        ]
    for row in tables["cnn-second-pass"][1:]:
        found, checked = expected["cnn"][("prompt", row[0])]
        assert row[-1] == f"{found}/{checked}"
    for row in tables["arcface"][1:-1]:
        assert [cell.split(" [")[0] for cell in row[1:]] == [
            mean_text(expected["arcface"][(row[0], g)]) for g in GROUPS
        ]


def test_captions_follow_the_study(synthetic_results, report):
    page = report.html.read_text(encoding="utf-8")
    for row in expected_numbers(synthetic_results.folder / "results.csv")["rows"]:
        name = row["group"].replace("_", "-")
        if row["sim_score"]:
            score = float(row["sim_score"])
            text = f"{name} : {score:.4f}" + ("*" if score <= TOLERANCE else "")
        else:
            text = f"{name} : no face found"
        assert text in page
    sample = CellResult(0, "a photo of amari", "sd3", 1, "a_312", "x.png", faces=1, sim_score=0.41814)
    assert caption(sample, TOLERANCE) == "a-312 : 0.4181"


def test_every_chart_is_a_valid_png(report):
    assert {name for name in CHARTS} <= set(report.charts)
    assert "arcface" in report.charts  # the second opinion is charted when present
    for path in report.charts.values():
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 600 and image.height >= 400
            assert np.asarray(image.convert("L")).std() > 5


def test_training_and_mining_charts_use_their_inputs(synthetic_results, report, tmp_path):
    steps, epochs = read_training_metrics(synthetic_results.folder / "metrics-c_4.csv")
    assert steps[-1] == 15500 and epochs[-1] == pytest.approx(77.5)
    bare = build_report(
        synthetic_results.folder,
        ReportOptions(
            out=tmp_path / "bare",
            thumbnail=32,
            training_metrics=(("a_312", tmp_path / "none.csv"),),
            mining_archive=tmp_path / "none.csv",
        ),
    )
    for name in ("epochs_at_step", "mining_curve"):
        with_data = np.asarray(Image.open(report.charts[name]).convert("L"), dtype=float)
        without = np.asarray(Image.open(bare.charts[name]).convert("L"), dtype=float)
        assert with_data.shape == without.shape and np.abs(with_data - without).mean() > 1


def test_html_is_one_self_contained_file(report):
    page = report.html.read_text(encoding="utf-8")
    assert "Model <code>tiny</code> (SDXL); sampler k_lms, 250 steps" in page  # which family and sampler made it
    sources = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(sources) == 80 + len(report.charts)
    assert all(src.startswith("data:image/") for src in sources)
    assert "<link" not in page and "http://" not in page and "https://" not in page


def test_a_grid_with_no_face_at_all_still_reports(tmp_path, t1_people):
    results = make_results(tmp_path / "results", t1_people[:2], seed=3, all_missed=True)
    built = build_report(results.folder, ReportOptions(thumbnail=32))
    summary = json.loads(built.summary_json.read_text())
    assert summary["total"]["not_found"] == 80 and summary["total"]["mean_sim"] is None
    assert all(row[1:] == ["–"] * 4 for row in html_tables(built.html)["sim-per-prompt"][1:])
    assert summary["comparisons"] == [] and all(p["mean_sim"] is None for p in summary["dose_response"])
    for path in built.charts.values():
        with Image.open(path) as image:
            assert image.format == "PNG"


def test_only_the_demo_says_its_images_are_noise_by_design(synthetic_results, report, tmp_path):
    assert 'id="demo-notice"' not in report.html.read_text()
    demo = tmp_path / "demo-results"
    shutil.copytree(synthetic_results.folder, demo)
    manifest = read_manifest(demo)
    write_manifest(demo, _replace(manifest, extra={"demo": True}))
    page = build_report(demo, ReportOptions(thumbnail=32)).html.read_text()
    header = page[: page.index("<h2>")]
    assert 'id="demo-notice"' in header and "random weights" in header and "noise by design" in header
    assert "amari study configs/amari-2022.toml" in header


def test_cli_reports_and_rejects_a_folder_without_results(synthetic_results, tmp_path, capsys):
    out = tmp_path / "elsewhere"
    assert main(["report", str(synthetic_results.folder), "--out", str(out), "--thumbnail", "48"]) == 0
    assert (out / "index.html").is_file() and (out / "summary.json").is_file()
    assert "report of 80 images" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "amari evaluate" in err[0]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.csv").write_text("prompt_index,prompt,command,group,image,faces\nx,p,c,g,i,1\n")
    assert main(["report", str(broken)]) == 2
    assert "prompt_index" in capsys.readouterr().err


# -- in a real browser ------------------------------------------------------------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    message = (
        "headless Chromium is needed to check the HTML report and was not found on PATH "
        "(Debian/Ubuntu: apt-get install -y chromium)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _browser(profile: Path) -> list[str]:
    return [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ]


def render_report(html_path: Path, tmp_path: Path) -> tuple[str, str, Image.Image]:
    """(loaded/total images as the page's own check recorded it, the rendered DOM, a screenshot)."""
    url = html_path.resolve().as_uri()
    dom = subprocess.run(
        _browser(tmp_path / "profile-dom") + ["--virtual-time-budget=10000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    match = re.search(r'<body[^>]*data-images-loaded="(\d+)/(\d+)"', dom)
    assert match, "the report's image check did not run (no data-images-loaded on <body>)"
    shot = tmp_path / "report-screenshot.png"
    subprocess.run(
        _browser(tmp_path / "profile-shot") + [f"--screenshot={shot}", "--window-size=1400,3000", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    with Image.open(shot) as image:
        image.load()
        screenshot = image.convert("RGB")
    return f"{match.group(1)}/{match.group(2)}", dom, screenshot


def assert_not_blank(screenshot: Image.Image) -> None:
    pixels = np.asarray(screenshot, dtype=np.float64)
    assert screenshot.size == (1400, 3000)
    assert pixels.std() > 10, "the screenshot is (almost) one colour"
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 50, "the screenshot shows almost nothing"


def test_report_renders_in_chromium_with_every_image(synthetic_results, report, tmp_path):
    loaded, dom, screenshot = render_report(report.html, tmp_path)
    expected = len(report.charts) + 80
    assert loaded == f"{expected}/{expected}"
    assert "broken" not in " ".join(re.findall(r'<img[^>]*class="([^"]*)"', dom))
    assert "a-312 : " in dom and ": no face found" in dom
    assert_not_blank(screenshot)


def test_a_missing_image_is_said_in_words(synthetic_results, tmp_path):
    gone = synthetic_results.folder / synthetic_results.cells[0].image
    saved = gone.read_bytes()
    gone.unlink()
    try:
        built = build_report(synthetic_results.folder, ReportOptions(out=tmp_path / "report", thumbnail=48))
    finally:
        gone.write_bytes(saved)
    loaded, dom, _ = render_report(built.html, tmp_path)
    expected = len(built.charts) + 79
    assert loaded == f"{expected}/{expected}"
    assert f"image missing: {synthetic_results.cells[0].image}" in dom


def test_the_refinement_rounds_get_their_chart_and_table(synthetic_results, report, tmp_path):
    from amari.storage.rounds import RoundRecord, write_rounds

    assert "refinement" not in report.charts and "refinement" not in html_tables(report.html)
    refined = tmp_path / "refined-results"
    shutil.copytree(synthetic_results.folder, refined)
    rounds = [
        RoundRecord(1, "", "ti", 40, 4, 12, 0.31, 0.52, 38, 11.5, 6.0, 120.0, 300.0, "amari-r1"),
        RoundRecord(2, "amari-r1", "ti", 40, 22, 34, 0.29, 0.39, 40, 7.25, 4.0, 110.0, 0.0, "", True),
    ]
    write_rounds(tmp_path / "rounds.csv", rounds)
    write_manifest(refined, _replace(read_manifest(refined), refine_rounds="../rounds.csv"))
    built = build_report(refined, ReportOptions(thumbnail=32))
    rows = html_tables(built.html)["refinement"]
    assert [row[:7] for row in rows[1:]] == [
        ["1", "the plain prompt", "40", "4", "10%", "0.3100", "0.5200"],
        ["2", "amari-r1", "40", "22", "55% ✓", "0.2900", "0.3900"],
    ]
    assert [row[8:11] for row in rows[1:]] == [["11.5", "6.0", "105.0"], ["7.2", "4.0", "5.0"]]
    assert Image.open(built.charts["refinement"]).format == "PNG"
