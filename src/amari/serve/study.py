"""The study beside the workspace: its report, each method's grid with its identity scores, and verify.

The grids come from the evaluation's results.csv (the same cells the report draws): one table per
training method, a row per prompt and command, a column per group with the control group last, each
cell the image with its sim-score (and ArcFace similarity when that scorer ran).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from amari.storage.images import IMAGE_EXTENSIONS
from amari.storage.layout import PROVENANCE_REGISTRY, REPORT_HTML, ServeLayout
from amari.storage.results import CONTROL, CellResult, read_manifest, read_results


@dataclass(frozen=True)
class Grid:
    method: str
    groups: list[str]  # the columns
    rows: list[tuple[str, str, list[CellResult | None]]]  # (prompt, command, a cell per group)
    tolerance: float


def report_file(layout: ServeLayout) -> Path | None:
    if layout.study is None:
        return None
    path = layout.study.results.report / REPORT_HTML
    return path if path.is_file() else None


def grids(layout: ServeLayout) -> list[Grid]:
    """Each method's grid, in the study's order; none when the study has no results yet."""
    if layout.study is None or not layout.study.results.csv.is_file():
        return []
    results = layout.study.results
    cells = read_results(results.csv)
    manifest = read_manifest(results.root)
    control = manifest.control if manifest is not None else CONTROL
    tolerance = manifest.tolerance if manifest is not None else 0.40
    methods = list(manifest.methods) if manifest is not None else []
    methods += [m for m in dict.fromkeys(c.method for c in cells) if m and m not in methods]
    found = []
    for method in methods:
        own = [c for c in cells if c.method == method or c.group == control]
        groups = list(dict.fromkeys(c.group for c in own if c.group != control))
        groups += [control] if any(c.group == control for c in own) else []
        by_key = {(c.prompt_index, c.command, c.group): c for c in own}
        lines = dict.fromkeys((c.prompt_index, c.prompt, c.command) for c in own)
        rows = [
            (prompt, command, [by_key.get((index, command, group)) for group in groups])
            for index, prompt, command in sorted(lines, key=lambda line: line[0])
        ]
        if groups != [control]:
            found.append(Grid(method, groups, rows, tolerance))
    return found


def registries(layout: ServeLayout) -> dict[Path, str]:
    """The fingerprint registries of the workspace and the study that exist, each with the name the page
    shows (not a local path)."""
    places = {layout.workspace.root: "workspace"}
    if layout.study is not None:
        places[layout.study.root] = "study"
    found = {place / PROVENANCE_REGISTRY: f"{label} {PROVENANCE_REGISTRY}" for place, label in places.items()}
    return {path: label for path, label in found.items() if path.is_file()}


def verify(layout: ServeLayout, data: bytes, name: str) -> dict:
    """`amari verify` on an image sent by the page: every mark and the verdict, as `--json` prints it."""
    from amari.provenance.verification import Verifier, as_json

    suffix = Path(name).suffix.lower()
    suffix = suffix if suffix in IMAGE_EXTENSIONS else ""  # the content decides; the name only hints
    with tempfile.TemporaryDirectory(prefix="amari-verify-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        named = registries(layout)
        with Verifier(list(named)) as verifier:
            for registry in verifier.registries:
                registry.name = named.get(registry.path, registry.name)
            result = as_json(verifier.check(path))
    result["path"] = name  # the name the user dropped, not a temporary path
    return result
