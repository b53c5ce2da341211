"""The report's statistics recomputed independently from results.csv: bootstrap intervals and permutation
p-values by a plain implementation of the documented procedure, checked against summary.json and the
HTML tables, and against scipy's own bootstrap, permutation test and rank correlation. Then a study with
three methods: each method's charts and tables, the comparisons between methods, the dose-response chart.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats as scipy_stats

from amari.report.charts import CHARTS, METHOD_CHARTS
from amari.report.inference import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    EXACT_LIMIT,
    PERMUTATION_SEED,
    PERMUTATIONS,
    bootstrap_interval,
    permutation_test,
)
from amari.storage.results import CellResult, ResultsManifest, write_manifest, write_results
from test_report import COMMANDS, PROMPTS, _variant, build_report, html_tables, make_results, render_report

# -- the documented procedures, written out plainly -------------------------------------------------


def direct_interval(values: list[float]):
    """Percentile bootstrap 95% interval: the resample indices from default_rng(seed).integers, each
    resample's mean in plain Python, the 2.5th and 97.5th percentiles by linear interpolation."""
    n = len(values)
    if n == 0:
        return None
    if n == 1:
        return (values[0], values[0])
    draws = np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n)).tolist()
    means = sorted(sum(values[i] for i in row) / n for row in draws)

    def percentile(q: float) -> float:
        position = q / 100 * (len(means) - 1)
        low = math.floor(position)
        high = min(low + 1, len(means) - 1)
        return means[low] + (means[high] - means[low]) * (position - low)

    return (percentile(2.5), percentile(97.5))


def direct_p(a: list[float], b: list[float]) -> tuple[float, bool]:
    """Two-sided permutation p of |mean(a) - mean(b)|: every relabelling when they are few, else the rows
    of default_rng(seed).permuted(tile(pooled), axis=1)."""
    pooled = a + b
    observed = abs(sum(a) / len(a) - sum(b) / len(b))

    def statistic(first: list[float], second: list[float]) -> float:
        return abs(sum(first) / len(first) - sum(second) / len(second))

    if math.comb(len(pooled), len(a)) <= EXACT_LIMIT:
        hits = total = 0
        for chosen in itertools.combinations(range(len(pooled)), len(a)):
            picked = set(chosen)
            first = [pooled[i] for i in chosen]
            second = [v for i, v in enumerate(pooled) if i not in picked]
            hits += statistic(first, second) >= observed - 1e-12
            total += 1
        return hits / total, True
    rows = np.random.default_rng(PERMUTATION_SEED).permuted(np.tile(pooled, (PERMUTATIONS, 1)), axis=1).tolist()
    hits = sum(statistic(row[: len(a)], row[len(a) :]) >= observed - 1e-12 for row in rows)
    return (1 + hits) / (1 + PERMUTATIONS), False


def csv_scores(path: Path) -> tuple[dict, dict, list]:
    """Scores per unit and per (prompt, unit), from the CSV alone, in its row order."""
    rows = list(csv.DictReader(open(path, newline="")))
    by_unit, by_prompt_unit = defaultdict(lambda: defaultdict(list)), defaultdict(lambda: defaultdict(list))
    for row in rows:
        method = row.get("method", "ti")
        unit = row["group"] if method in ("ti", "") else f"{method}/{row['group']}"
        for metric in ("sim_score", "arcface_similarity"):
            if row[metric]:
                by_unit[unit][metric].append(float(row[metric]))
                by_prompt_unit[(row["prompt"], unit)][metric].append(float(row[metric]))
    return by_unit, by_prompt_unit, rows


def close(interval, expected) -> bool:
    if interval is None or expected is None:
        return interval is None and expected is None
    return all(abs(x - y) <= 1e-9 for x, y in zip(interval, expected))


# -- one method (the seed's study) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_report(tmp_path_factory, t1_people):
    results = make_results(tmp_path_factory.mktemp("seed-results"), t1_people)
    return results.folder, build_report(results.folder)


