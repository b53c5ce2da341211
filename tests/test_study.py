"""`amari study`: a tiny version of the whole study, offline, from one command, then resumed.

The model is a tiny random-weight Stable Diffusion and the miner's source is a folder of real face
photos; the tiny model makes no faces, so every generated cell is "no face found", which the report
must (and does) handle. The report's numbers on real scores are checked in test_report.py.
"""

import csv
import itertools
import json
import os
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amari.cli import main
from amari.report.charts import CHARTS
from amari.study.demo import COMMANDS, GROUPS, PROMPTS, write_demo
from test_report import assert_not_blank, html_tables, render_report


def local_path_hits(folder: Path, needles: list[str]) -> tuple[list[str], dict[str, int]]:
    """Every place under `folder` where one of `needles` (the machine's folders) appears: each file's bytes
    (JSON, CSV, HTML, safetensors headers, uncompressed PNG text chunks, SQLite pages), every PNG text
    chunk as PIL decodes it (compressed ones too), every row of every SQLite table. Returns the hits and
    how many files of each kind were read."""
    hits, counts = [], {}
    raw = [needle.encode() for needle in needles]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        kind = "sqlite" if data.startswith(b"SQLite format 3\0") else path.suffix.lower().lstrip(".")
        counts[kind] = counts.get(kind, 0) + 1
        hits += [f"{path.relative_to(folder)}: bytes" for needle in raw if needle in data]
        if kind == "png":
            with Image.open(path) as image:
                texts = {k: v for k, v in image.info.items() if isinstance(v, str)}
            hits += [f"{path.relative_to(folder)}: {k}" for k, v in texts.items() for n in needles if n in v]
        elif kind == "sqlite":
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
                counts["sqlite tables"] = counts.get("sqlite tables", 0) + len(tables)
                for table in tables:
                    for row in db.execute(f'SELECT * FROM "{table}"'):
                        text = " ".join(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row)
                        hits += [f"{path.relative_to(folder)}: table {table}" for n in needles if n in text]
    return hits, counts


def machine_folders(tmp_path_factory) -> list[str]:
    """The folders of this machine that outputs could leak: the tests' temporary folders (the study, the
    model, the photos, the cache), the working folder and the Python environment."""
    return [str(tmp_path_factory.getbasetemp().resolve()), os.getcwd(), sys.prefix, str(Path.home())]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, tiny_sd):
    """The toy-scale study that `amari study --demo` runs: real face photos, the tiny model."""
    root = tmp_path_factory.mktemp("tiny-study")
    config = write_demo(root, model=tiny_sd)
    assert 'name = "demo"' in config.read_text()
    return root, config


@pytest.mark.slow
def test_the_tiny_study_runs_from_one_command_and_resumes(tiny_study, tmp_path, tmp_path_factory, capsys):
    root, config = tiny_study
    out = root / "study"
    # 1. The whole study, offline, from one command.
    assert main(["study", str(config)]) == 0
    first = capsys.readouterr().out
    assert "study demo: mine ran, select ran, prepare ran, train ran, evaluate ran, report ran" in first

    # 2. The miner took the identity from the folder; the groups trained.
    sim_group = sorted(p.name for p in (out / "mine" / "sim-group").iterdir())
    assert len(sim_group) >= 3 and not any(name.startswith(("other", "noface")) for name in sim_group)
    assert sorted(p.name for p in (out / "groups" / "g_2").glob("*.png")).__len__() == 2
    for group in ("g_all", "g_2"):
        assert (out / "train" / group / "learned_embeds.safetensors").is_file()
        assert (out / "train" / group / "metrics.csv").is_file()
    assert (out / "mine" / "archive.csv").is_file()

    # 3. One CSV row per cell.
    results = out / "results"
    rows = list(csv.DictReader(open(results / "results.csv", newline="")))
    expected_cells = {(p, c, g) for p, (c, _), g in itertools.product(PROMPTS, COMMANDS, GROUPS)}
    assert {(r["prompt"], r["command"], r["group"]) for r in rows} == expected_cells and len(rows) == 12
    assert all((results / r["image"]).is_file() for r in rows)
    assert all(r["face_found"] == "false" for r in rows)  # the tiny model makes no faces

    # 4. Every chart is a valid PNG; the page renders in Chromium with every image present.
    report = results / "report"
    for name in CHARTS.values():
        with Image.open(report / name) as chart:
            chart.verify()
        with Image.open(report / name) as chart:
            assert chart.format == "PNG" and np.asarray(chart.convert("L")).std() > 5
    loaded, dom, screenshot = render_report(report / "index.html", tmp_path)
    assert loaded == f"{len(CHARTS) + 12}/{len(CHARTS) + 12}"
    assert "g-all : no face found" in dom and "ctrl : no face found" in dom
    assert "random weights" in dom and "amari study configs/amari-2022.toml" in dom  # the demo says why: noise
    assert_not_blank(screenshot)
    screenshot.save(tmp_path / "tiny-study-report.png")

    # 5. The report's numbers equal a recomputation from the CSV.
    tables = html_tables(report / "index.html")
    missed = {
        (p, g): sum(1 for r in rows if r["prompt"] == p and r["group"] == g and r["face_found"] == "false")
        for p in PROMPTS
        for g in GROUPS
    }
    for row in tables["not-found"][1:-1]:
        assert row[1:4] == [str(missed[(row[0], g)]) for g in GROUPS]
    assert tables["not-found"][-1][-1] == str(len(rows))
    summary = json.loads((report / "summary.json").read_text())
    assert summary["total"]["not_found"] == 12 and summary["total"]["mean_sim"] is None

    # 6. Nothing the study wrote names a folder of this machine: PNG text chunks, JSON, CSV, safetensors
    # headers, every SQLite table (the miner's, the registries).
    hits, counts = local_path_hits(out, machine_folders(tmp_path_factory))
    assert hits == []
    assert counts["png"] >= 30 and counts["json"] >= 10 and counts["csv"] >= 6 and counts["safetensors"] >= 4
    assert counts["sqlite"] >= 2 and counts["sqlite tables"] >= 6

    # 7. Run again: every step is complete and skipped.
    assert main(["study", str(config)]) == 0
    again = capsys.readouterr().out
    assert "mine skipped, select skipped, prepare skipped, train skipped, evaluate skipped, report skipped" in again

    # 8. An evaluation interrupted after some images: only what is missing is made again.
    for step in ("evaluate", "report"):
        (out / ".steps" / f"{step}.json").unlink()
    lost = [results / rows[i]["image"] for i in (1, 6, 11)]
    before = {path: path.read_bytes() for path in lost}
    for path in lost:
        path.unlink()
    assert main(["study", str(config)]) == 0
    resumed = capsys.readouterr().out
    assert "evaluate: 12 cells: 3 generated, 3 scored, 9 kept" in resumed
    assert "train skipped" in resumed and "evaluate ran, report ran" in resumed
    assert all(path.read_bytes() == before[path] for path in lost)  # the same seeds make the same images

    # 9. --redo runs a step and the ones after it again, whatever their markers say.
    assert main(["study", str(config), "--redo", "report"]) == 0
    assert "evaluate skipped, report ran" in capsys.readouterr().out


