"""The report's tables as HTML: counts, means with their bootstrap 95% intervals, permutation tests between
units and the rank correlation of the two identity metrics (numbers from `amari.report.stats`)."""

from __future__ import annotations

import html

from amari.report.charts import display_name, unit_label
from amari.report.inference import BOOTSTRAP_RESAMPLES, PERMUTATIONS
from amari.report.stats import METRICS, Summary


def fmt_score(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def fmt_interval(interval) -> str:
    return "–" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def fmt_mean(value: float | None, interval) -> str:
    """A mean and its 95% interval: `0.4123 [0.3980, 0.4270]` (`–` without a value)."""
    return "–" if value is None else f"{value:.4f} {fmt_interval(interval)}"


def fmt_p(value: float) -> str:
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def table(headers: list[str], rows: list[list[str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="data" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def tables_html(summary: Summary, prefix: str = "") -> str:
    """The seed's tables for one method's units (and the control group), means with their intervals.

    `prefix` starts each table's id (a method's name and '-'; Textual Inversion's keep their plain ids)."""
    groups = summary.groups
    names = [display_name(g) for g in groups]
    parts = [
        "<h3>Faces not found (dlib HOG, upsampled once)</h3>",
        table(
            ["prompt"] + names + ["total"],
            [
                [p]
                + [str(summary.by_prompt_group[(p, g)].not_found) for g in groups]
                + [str(summary.by_prompt[p].not_found)]
                for p in summary.prompts
            ]
            + [["all prompts"] + [str(summary.by_group[g].not_found) for g in groups] + [str(summary.total.not_found)]],
            f"{prefix}not-found",
        ),
        "<h3>Average sim-score per prompt (images with a face), with its 95% interval</h3>",
        table(
            ["prompt"] + names,
            [
                [p] + [fmt_mean(s.mean_sim, s.sim_ci) for s in (summary.by_prompt_group[(p, g)] for g in groups)]
                for p in summary.prompts
            ],
            f"{prefix}sim-per-prompt",
        ),
        "<h3>Groups over all prompts</h3>",
        table(
            ["group", "images", "faces found", "average sim-score", "95% interval", "best", "worst"]
            + [f"≤ {summary.tolerance:.2f}"],
            [
                [
                    display_name(g),
                    str(s.images),
                    str(s.scored),
                    fmt_score(s.mean_sim),
                    fmt_interval(s.sim_ci),
                    fmt_score(s.min_sim),
                    fmt_score(s.max_sim),
                    str(s.within_tolerance),
                ]
                for g, s in summary.by_group.items()
            ],
            f"{prefix}groups",
        ),
    ]
    if summary.has_cnn:
        parts += [
            "<h3>Second pass: dlib's CNN detector on the images where HOG found no face</h3>",
            table(
                ["prompt"] + names + ["total"],
                [
                    [p]
                    + [
                        f"{summary.by_prompt_group[(p, g)].cnn_found}/{summary.by_prompt_group[(p, g)].cnn_checked}"
                        for g in groups
                    ]
                    + [f"{summary.by_prompt[p].cnn_found}/{summary.by_prompt[p].cnn_checked}"]
                    for p in summary.prompts
                ],
                f"{prefix}cnn-second-pass",
            ),
            "<p>found/looked at. These faces are not part of the sim-score tables above.</p>",
        ]
    if summary.has_arcface:
        parts += [
            "<h3>Average ArcFace cosine similarity per prompt (higher = more alike), with its 95% interval</h3>",
            table(
                ["prompt"] + names,
                [
                    [p]
                    + [
                        fmt_mean(s.mean_arcface, s.arcface_ci)
                        for s in (summary.by_prompt_group[(p, g)] for g in groups)
                    ]
                    for p in summary.prompts
                ]
                + [
                    ["all prompts"]
                    + [fmt_mean(summary.by_group[g].mean_arcface, summary.by_group[g].arcface_ci) for g in groups]
                ],
                f"{prefix}arcface",
            ),
        ]
    return "\n".join(parts)


def comparisons_html(comparisons: list[dict], kind: str, units: list[str], table_id: str) -> str:
    """Permutation tests between pairs of `units`, one table per metric (within a method its groups are named
    alone; between methods, with their method)."""
    name = display_name if kind == "groups" else unit_label
    parts = []
    for metric, label in METRICS.items():
        rows = [
            [
                name(c["a"]),
                name(c["b"]),
                f"{c['n_a']} / {c['n_b']}",
                fmt_score(c["mean_a"]),
                fmt_score(c["mean_b"]),
                f"{c['difference']:+.4f}",
                fmt_p(c["p_value"]),
                "exact" if c["exact"] else f"{PERMUTATIONS:,} permutations",
            ]
            for c in comparisons
            if c["metric"] == metric and c["kind"] == kind and c["a"] in units and c["b"] in units
        ]
        if rows:
            suffix = "" if metric == "sim_score" else "-arcface"
            parts.append(f"<h3>Permutation tests of the average {label} (two-sided)</h3>")
            parts.append(
                table(
                    ["a", "b", "images a / b", "average a", "average b", "a − b", "p", "test"],
                    rows,
                    f"{table_id}{suffix}",
                )
            )
    return "\n".join(parts)


def correlation_html(correlations: dict) -> str:
    """Spearman's ρ between the two identity metrics, over all images and per method."""
    if not correlations:
        return ""
    rows = [
        [
            "all images" if name == "all" else name,
            str(found["n"]) if found else "0",
            "–" if not found or found["spearman_rho"] is None else f"{found['spearman_rho']:+.4f}",
            "–" if not found or found["p_value"] is None else fmt_p(found["p_value"]),
        ]
        for name, found in correlations.items()
    ]
    return (
        "<h3>Rank correlation of the two identity metrics</h3>"
        + table(["images", "with both scores", "Spearman ρ", "p"], rows, "rank-correlation")
        + "<p>The sim-score is a distance (lower = more alike) and ArcFace's a similarity (higher = more alike): "
        "metrics that agree give ρ below zero.</p>"
    )


def statistics_note() -> str:
    return (
        f"<p>Intervals: percentile bootstrap 95% intervals of the mean ({BOOTSTRAP_RESAMPLES:,} resamples, fixed "
        f"seed). p: two-sided permutation test of equal means, exact where the relabellings are few, else "
        f"{PERMUTATIONS:,} random ones (fixed seed); no correction for multiple comparisons. Every number can be "
        "recomputed from results.csv (docs/study.md says how).</p>"
    )


def refinement_html(rounds) -> str:
    """The refinement loop's rounds (`amari.storage.rounds.RoundRecord`), as rounds.csv holds them."""
    headers = [
        "round",
        "mined with",
        "candidates",
        "accepted",
        "acceptance",
        "group mean",
        "fresh mean",
        "group size",
        "yaw sd (°)",
        "pitch sd (°)",
        "seconds per accepted",
        "trained",
    ]
    rows = [
        [
            str(r.round),
            r.guided_by or "the plain prompt",
            str(r.candidates),
            str(r.accepted),
            "–" if r.acceptance is None else f"{r.acceptance:.0%}" + (" ✓" if r.target_reached else ""),
            fmt_score(r.group_mean),
            fmt_score(r.fresh_mean),
            str(r.group_size),
            "–" if r.yaw_sd is None else f"{r.yaw_sd:.1f}",
            "–" if r.pitch_sd is None else f"{r.pitch_sd:.1f}",
            "–" if r.seconds_per_accepted is None else f"{r.seconds_per_accepted:.1f}",
            r.trained or "–",
        ]
        for r in rounds
    ]
    return (
        "<h3>Refinement rounds</h3><p>Each round mines with the identity the round before learned; its "
        "candidates are that identity's fresh batch. ✓: the round reached the target, and the loop stopped. "
        "Acceptance gains are the identity's doing only where the group's pose spread holds: a group "
        "collapsing onto one pose shows there.</p>" + table(headers, rows, "refinement")
    )
