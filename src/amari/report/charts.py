"""The report's charts as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from amari.report.stats import Summary
from amari.storage.results import CellResult
from amari.train import METHOD_NAMES

CHARTS = {
    "faces_not_found": "faces_not_found_per_prompt.png",
    "sim_score_per_prompt": "average_sim_score_per_prompt.png",
    "group_sim_scores": "group_sim_scores.png",
    "epochs_at_step": "epochs_at_global_step.png",
    "mining_curve": "mining_curve.png",
    "dose_response": "sim_score_against_group_size.png",
}
# Drawn only for a study that refined (its rounds.csv).
REFINEMENT_CHART = "refinement_rounds.png"
# The charts drawn once per method (a method other than TI prefixes their files with its name).
METHOD_CHARTS = ("faces_not_found", "sim_score_per_prompt", "group_sim_scores", "epochs_at_step")
ARCFACE_CHART = "arcface_similarity_per_prompt.png"

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_CONTROL_COLOUR = "#7f7f7f"


def display_name(group: str) -> str:
    """The study wrote group names with a hyphen under its images (a_312 → a-312); within a method's charts
    and tables a unit (lora/a_312) is shown by its group."""
    return group.rsplit("/", 1)[-1].replace("_", "-")


def unit_label(unit: str) -> str:
    """A unit with its method where methods are compared: lora/a-312 (a TI group is shown as it always was)."""
    return unit.replace("_", "-")


def _error(mean: float, interval) -> tuple[float, float]:
    """Distances from a mean down and up to its interval, as matplotlib's yerr wants them."""
    if interval is None:
        return (0.0, 0.0)
    return (max(mean - interval[0], 0.0), max(interval[1] - mean, 0.0))


def _colour(groups: list[str], group: str, control: str | None) -> str:
    if group == control:
        return _CONTROL_COLOUR
    trained = [g for g in groups if g != control]
    return _COLOURS[trained.index(group) % len(_COLOURS)] if group in trained else _CONTROL_COLOUR


def _wrap(text: str, width: int = 22) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])


def _figure(width: float = 8.0, height: float = 4.8):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _whole_numbers():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True, min_n_ticks=1)


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=12, color="#555")


def _grouped_bars(ax, summary: Summary, value, control: str | None, label_format: str, interval=None) -> bool:
    """Bars per prompt, one per group (with `interval`'s error bars); returns whether any bar had a value."""
    groups, prompts = summary.groups, summary.prompts
    width = 0.8 / max(1, len(groups))
    drawn = False
    for i, group in enumerate(groups):
        xs, heights, errors = [], [], []
        for j, prompt in enumerate(prompts):
            stats = summary.by_prompt_group[(prompt, group)]
            v = value(stats)
            if v is not None:
                xs.append(j - 0.4 + width * (i + 0.5))
                heights.append(v)
                errors.append(_error(v, interval(stats) if interval else None))
        if heights:
            drawn = True
            yerr = list(zip(*errors)) if interval else None
            bars = ax.bar(
                xs,
                heights,
                width=width * 0.95,
                label=display_name(group),
                color=_colour(groups, group, control),
                yerr=yerr,
                error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333"},
            )
            ax.bar_label(bars, fmt=label_format, fontsize=7, padding=1)
    ax.set_xticks(range(len(prompts)), [_wrap(p) for p in prompts], fontsize=8)
    ax.set_xlim(-0.5, max(len(prompts), 1) - 0.5)
    if drawn:
        ax.legend(fontsize=8)
    return drawn


def chart_faces_not_found(summary: Summary, path: Path, control: str | None) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    _grouped_bars(ax, summary, lambda s: s.not_found, control, "%d")
    ax.set_xticks(
        range(len(summary.prompts)),
        [f"{_wrap(p)}\n(total {summary.by_prompt[p].not_found})" for p in summary.prompts],
        fontsize=8,
    )
    top = max([summary.by_prompt_group[k].not_found for k in summary.by_prompt_group] + [1])
    ax.set_ylim(0, top * 1.2 + 0.5)
    ax.yaxis.set_major_locator(_whole_numbers())
    ax.set_ylabel("images with no face found (dlib HOG)")
    ax.set_title("Total faces not found per prompt")
    fig.savefig(path)
    return path