def test_every_interval_equals_a_direct_recomputation(seed_report):
    folder, report = seed_report
    summary = json.loads(report.summary_json.read_text())
    by_unit, by_prompt_unit, _ = csv_scores(folder / "results.csv")
    assert summary["statistics"]["bootstrap"] == {
        "interval": "percentile",
        "confidence": 0.95,
        "resamples": BOOTSTRAP_RESAMPLES,
        "seed": BOOTSTRAP_SEED,
    }
    for unit, stats in summary["by_group"].items():
        assert close(stats["sim_ci"], direct_interval(by_unit[unit]["sim_score"])), unit
        assert close(stats["arcface_ci"], direct_interval(by_unit[unit]["arcface_similarity"])), unit
        low, high = stats["sim_ci"]
        assert low <= stats["mean_sim"] <= high
    for item in summary["by_prompt_group"]:
        scores = by_prompt_unit[(item["prompt"], item["group"])]
        assert close(item["sim_ci"], direct_interval(scores["sim_score"])), item["group"]
    # The HTML shows the same intervals, to four decimals.
    for row in html_tables(report.html)["groups"][1:]:
        low, high = direct_interval(by_unit[row[0].replace("-", "_")]["sim_score"])
        assert row[4] == f"[{low:.4f}, {high:.4f}]"


def test_every_p_value_equals_a_direct_recomputation(seed_report):
    folder, report = seed_report
    summary = json.loads(report.summary_json.read_text())
    by_unit, _, _ = csv_scores(folder / "results.csv")
    units = list(summary["by_group"])
    # Every pair of groups (the control group included), for both metrics.
    pairs = {(c["metric"], c["a"], c["b"]) for c in summary["comparisons"]}
    expected_pairs = {
        (m, a, b) for m in ("sim_score", "arcface_similarity") for a, b in itertools.combinations(units, 2)
    }
    assert pairs == expected_pairs
    for comparison in summary["comparisons"]:
        a = by_unit[comparison["a"]][comparison["metric"]]
        b = by_unit[comparison["b"]][comparison["metric"]]
        p_value, exact = direct_p(a, b)
        assert comparison["p_value"] == pytest.approx(p_value, abs=1e-12) and comparison["exact"] == exact
        assert comparison["difference"] == pytest.approx(sum(a) / len(a) - sum(b) / len(b), abs=1e-12)
    # The table shows them.
    table = html_tables(report.html)["comparisons"]
    assert table[0] == ["a", "b", "images a / b", "average a", "average b", "a − b", "p", "test"]
    shown = {(row[0], row[1]): row[6] for row in table[1:]}
    for comparison in summary["comparisons"]:
        if comparison["metric"] == "sim_score":
            key = (comparison["a"].replace("_", "-"), comparison["b"].replace("_", "-"))
            p_value = comparison["p_value"]
            assert shown[key] == ("< 0.0001" if p_value < 0.0001 else f"{p_value:.4f}")
    # Twenty images where trained groups differ by 0.03-0.06 and the control by 0.4: the control differs clearly.
    control = [c for c in summary["comparisons"] if c["b"] == "ctrl" and c["metric"] == "sim_score"]
    assert all(c["p_value"] < 0.001 for c in control)


