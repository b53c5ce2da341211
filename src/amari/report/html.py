"""The report page: one self-contained HTML file.

"Self-contained" means one HTML file that needs nothing beside it: the charts and the grid images are
embedded as data: URIs (grid images as JPEG thumbnails). Each thumbnail also links to its full-size PNG
by a relative path, which works while the report stays inside its results folder.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass
from pathlib import Path

from amari.report.charts import display_name
from amari.report.stats import Summary
from amari.report.tables import statistics_note
from amari.storage.results import CellResult, ResultsManifest
from amari.train import METHOD_NAMES

NO_FACE = "no face found"

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
    from amari.storage.images import load_rgb

    try:
        image = Image.fromarray(load_rgb(path))
    except ImageError:
        return None
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return _data_uri(buffer.getvalue(), "image/jpeg")


def caption(cell: CellResult, tolerance: float) -> str:
    """`a-312 : 0.4181` as the study captioned its images; a trailing * marks a score within tolerance."""
    name = display_name(cell.group)
    if cell.sim_score is None:
        text = f"{name} : {NO_FACE}"
        if cell.cnn_sim_score is not None:
            text += f" (CNN: {cell.cnn_sim_score:.4f})"
        return text
    return f"{name} : {cell.sim_score:.4f}" + ("*" if cell.sim_score <= tolerance else "")


def grids_html(summary: Summary, cells: list[CellResult], results_dir: Path, report_dir: Path, thumbnail: int) -> str:
    by_key = {(c.prompt, c.command, c.unit): c for c in cells}
    seeds = {c.command: c.seed for c in cells}
    parts = []
    for prompt in summary.prompts:
        parts.append(f"<h3>{html.escape(repr(prompt))}</h3>")
        header = "".join(f"<th>{html.escape(display_name(g))}</th>" for g in summary.groups)
        rows = []
        for command in summary.commands:
            row = [f"<th>[{html.escape(command)}]<br><small>seed {seeds.get(command, '')}</small></th>"]
            for group in summary.groups:
                row.append(
                    _grid_cell(
                        by_key.get((prompt, command, group)), summary.tolerance, results_dir, report_dir, thumbnail
                    )
                )
            rows.append("<tr>" + "".join(row) + "</tr>")
        parts.append(
            f'<table class="grid"><thead><tr><th></th>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        )
    return "\n".join(parts)


def _grid_cell(cell: CellResult | None, tolerance: float, results_dir: Path, report_dir: Path, thumbnail: int) -> str:
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
        missing = html.escape(cell.image)
        return f'<td class="missing">image missing: {missing}<div class="{css}">{html.escape(text)}</div></td>'
    link = Path(os.path.relpath(path, report_dir)).as_posix()
    return (
        f'<td><a href="{html.escape(link)}"><img src="{uri}" alt="{html.escape(text)}" '
        f'title="{html.escape(title)}"></a><div class="{css}">{html.escape(text)}</div></td>'
    )


def model_label(model: str) -> str:
    """A Hugging Face id as it is; a local folder or file by its name only (paths stay private)."""
    return Path(model).name if Path(model).is_absolute() else model


@dataclass
class Section:
    """One method's part of the page: its charts, tables, tests and image grids (the control group in each)."""

    method: str
    summary: Summary  # over the method's units and the control group
    cells: list[CellResult]
    charts: list[Path]
    tables: str  # its tables and permutation tests, as HTML


def _charts(paths) -> str:
    tags = "".join(f'<img src="{_data_uri(p.read_bytes(), "image/png")}" alt="{html.escape(p.stem)}">' for p in paths)
    return f'<div class="charts">{tags}</div>'


def _section(section: Section, results_dir: Path, report_dir: Path, thumbnail: int, titled: bool) -> str:
    heading = "h3" if titled else "h2"
    title = f"<h2>{html.escape(METHOD_NAMES.get(section.method, section.method))}</h2>" if titled else ""
    return f"""{title}
<{heading}>Charts</{heading}>
{_charts(section.charts)}
<{heading}>Tables</{heading}>
{section.tables}
<{heading}>Images</{heading}>
{grids_html(section.summary, section.cells, results_dir, report_dir, thumbnail)}"""


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