def _tolerance_line(ax, summary: Summary) -> None:
    """The sim-group's tolerance as a dashed red line, labelled for the legend."""
    ax.axhline(summary.tolerance, color="#c00", linestyle="--", linewidth=1, label=f"tolerance {summary.tolerance:.2f}")


def chart_sim_per_prompt(summary: Summary, path: Path, control: str | None) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    drawn = _grouped_bars(ax, summary, lambda s: s.mean_sim, control, "%.3f", interval=lambda s: s.sim_ci)
    if drawn:
        _tolerance_line(ax, summary)
        ax.legend(fontsize=8)
        ax.set_ylim(0, max(1.0, ax.get_ylim()[1]))
    else:
        _note(ax, "no face found in any image")
    ax.set_ylabel("average sim-score (lower = more alike)")
    ax.set_title("Average sim-score per prompt (bars: 95% interval)")
    fig.savefig(path)
    return path


def chart_group_scores(summary: Summary, cells: list[CellResult], path: Path, control: str | None) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    groups = summary.groups
    drawn = False
    for i, group in enumerate(groups):
        scores = [c.sim_score for c in cells if c.unit == group and c.sim_score is not None]
        if not scores:
            continue
        drawn = True
        offsets = [((k % 7) - 3) * 0.04 for k in range(len(scores))]
        colour = _colour(groups, group, control)
        ax.scatter([i + o for o in offsets], scores, s=18, color=colour, alpha=0.7)
        mean = statistics.fmean(scores)
        ax.hlines(mean, i - 0.3, i + 0.3, color=colour, linewidth=2.5)
        interval = summary.by_group[group].sim_ci if group in summary.by_group else None
        if interval is not None:
            ax.errorbar([i + 0.3], [mean], yerr=[[mean - interval[0]], [interval[1] - mean]], color=colour, capsize=3)
        ax.annotate(f"{mean:.4f}", (i + 0.34, mean), va="center", fontsize=8)
    ax.set_xticks(range(len(groups)), [display_name(g) for g in groups])
    ax.set_xlim(-0.6, max(len(groups), 1) - 0.2)
    if drawn:
        _tolerance_line(ax, summary)
        ax.legend(fontsize=8)
    else:
        _note(ax, "no face found in any image")
    ax.set_ylabel("sim-score of each image (bar: group average, its 95% interval)")
    ax.set_title("Group sim-scores over all prompts")
    fig.savefig(path)
    return path


def chart_arcface(summary: Summary, path: Path, control: str | None) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    if not _grouped_bars(ax, summary, lambda s: s.mean_arcface, control, "%.3f", interval=lambda s: s.arcface_ci):
        _note(ax, "no ArcFace scores")
    ax.set_ylabel("average ArcFace cosine similarity (higher = more alike)")
    ax.set_title("Average ArcFace similarity per prompt")
    fig.savefig(path)
    return path


def chart_epochs(
    metrics: dict[str, tuple[list[float], list[float]]], groups: list[str], path: Path, control: str | None
) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    drawn = False
    for group in groups:
        if group not in metrics:
            continue
        steps, epochs = metrics[group]
        if steps:
            drawn = True
            ax.plot(
                steps,
                epochs,
                label=f"{display_name(group)} ({epochs[-1]:.4g} epochs)",
                color=_colour(groups, group, control),
                marker="o" if len(steps) <= 30 else None,
            )
    if drawn:
        ax.legend(fontsize=8)
    else:
        _note(ax, "no training metrics found")
    ax.set_xlabel("global step")
    ax.xaxis.set_major_locator(_whole_numbers())
    ax.set_ylabel("epochs")
    ax.set_title("Total epochs at global step")
    fig.savefig(path)
    return path