def test_scipy_agrees(seed_report):
    folder, report = seed_report
    summary = json.loads(report.summary_json.read_text())
    by_unit, _, rows = csv_scores(folder / "results.csv")
    scores = by_unit["a_312"]["sim_score"]
    theirs = scipy_stats.bootstrap(
        (scores,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile", random_state=1
    ).confidence_interval
    ours = summary["by_group"]["a_312"]["sim_ci"]
    assert ours[0] == pytest.approx(theirs.low, abs=0.005) and ours[1] == pytest.approx(theirs.high, abs=0.005)

    def distance(x, y, axis):
        return np.abs(np.mean(x, axis=axis) - np.mean(y, axis=axis))

    comparison = next(c for c in summary["comparisons"] if (c["a"], c["b"]) == ("a_312", "b_11"))
    theirs = scipy_stats.permutation_test(
        (by_unit["a_312"]["sim_score"], by_unit["b_11"]["sim_score"]),
        distance,
        n_resamples=PERMUTATIONS,
        alternative="greater",
        vectorized=True,
        random_state=1,
    )
    assert comparison["p_value"] == pytest.approx(theirs.pvalue, abs=0.01)
    # Small groups are tested exactly: the same p as scipy's exact test, to the last digit.
    a, b = [0.41, 0.45, 0.39, 0.43], [0.50, 0.48, 0.52, 0.47, 0.44]
    exact = scipy_stats.permutation_test((a, b), distance, n_resamples=np.inf, alternative="greater", vectorized=True)
    assert permutation_test(a, b) == (pytest.approx(exact.pvalue, abs=1e-12), True)
    assert bootstrap_interval([]) is None and bootstrap_interval([0.5]) == (0.5, 0.5)
    # Spearman's rho of the two metrics over the images that have both.
    pairs = [(float(r["sim_score"]), float(r["arcface_similarity"])) for r in rows if r["arcface_similarity"]]
    expected = scipy_stats.spearmanr(*zip(*pairs))
    found = summary["rank_correlation"]["all"]
    assert found["n"] == len(pairs) and found["spearman_rho"] == pytest.approx(expected.statistic, abs=1e-12)
    table = html_tables(report.html)["rank-correlation"]
    assert table[1] == ["all images", str(len(pairs)), f"{expected.statistic:+.4f}", f"{expected.pvalue:.4f}"]


# -- three methods × three sizes -------------------------------------------------------------------

METHODS = ("ti", "lora", "pivotal")
SIZES = {"a_312": 312, "b_11": 11, "c_4": 4}


def make_method_results(folder: Path, photos: list[Path], seed: int = 11) -> Path:
    """Two prompts × five commands × (3 methods × 3 groups + ctrl), LoRA and pivotal scoring better."""
    rng = random.Random(seed)
    units = [(m, g) for m in METHODS for g in SIZES] + [("", "ctrl")]
    cells = []
    for p, prompt in enumerate(PROMPTS[:2]):
        for c, (command, command_seed) in enumerate(COMMANDS):
            for u, (method, group) in enumerate(units):
                where = group if method in ("ti", "") else f"{method}/{group}"
                image = f"images/{where}/p{p + 1}-{command}.png"
                (folder / image).parent.mkdir(parents=True, exist_ok=True)
                with Image.open(photos[(p + c + u) % len(photos)]) as photo:
                    _variant(photo.convert("RGB"), p * 7 + c * 3 + u).resize((64, 64)).save(folder / image)
                centre = 0.8 if group == "ctrl" else {"ti": 0.5, "lora": 0.44, "pivotal": 0.40}[method]
                centre -= 0.02 * math.log10(SIZES.get(group, 1))
                missed = rng.random() < 0.1
                cells.append(
                    CellResult(
                        prompt_index=p,
                        prompt=prompt,
                        command=command,
                        seed=command_seed,
                        group=group,
                        image=image,
                        faces=0 if missed else 1,
                        sim_score=None if missed else rng.gauss(centre, 0.04),
                        arcface_similarity=None if missed else 1.2 - centre + rng.gauss(0, 0.05),
                        method=method,
                    )
                )
    write_results(folder / "results.csv", cells)
    write_manifest(
        folder,
        ResultsManifest(
            study="methods",
            prompts=PROMPTS[:2],
            commands=COMMANDS,
            groups=(*SIZES, "ctrl"),
            methods=METHODS,
            group_sizes=tuple(SIZES.items()),
            tolerance=0.40,
        ),
    )
    return folder


@pytest.fixture(scope="module")
def methods_report(tmp_path_factory, t1_people):
    folder = make_method_results(tmp_path_factory.mktemp("methods"), t1_people)
    return folder, build_report(folder)


def test_each_method_gets_the_seeds_charts_and_tables(methods_report):
    folder, report = methods_report
    summary = json.loads(report.summary_json.read_text())
    assert summary["methods"] == list(METHODS)
    assert summary["groups"] == [*SIZES, *(f"lora/{g}" for g in SIZES), *(f"pivotal/{g}" for g in SIZES), "ctrl"]
    for method in METHODS:
        for name in METHOD_CHARTS:
            key = name if method == "ti" else f"{method}/{name}"
            file = CHARTS[name] if method == "ti" else f"{method}-{CHARTS[name]}"
            assert report.charts[key] == report.html.parent / file and report.charts[key].is_file()
        assert ("arcface" if method == "ti" else f"{method}/arcface") in report.charts
    tables = html_tables(report.html)
    by_unit, _, _ = csv_scores(folder / "results.csv")
    for method in METHODS:
        prefix = "" if method == "ti" else f"{method}-"
        groups = tables[f"{prefix}groups"]
        assert [row[0] for row in groups[1:]] == ["a-312", "b-11", "c-4", "ctrl"]  # the method's groups, then ctrl
        for row in groups[1:]:
            unit = (
                row[0].replace("-", "_")
                if method == "ti" or row[0] == "ctrl"
                else f"{method}/{row[0].replace('-', '_')}"
            )
            low, high = direct_interval(by_unit[unit]["sim_score"])
            assert row[3] == f"{sum(by_unit[unit]['sim_score']) / len(by_unit[unit]['sim_score']):.4f}"
            assert row[4] == f"[{low:.4f}, {high:.4f}]"
        assert len(tables[f"{prefix}comparisons"]) == 1 + 6  # every pair of its 3 groups and ctrl


def test_methods_are_compared_group_by_group(methods_report):
    folder, report = methods_report
    summary = json.loads(report.summary_json.read_text())
    by_unit, _, _ = csv_scores(folder / "results.csv")
    between = [c for c in summary["comparisons"] if c["kind"] == "methods" and c["metric"] == "sim_score"]
    expected = set()
    for group in SIZES:
        expected |= set(itertools.combinations([group, f"lora/{group}", f"pivotal/{group}"], 2))
    assert {(c["a"], c["b"]) for c in between} == expected
    for comparison in between:
        p_value, _exact = direct_p(by_unit[comparison["a"]]["sim_score"], by_unit[comparison["b"]]["sim_score"])
        assert comparison["p_value"] == pytest.approx(p_value, abs=1e-12)
    table = html_tables(report.html)["methods-comparisons"]
    assert [row[:2] for row in table[1:4]] == [
        ["a-312", "lora/a-312"],
        ["a-312", "pivotal/a-312"],
        ["lora/a-312", "pivotal/a-312"],
    ]
    # TI against pivotal tuning, 0.10 apart on 18-20 images each: clearly different.
    assert all(c["p_value"] < 0.001 for c in between if c["a"] in SIZES and c["b"].startswith("pivotal/"))
    # Both metrics, and their rank correlation per method.
    assert set(summary["rank_correlation"]) == {"all", *METHODS}
    assert summary["rank_correlation"]["all"]["spearman_rho"] < -0.5  # ArcFace agrees: higher as distance falls


def test_the_dose_response_chart_has_a_line_per_method(methods_report, tmp_path):
    folder, report = methods_report
    summary = json.loads(report.summary_json.read_text())
    by_unit, _, _ = csv_scores(folder / "results.csv")
    points = {(p["method"], p["group"]): p for p in summary["dose_response"]}
    assert set(points) == {(m, g) for m in METHODS for g in SIZES} | {("", "ctrl")}
    for (method, group), point in points.items():
        unit = group if method in ("ti", "") else f"{method}/{group}"
        assert point["size"] == SIZES.get(group) and close(point["sim_ci"], direct_interval(by_unit[unit]["sim_score"]))
    chart = np.asarray(Image.open(report.charts["dose_response"]).convert("RGB"), dtype=float)
    blue, orange, green = (31, 119, 180), (255, 127, 14), (44, 160, 44)  # one colour per method
    for colour in (blue, orange, green):
        assert (np.abs(chart - colour).sum(axis=2) < 30).sum() > 100
    # The page: every chart and every grid image loads (each method's grid shows the control group too).
    loaded, _dom, _shot = render_report(report.html, tmp_path)
    images = len(report.charts) + len(METHODS) * 2 * len(COMMANDS) * (len(SIZES) + 1)
    assert loaded == f"{images}/{images}"