AUDIT_ROWS = 50  # matches listed in the report; the audit's own page lists them all


def audit_html(folder: Path | None, report_dir: Path) -> str:
    """The leakage audit's result (`amari audit`'s summary.json and audit.csv) and a link to its page."""
    from amari.audit import read_rows, read_summary
    from amari.storage.layout import AuditLayout

    if folder is None:
        return ""
    summary = read_summary(folder)
    if summary is None:
        return '<h2>Leakage audit</h2><p class="missing">A gallery is configured but no audit was found.</p>'
    flagged = [i["identity"] for i in summary["identities"] if i["flags"]]
    close = [f"{p['identity']} and {p['other']}" for p in summary["pairs"] if p["level"] == "flag"]
    verdict = (
        f'<p class="notice">Flagged as a real person of the gallery: {html.escape(", ".join(flagged))}</p>'
        if flagged
        else "<p>No identity came within the same-person threshold of a gallery face.</p>"
    )
    if close:
        verdict += f'<p class="notice">Not distinct from each other: {html.escape("; ".join(close))}</p>'
    rows = read_rows(folder)
    table = "".join(
        f"<tr><td>{html.escape(r['identity'])}</td><td>{html.escape(r['member'])}</td>"
        f"<td>{html.escape(r['gallery'])}</td><td>{float(r['distance']):.4f}</td><td>{html.escape(r['level'])}</td></tr>"
        for r in rows[:AUDIT_ROWS]
    )
    if table:
        table = (
            '<table class="data" id="audit"><tr><th>identity</th><th>member</th><th>gallery</th><th>distance</th>'
            f"<th>level</th></tr>{table}</table>"
        )
    page = Path(os.path.relpath(AuditLayout(Path(folder)).html, report_dir)).as_posix()
    return f"""<h2>Leakage audit</h2>
<p>{len(summary["identities"])} identities against {summary["gallery_faces"]} faces of a gallery of real photos
({html.escape(summary["search"])} search): a flag at a distance up to {summary["threshold"]:g}, a warning up to
{summary["threshold"] + summary["margin"]:g}. The matches side by side: <a href="{html.escape(page)}">the audit's
page</a>.</p>
{verdict}
{table}"""


def render_html(
    summary: Summary,
    manifest: ResultsManifest | None,
    sections: list[Section],
    across: tuple[list[Path], str],
    results_dir: Path,
    report_dir: Path,
    thumbnail: int,
    audit: str = "",
) -> str:
    """The page: what was measured, then each method's section, then the methods and sizes side by side
    (`across`: its charts and tables) and the mining chart last among them."""
    title = f"amari study report: {manifest.study if manifest else results_dir.name}"
    settings = ""
    if manifest is not None and manifest.model:
        settings = (
            f"<p>Model <code>{html.escape(model_label(manifest.model))}</code>"
            f"{f' ({html.escape(manifest.family)})' if manifest.family else ''}; "
            f"sampler {html.escape(manifest.sampler)}, "
            f"{manifest.steps} steps, CFG {manifest.guidance:g}, {manifest.width}×{manifest.height}. "
            f"Scored against {manifest.sim_group_faces} faces of the sim-group; sim-score = mean "
            f"dlib face distance (0 = same face). * marks a score within the tolerance "
            f"{summary.tolerance:.2f}.</p>"
        )
    total = summary.total
    methods = f" ({', '.join(summary.methods)})" if len(summary.methods) > 1 else ""
    overview = (
        f"<p>{total.images} images: {len(summary.prompts)} prompts × {len(summary.commands)} "
        f"commands × {len(summary.groups)} groups{methods}; no face found in {total.not_found}.</p>"
    )
    titled = len(sections) > 1
    body = "\n".join(_section(section, results_dir, report_dir, thumbnail, titled) for section in sections)
    charts, tables = across
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
{audit}
{statistics_note()}
{body}
<h2>Training-set size{" and methods" if titled else ""}, and the mining run</h2>
{_charts(charts)}
{tables}
<script>{_IMAGE_CHECK}</script>
</body></html>
"""
