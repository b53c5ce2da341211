"""`amari report RESULTS_DIR`: the study's charts (PNG) and one self-contained HTML page.

Every number shown is computed here from `results.csv` alone (plus the training metrics and mining
archive the manifest points to, for their two charts), so the report can be checked against the CSV.

"Self-contained" means one HTML file that needs nothing beside it: the charts and the grid images are
embedded as data: URIs (grid images as JPEG thumbnails). Each thumbnail also links to its full-size PNG
by a relative path, which works while the report stays inside its results folder. The charts are also
written as PNG files next to the page.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amari.errors import UsageError
from amari.study.results import RESULTS_CSV, CellResult, ResultsManifest, read_manifest, read_results

CHARTS = {
    "faces_not_found": "faces_not_found_per_prompt.png",
    "sim_score_per_prompt": "average_sim_score_per_prompt.png",
    "group_sim_scores": "group_sim_scores.png",
    "epochs_at_step": "epochs_at_global_step.png",
    "mining_curve": "mining_curve.png",
}
ARCFACE_CHART = "arcface_similarity_per_prompt.png"
HTML_NAME = "index.html"
SUMMARY_NAME = "summary.json"
NO_FACE = "no face found"


@dataclass(frozen=True)
class ReportOptions:
    out: Path | None = None  # default: RESULTS_DIR/report
    thumbnail: int = 256
    training_metrics: tuple[tuple[str, Path], ...] = ()  # (group, CSV): instead of the manifest's
    mining_archive: Path | None = None

    def __post_init__(self):
        if not 16 <= self.thumbnail <= 2048:
            raise UsageError(f"thumbnail side must be in [16, 2048] pixels, not {self.thumbnail}")


# -- numbers ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CellStats:
    """Aggregates of a set of cells (one prompt and group, one group, or one prompt)."""

    images: int
    not_found: int  # HOG found no face
    cnn_checked: int  # of those, how many the CNN second pass looked at
    cnn_found: int  # of those, how many it found a face in
    scored: int  # images with a sim-score
    mean_sim: float | None
    min_sim: float | None
    max_sim: float | None
    within_tolerance: int  # sim-score ≤ tolerance
    arcface_scored: int
    mean_arcface: float | None


def cell_stats(cells: list[CellResult], tolerance: float) -> CellStats:
    scores = [c.sim_score for c in cells if c.sim_score is not None]
    missed = [c for c in cells if not c.face_found]
    checked = [c for c in missed if c.cnn_faces is not None]
    arcface = [c.arcface_similarity for c in cells if c.arcface_similarity is not None]
    return CellStats(
        images=len(cells), not_found=len(missed), cnn_checked=len(checked),
        cnn_found=sum(1 for c in checked if c.cnn_faces > 0), scored=len(scores),
        mean_sim=statistics.fmean(scores) if scores else None,
        min_sim=min(scores) if scores else None, max_sim=max(scores) if scores else None,
        within_tolerance=sum(1 for s in scores if s <= tolerance),
        arcface_scored=len(arcface), mean_arcface=statistics.fmean(arcface) if arcface else None)


@dataclass
class Summary:
    prompts: list[str]
    commands: list[str]
    groups: list[str]
    tolerance: float
    by_prompt_group: dict[tuple[str, str], CellStats] = field(default_factory=dict)
    by_prompt: dict[str, CellStats] = field(default_factory=dict)
    by_group: dict[str, CellStats] = field(default_factory=dict)
    total: CellStats | None = None

    @property
    def has_arcface(self) -> bool:
        return bool(self.total and self.total.arcface_scored)

    @property
    def has_cnn(self) -> bool:
        return bool(self.total and self.total.cnn_checked)

    def to_json(self) -> dict:
        return {
            "prompts": self.prompts, "commands": self.commands, "groups": self.groups,
            "tolerance": self.tolerance, "total": asdict(self.total) if self.total else None,
            "by_group": {g: asdict(s) for g, s in self.by_group.items()},
            "by_prompt": {p: asdict(s) for p, s in self.by_prompt.items()},
            "by_prompt_group": [{"prompt": p, "group": g, **asdict(s)}
                                for (p, g), s in self.by_prompt_group.items()],
        }


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def summarise(cells: list[CellResult], manifest: ResultsManifest | None = None) -> Summary:
    """Every aggregate the report shows, in the study's order (the manifest's, else the CSV's)."""
    by_index = sorted(cells, key=lambda c: c.prompt_index)
    prompts = _ordered(c.prompt for c in by_index)
    commands = _ordered(c.command for c in cells)
    groups = _ordered(c.group for c in cells)
    if manifest is not None:
        prompts = [p for p in manifest.prompts if p in prompts] + [p for p in prompts if p not in manifest.prompts]
        names = [n for n, _ in manifest.commands]
        commands = [c for c in names if c in commands] + [c for c in commands if c not in names]
        groups = [g for g in manifest.groups if g in groups] + [g for g in groups if g not in manifest.groups]
    tolerance = manifest.tolerance if manifest is not None else 0.40
    summary = Summary(prompts=prompts, commands=commands, groups=groups, tolerance=tolerance)
    for prompt in prompts:
        for group in groups:
            subset = [c for c in cells if c.prompt == prompt and c.group == group]
            summary.by_prompt_group[(prompt, group)] = cell_stats(subset, tolerance)
        summary.by_prompt[prompt] = cell_stats([c for c in cells if c.prompt == prompt], tolerance)
    for group in groups:
        summary.by_group[group] = cell_stats([c for c in cells if c.group == group], tolerance)
    summary.total = cell_stats(cells, tolerance)
    return summary