def chart_mining(archive: dict[str, list[float]] | None, path: Path) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    if archive and archive["batch"]:
        marker = "o" if len(archive["batch"]) <= 30 else None  # a short run is a few points, show them
        ax.plot(archive["batch"], archive["size"], color="#1f77b4", marker=marker, label="group size")
        ax.set_ylabel("images in the sim-group")
        right = ax.twinx()
        right.plot(archive["batch"], archive["avg"], color="#2ca02c", marker=marker, label="group average")
        right.plot(archive["batch"], archive["hi"], color="#d62728", linestyle="--", marker=marker, label="upper bound")
        right.set_ylabel("sim-score")
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")
        ax.yaxis.set_major_locator(_whole_numbers())
        first, last = min(archive["batch"]), max(archive["batch"])
        ax.set_xlim(first - 0.5 - 0.02 * (last - first), last + 0.5 + 0.02 * (last - first))
    else:
        _note(ax, "no mining archive found")
    ax.set_xlabel("batch")
    ax.xaxis.set_major_locator(_whole_numbers())
    ax.set_title("Mining: group size, average and upper bound per batch")
    fig.savefig(path)
    return path


def chart_dose_response(summary: Summary, path: Path) -> Path:
    """Mean sim-score (every prompt) against the training group's size, a line per method with 95% intervals;
    the control group as a band."""
    fig = _figure()
    ax = fig.add_subplot()
    points = [p for p in summary.dose_response if p["size"] is not None and p["mean_sim"] is not None]
    for index, method in enumerate(summary.methods):
        mine = sorted((p for p in points if p["method"] == method), key=lambda p: p["size"])
        if not mine:
            continue
        xs, ys = [p["size"] for p in mine], [p["mean_sim"] for p in mine]
        errors = list(zip(*(_error(p["mean_sim"], p["sim_ci"]) for p in mine)))
        ax.errorbar(
            xs,
            ys,
            yerr=errors,
            color=_COLOURS[index % len(_COLOURS)],
            marker="o",
            capsize=3,
            label=METHOD_NAMES.get(method, method),
        )
    control = next((p for p in summary.dose_response if p["group"] == summary.control), None)
    if control is not None and control["mean_sim"] is not None:
        ax.axhline(control["mean_sim"], color=_CONTROL_COLOUR, linestyle=":", label="control (no training)")
        if control["sim_ci"] is not None:
            ax.axhspan(*control["sim_ci"], color=_CONTROL_COLOUR, alpha=0.15)
    if points:
        _tolerance_line(ax, summary)
        ax.set_xscale("log")
        sizes = sorted({p["size"] for p in points})
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.legend(fontsize=8)
    else:
        _note(ax, "no group with a known size and a face found")
    ax.set_xlabel("training images in the group")
    ax.set_ylabel("average sim-score over all prompts (lower = more alike)")
    ax.set_title("Identity against training-set size (bars: 95% interval)")
    fig.savefig(path)
    return path


def chart_refinement(rounds, path: Path) -> Path:
    """The refinement loop per round: the share of its candidates that joined the group (left), the group's
    average and the candidates' mean sim-score (right)."""
    fig = _figure()
    ax = fig.add_subplot()
    if rounds:
        numbers = [r.round for r in rounds]
        shares = [math.nan if r.acceptance is None else r.acceptance for r in rounds]
        ax.bar(numbers, shares, color="#9ecae1", width=0.5, label="acceptance")
        ax.set_ylabel("share of the round's candidates accepted")
        ax.set_ylim(0, 1)
        right = ax.twinx()
        for values, colour, label in (
            ([r.group_mean for r in rounds], "#2ca02c", "group mean"),
            ([r.fresh_mean for r in rounds], "#d62728", "fresh-batch mean"),
        ):
            right.plot(numbers, [math.nan if v is None else v for v in values], color=colour, marker="o", label=label)
        right.set_ylabel("sim-score (lower = more alike)")
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")
        ax.set_xticks(numbers)
    else:
        _note(ax, "no round finished yet")
    ax.set_xlabel("round (each mines with the identity the round before learned)")
    ax.set_title("Refinement: acceptance, group mean and fresh-batch mean per round")
    fig.savefig(path)
    return path