@pytest.mark.slow
def test_a_study_crosses_methods_with_groups(tmp_path, tmp_path_factory, tiny_sd, capsys):
    config = write_demo(tmp_path / "demo", model=tiny_sd)
    text = config.read_text().replace("[train]\n", '[train]\nmethods = ["ti", "lora", "pivotal"]\nunet_lr = 0.001\n')
    config.write_text(text)
    out = tmp_path / "demo" / "study"
    assert main(["study", str(config)]) == 0
    assert "train ran, evaluate ran, report ran" in capsys.readouterr().out
    # Each group trained with each method, TI where it always trained, the others in folders of their own.
    markers = sorted(p.stem for p in (out / ".steps").glob("train-*.json"))
    assert markers == sorted(f"train-{m}{g}" for m in ("", "lora-", "pivotal-") for g in ("g_all", "g_2"))
    for group in ("g_all", "g_2"):
        assert (out / "train" / group / "learned_embeds.safetensors").is_file()
        assert (out / "train" / "lora" / group / "pytorch_lora_weights.safetensors").is_file()
        assert (out / "train" / "pivotal" / group / "lora.json").is_file()
    # The grid: prompts × commands × (3 methods × 2 groups + ctrl).
    rows = list(csv.DictReader(open(out / "results" / "results.csv", newline="")))
    units = {(r["method"], r["group"]) for r in rows}
    assert units == {(m, g) for m in ("ti", "lora", "pivotal") for g in ("g_all", "g_2")} | {("", "ctrl")}
    assert len(rows) == len(PROMPTS) * len(COMMANDS) * 7
    lora = next(r for r in rows if r["method"] == "lora")
    assert "* woman" in lora["prompt_sent"]  # the trigger words the LoRA trained with
    # The report: the seed's charts per method and one of mean sim-score against group size.
    report = out / "results" / "report"
    assert (report / "lora-group_sim_scores.png").is_file() and (
        report / "pivotal-faces_not_found_per_prompt.png"
    ).is_file()
    summary = json.loads((report / "summary.json").read_text())
    assert summary["methods"] == ["ti", "lora", "pivotal"]
    sizes = {(p["method"], p["group"]): p["size"] for p in summary["dose_response"]}
    assert sizes[("lora", "g_2")] == 2 and sizes[("pivotal", "g_all")] >= 3  # counted in prepared/
    assert main(["study", str(config)]) == 0
    assert "train skipped, evaluate skipped, report skipped" in capsys.readouterr().out
    # LoRA and pivotal runs (their run records, lora.json, kohya headers) name no folder of this machine.
    assert local_path_hits(out, machine_folders(tmp_path_factory))[0] == []