# -- other inputs -----------------------------------------------------------------------------------

def _pick_column(header: list[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {h.strip().lower().replace(" ", "_").replace("-", "_"): h for h in header}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    return None


def _numeric_columns(path: Path, wanted: dict[str, tuple[str, ...]]) -> dict[str, list[float]]:
    """Named numeric series from a CSV, each column found by its first matching candidate name."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        columns = {key: _pick_column(header, names) for key, names in wanted.items()}
        lost = [key for key, column in columns.items() if column is None]
        if lost:
            raise UsageError(f"{path}: no column for {', '.join(lost)} (columns: {', '.join(header)})")
        series: dict[str, list[float]] = {key: [] for key in wanted}
        for row in reader:
            try:
                values = {key: float(row[column]) for key, column in columns.items()}
            except (TypeError, ValueError):
                continue  # a half-written last line of a running job
            for key, value in values.items():
                series[key].append(value)
    return series


def read_training_metrics(path: str | os.PathLike) -> tuple[list[float], list[float]]:
    """(global steps, epochs) from a training metrics CSV."""
    series = _numeric_columns(Path(path), {"step": ("global_step", "step"), "epoch": ("epoch", "epochs")})
    return series["step"], series["epoch"]


def read_mining_archive(path: str | os.PathLike) -> dict[str, list[float]]:
    """Per batch: number, group size, group average and upper bound, from the miner's archive CSV."""
    return _numeric_columns(Path(path), {
        "batch": ("batch", "batch_number", "batch_no"),
        "size": ("group_size", "sim_group_size", "sim_group", "group", "size"),
        "avg": ("avg", "average", "group_avg", "group_average"),
        "hi": ("hi", "upper_bound", "upper", "bound")})


# -- charts -----------------------------------------------------------------------------------------

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_CONTROL_COLOUR = "#7f7f7f"


def display_name(group: str) -> str:
    """The study wrote group names with a hyphen under its images (a_312 → a-312)."""
    return group.replace("_", "-")


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


def _grouped_bars(ax, summary: Summary, value, control: str | None, label_format: str) -> bool:
    """Bars per prompt, one per group; returns whether any bar had a value."""
    groups, prompts = summary.groups, summary.prompts
    width = 0.8 / max(1, len(groups))
    drawn = False
    for i, group in enumerate(groups):
        xs, heights = [], []
        for j, prompt in enumerate(prompts):
            v = value(summary.by_prompt_group[(prompt, group)])
            if v is not None:
                xs.append(j - 0.4 + width * (i + 0.5))
                heights.append(v)
        if heights:
            drawn = True
            bars = ax.bar(xs, heights, width=width * 0.95, label=display_name(group),
                          color=_colour(groups, group, control))
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
    ax.set_xticks(range(len(summary.prompts)),
                  [f"{_wrap(p)}\n(total {summary.by_prompt[p].not_found})" for p in summary.prompts], fontsize=8)
    top = max([summary.by_prompt_group[k].not_found for k in summary.by_prompt_group] + [1])
    ax.set_ylim(0, top * 1.2 + 0.5)
    ax.yaxis.set_major_locator(_whole_numbers())
    ax.set_ylabel("images with no face found (dlib HOG)")
    ax.set_title("Total faces not found per prompt")
    fig.savefig(path)
    return path


def chart_sim_per_prompt(summary: Summary, path: Path, control: str | None) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    drawn = _grouped_bars(ax, summary, lambda s: s.mean_sim, control, "%.3f")
    if drawn:
        ax.axhline(summary.tolerance, color="#c00", linestyle="--", linewidth=1,
                   label=f"tolerance {summary.tolerance:.2f}")
        ax.legend(fontsize=8)
        ax.set_ylim(0, max(1.0, ax.get_ylim()[1]))
    else:
        _note(ax, "no face found in any image")
    ax.set_ylabel("average sim-score (lower = more alike)")
    ax.set_title("Average sim-score per prompt")
    fig.savefig(path)
    return path


def chart_group_scores(summary: Summary, cells: list[CellResult], path: Path, control: str | None) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    groups = summary.groups
    drawn = False
    for i, group in enumerate(groups):
        scores = [c.sim_score for c in cells if c.group == group and c.sim_score is not None]
        if not scores:
            continue
        drawn = True
        offsets = [((k % 7) - 3) * 0.04 for k in range(len(scores))]
        colour = _colour(groups, group, control)
        ax.scatter([i + o for o in offsets], scores, s=18, color=colour, alpha=0.7)
        mean = statistics.fmean(scores)
        ax.hlines(mean, i - 0.3, i + 0.3, color=colour, linewidth=2.5)
        ax.annotate(f"{mean:.4f}", (i + 0.32, mean), va="center", fontsize=8)
    ax.set_xticks(range(len(groups)), [display_name(g) for g in groups])
    ax.set_xlim(-0.6, max(len(groups), 1) - 0.2)
    if drawn:
        ax.axhline(summary.tolerance, color="#c00", linestyle="--", linewidth=1,
                   label=f"tolerance {summary.tolerance:.2f}")
        ax.legend(fontsize=8)
    else:
        _note(ax, "no face found in any image")
    ax.set_ylabel("sim-score of each image (bar: group average)")
    ax.set_title("Group sim-scores over all prompts")
    fig.savefig(path)
    return path


def chart_arcface(summary: Summary, path: Path, control: str | None) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    if not _grouped_bars(ax, summary, lambda s: s.mean_arcface, control, "%.3f"):
        _note(ax, "no ArcFace scores")
    ax.set_ylabel("average ArcFace cosine similarity (higher = more alike)")
    ax.set_title("Average ArcFace similarity per prompt")
    fig.savefig(path)
    return path


def chart_epochs(metrics: dict[str, tuple[list[float], list[float]]], groups: list[str], path: Path,
                 control: str | None) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    drawn = False
    for group in groups:
        if group not in metrics:
            continue
        steps, epochs = metrics[group]
        if steps:
            drawn = True
            ax.plot(steps, epochs, label=f"{display_name(group)} ({epochs[-1]:.4g} epochs)",
                    color=_colour(groups, group, control), marker="o" if len(steps) <= 30 else None)
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
        right.plot(archive["batch"], archive["hi"], color="#d62728", linestyle="--", marker=marker,
                   label="upper bound")
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


# -- HTML -------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
.notice { background: #fff4d6; border: 1px solid #e0c060; padding: 0.6em 1em; }
table.data { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
table.data th, table.data td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
table.data th:first-child, table.data td:first-child { text-align: left; }
.charts img { width: calc(50% - 1.2em); min-width: 480px; margin: 0.5em; border: 1px solid #ddd; }
.charts { display: flex; flex-wrap: wrap; }
table.grid { border-collapse: collapse; table-layout: fixed; width: 100%; }
table.grid td, table.grid th { padding: 0.3em; text-align: center; vertical-align: top; }
table.grid img { width: 100%; max-width: 256px; image-rendering: auto; }
.caption { font-weight: bold; font-family: ui-monospace, monospace; }
.within { color: #080; } .missing { color: #a00; }
img.broken { outline: 3px solid #c00; }
"""

# Marks images that failed to load and records "loaded/total" on <body>, for people and for tests.
_IMAGE_CHECK = """
window.addEventListener('load', function () {
  var all = Array.prototype.slice.call(document.images), ok = 0;
  all.forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { ok += 1; } else { img.classList.add('broken'); }
  });
  document.body.setAttribute('data-images-loaded', ok + '/' + all.length);
});
"""


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail_uri(path: Path, side: int) -> str | None:
    """A JPEG thumbnail of an image file as a data: URI, or None when it cannot be read."""
    from PIL import Image

    from amari.errors import ImageError
    from amari.images import load_rgb

    try:
        image = Image.fromarray(load_rgb(path))
    except ImageError:
        return None
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return _data_uri(buffer.getvalue(), "image/jpeg")


def fmt_score(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def caption(cell: CellResult, tolerance: float) -> str:
    """`a-312 : 0.4181` as the study captioned its images; a trailing * marks a score within tolerance."""
    name = display_name(cell.group)
    if cell.sim_score is None:
        text = f"{name} : {NO_FACE}"
        if cell.cnn_sim_score is not None:
            text += f" (CNN: {cell.cnn_sim_score:.4f})"
        return text
    return f"{name} : {cell.sim_score:.4f}" + ("*" if cell.sim_score <= tolerance else "")


def _table(headers: list[str], rows: list[list[str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="data" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def tables_html(summary: Summary) -> str:
    groups = summary.groups
    names = [display_name(g) for g in groups]
    parts = ["<h3>Faces not found (dlib HOG, upsampled once)</h3>",
             _table(["prompt"] + names + ["total"],
                    [[p] + [str(summary.by_prompt_group[(p, g)].not_found) for g in groups]
                     + [str(summary.by_prompt[p].not_found)] for p in summary.prompts]
                    + [["all prompts"] + [str(summary.by_group[g].not_found) for g in groups]
                       + [str(summary.total.not_found)]], "not-found"),
             "<h3>Average sim-score per prompt (images with a face)</h3>",
             _table(["prompt"] + names,
                    [[p] + [fmt_score(summary.by_prompt_group[(p, g)].mean_sim) for g in groups]
                     for p in summary.prompts], "sim-per-prompt"),
             "<h3>Groups over all prompts</h3>",
             _table(["group", "images", "faces found", "average sim-score", "best", "worst",
                     f"≤ {summary.tolerance:.2f}"],
                    [[display_name(g), str(s.images), str(s.scored), fmt_score(s.mean_sim),
                      fmt_score(s.min_sim), fmt_score(s.max_sim), str(s.within_tolerance)]
                     for g, s in summary.by_group.items()], "groups")]
    if summary.has_cnn:
        parts += ["<h3>Second pass: dlib's CNN detector on the images where HOG found no face</h3>",
                  _table(["prompt"] + names + ["total"],
                         [[p] + [f"{summary.by_prompt_group[(p, g)].cnn_found}/"
                                 f"{summary.by_prompt_group[(p, g)].cnn_checked}" for g in groups]
                          + [f"{summary.by_prompt[p].cnn_found}/{summary.by_prompt[p].cnn_checked}"]
                          for p in summary.prompts], "cnn-second-pass"),
                  "<p>found/looked at. These faces are not part of the sim-score tables above.</p>"]
    if summary.has_arcface:
        parts += ["<h3>Average ArcFace cosine similarity per prompt (higher = more alike)</h3>",
                  _table(["prompt"] + names,
                         [[p] + [fmt_score(summary.by_prompt_group[(p, g)].mean_arcface) for g in groups]
                          for p in summary.prompts]
                         + [["all prompts"] + [fmt_score(summary.by_group[g].mean_arcface) for g in groups]],
                         "arcface")]
    return "\n".join(parts)


def grids_html(summary: Summary, cells: list[CellResult], results_dir: Path, report_dir: Path,
               thumbnail: int) -> str:
    by_key = {(c.prompt, c.command, c.group): c for c in cells}
    seeds = {c.command: c.seed for c in cells}
    parts = []
    for prompt in summary.prompts:
        parts.append(f"<h3>{html.escape(repr(prompt))}</h3>")
        header = "".join(f"<th>{html.escape(display_name(g))}</th>" for g in summary.groups)
        rows = []
        for command in summary.commands:
            row = [f"<th>[{html.escape(command)}]<br><small>seed {seeds.get(command, '')}</small></th>"]
            for group in summary.groups:
                row.append(_grid_cell(by_key.get((prompt, command, group)), summary.tolerance,
                                      results_dir, report_dir, thumbnail))
            rows.append("<tr>" + "".join(row) + "</tr>")
        parts.append(f'<table class="grid"><thead><tr><th></th>{header}</tr></thead>'
                     f'<tbody>{"".join(rows)}</tbody></table>')
    return "\n".join(parts)


def _grid_cell(cell: CellResult | None, tolerance: float, results_dir: Path, report_dir: Path,
               thumbnail: int) -> str:
    if cell is None:
        return '<td class="missing">not evaluated</td>'
    path = results_dir / cell.image
    uri = thumbnail_uri(path, thumbnail) if path.is_file() else None
    text = caption(cell, tolerance)
    css = "caption within" if text.endswith("*") else "caption"
    title = f"faces: {cell.faces}" + (f", yaw {cell.yaw:.1f}°" if cell.yaw is not None else "")
    if cell.arcface_similarity is not None:
        title += f", ArcFace {cell.arcface_similarity:.4f}"
    if uri is None:
        return f'<td class="missing">image missing: {html.escape(cell.image)}<div class="{css}">{html.escape(text)}</div></td>'
    link = Path(os.path.relpath(path, report_dir)).as_posix()
    return (f'<td><a href="{html.escape(link)}"><img src="{uri}" alt="{html.escape(text)}" '
            f'title="{html.escape(title)}"></a><div class="{css}">{html.escape(text)}</div></td>')


def model_label(model: str) -> str:
    """A Hugging Face id as it is; a local folder or file by its name only (paths stay private)."""
    return Path(model).name if Path(model).is_absolute() else model


DEMO_NOTICE = """<p class="notice demo" id="demo-notice"><strong>This is amari's offline demo.</strong> Its Stable
Diffusion model is a tiny network with random weights, built on this machine so that the demo needs no
download: the generated images below are noise by design, and "no face found" is the expected score for
them. The sim-group the miner kept comes from a sample photo shipped with amari. To run the real study
(a GPU and the Stable Diffusion 1.4 weights): <code>amari doctor configs/amari-2022.toml</code> checks the
setup and estimates the time, <code>amari models pull configs/amari-2022.toml</code> fetches the models,
and <code>amari study configs/amari-2022.toml</code> runs it.</p>"""


def demo_notice(manifest: ResultsManifest | None) -> str:
    """The demo's explanation for the header, when the manifest says the study is the demo."""
    return DEMO_NOTICE if manifest is not None and manifest.extra.get("demo") else ""


def render_html(summary: Summary, cells: list[CellResult], manifest: ResultsManifest | None,
                charts: dict[str, Path], results_dir: Path, report_dir: Path, thumbnail: int) -> str:
    title = f"amari study report: {manifest.study if manifest else results_dir.name}"
    settings = ""
    if manifest is not None and manifest.model:
        settings = (f"<p>Model <code>{html.escape(model_label(manifest.model))}</code>; "
                    f"{html.escape(manifest.sampler)}, "
                    f"{manifest.steps} steps, CFG {manifest.guidance:g}, {manifest.width}×{manifest.height}. "
                    f"Scored against {manifest.sim_group_faces} faces of the sim-group; sim-score = mean "
                    f"dlib face distance (0 = same face). * marks a score within the tolerance "
                    f"{summary.tolerance:.2f}.</p>")
    total = summary.total
    overview = (f"<p>{total.images} images: {len(summary.prompts)} prompts × {len(summary.commands)} "
                f"commands × {len(summary.groups)} groups; no face found in {total.not_found}.</p>")
    chart_tags = "".join(
        f'<img src="{_data_uri(p.read_bytes(), "image/png")}" alt="{html.escape(p.stem)}">'
        for p in charts.values())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="notice">Every face in this report is synthetic: generated by Stable Diffusion, of no real person.
The images carry an invisible watermark and metadata that say so (<code>amari verify</code>).</p>
{demo_notice(manifest)}
{overview}
{settings}
<h2>Charts</h2>
<div class="charts">{chart_tags}</div>
<h2>Tables</h2>
{tables_html(summary)}
<h2>Images</h2>
{grids_html(summary, cells, results_dir, report_dir, thumbnail)}
<script>{_IMAGE_CHECK}</script>
</body></html>
"""


# -- the stage --------------------------------------------------------------------------------------

@dataclass
class ReportResult:
    html: Path
    charts: dict[str, Path]
    summary: Summary
    summary_json: Path


def _existing(path: str | Path | None, base: Path) -> Path | None:
    if not path:
        return None
    path = Path(path)
    path = path if path.is_absolute() else base / path
    return path if path.is_file() else None


def build_report(results_dir: str | os.PathLike, options: ReportOptions = ReportOptions()) -> ReportResult:
    """Charts, summary.json and index.html for a results folder."""
    results_dir = Path(results_dir)
    # 1. Read the results and what the manifest says about the study around them.
    if not results_dir.is_dir():
        raise UsageError(f"results folder not found: {results_dir}")
    cells = read_results(results_dir / RESULTS_CSV)
    if not cells:
        raise UsageError(f"{results_dir / RESULTS_CSV} has no rows yet: nothing to report")
    manifest = read_manifest(results_dir)
    control = manifest.control if manifest is not None else "ctrl"
    report_dir = Path(options.out) if options.out else results_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    # 2. The numbers.
    summary = summarise(cells, manifest)
    summary_json = report_dir / SUMMARY_NAME
    summary_json.write_text(json.dumps(summary.to_json(), indent=2, ensure_ascii=False) + "\n",
                            encoding="utf-8")
    # 3. Training metrics and the mining archive, where they can be found.
    metric_paths = dict(options.training_metrics) or dict(manifest.training_metrics if manifest else ())
    metrics = {}
    for group, path in metric_paths.items():
        found = _existing(path, results_dir)
        if found is not None:
            metrics[group] = read_training_metrics(found)
    archive_path = options.mining_archive or _existing(manifest.mining_archive if manifest else None, results_dir)
    archive = read_mining_archive(archive_path) if archive_path and Path(archive_path).is_file() else None
    # 4. Charts, then the page that embeds them.
    charts = {
        "faces_not_found": chart_faces_not_found(summary, report_dir / CHARTS["faces_not_found"], control),
        "sim_score_per_prompt": chart_sim_per_prompt(summary, report_dir / CHARTS["sim_score_per_prompt"],
                                                     control),
        "group_sim_scores": chart_group_scores(summary, cells, report_dir / CHARTS["group_sim_scores"], control),
        "epochs_at_step": chart_epochs(metrics, summary.groups, report_dir / CHARTS["epochs_at_step"], control),
        "mining_curve": chart_mining(archive, report_dir / CHARTS["mining_curve"]),
    }
    if summary.has_arcface:
        charts["arcface"] = chart_arcface(summary, report_dir / ARCFACE_CHART, control)
    page = render_html(summary, cells, manifest, charts, results_dir, report_dir, options.thumbnail)
    html_path = report_dir / HTML_NAME
    tmp = html_path.with_name(f".{HTML_NAME}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, html_path)
    return ReportResult(html=html_path, charts=charts, summary=summary, summary_json=summary_json)

