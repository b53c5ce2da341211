"""The evaluation's results folder, which `amari evaluate` writes and `amari report` reads: one CSV row per
grid cell, and a manifest of the study around it.

RESULTS_DIR/
  results.csv      one row per prompt × command × method × group cell (the columns below)
  manifest.json    the study's prompts, commands, methods, groups (and their sizes) and where its
                   training metrics and mining archive are (relative to the folder), so
                   `amari report RESULTS_DIR` needs nothing else
  images/GROUP/    the generated PNGs of Textual Inversion's groups and the control group (watermarked,
                   with their generation parameters)
  images/METHOD/GROUP/  those of the groups trained with another method (lora, pivotal)

Empty CSV fields mean "not measured" (no face, or that scorer not run), never zero. A results file
written before training methods existed has no `method` column: its groups read as Textual Inversion's.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from amari.errors import UsageError
from amari.storage.files import atomic_open, write_atomic
from amari.storage.layout import DEFAULT_METHOD, RESULTS_MANIFEST

MANIFEST = RESULTS_MANIFEST
CONTROL = "ctrl"  # the group without training: the subject word replaced by the init word


def unit_name(method: str, group: str) -> str:
    """How a method × group unit is named where one name is needed (metrics, summary.json): the group for
    Textual Inversion and the control group, as always; METHOD/GROUP for the other methods."""
    return group if method in (DEFAULT_METHOD, "") else f"{method}/{group}"


@dataclass(frozen=True)
class CellResult:
    """One grid cell: which image, how it was made, and what the scorers found in it."""

    prompt_index: int
    prompt: str  # as written in the study, with the subject word
    command: str
    seed: int
    group: str
    image: str  # relative to the results folder, '/'-separated
    faces: int  # faces dlib's HOG detector found (upsampled once, as the study scored)
    sim_score: float | None = None  # mean dlib distance of the largest face to the sim-group
    yaw: float | None = None  # head yaw of that face in degrees, from 68 landmarks
    cnn_faces: int | None = None  # second pass with dlib's CNN detector, only where HOG found none
    cnn_sim_score: float | None = None
    cnn_yaw: float | None = None
    arcface_similarity: float | None = None  # mean ArcFace cosine similarity to the sim-group
    prompt_sent: str = ""  # the prompt given to the pipeline (the token or the init word in place)
    embedding: str = ""  # embedding file used ('' for the control group)
    fingerprint: str = ""  # hash of everything that made the image; a changed one regenerates it
    scorers: str = ""  # scorers applied, '+'-joined; a missing one is run again on the kept image
    method: str = DEFAULT_METHOD  # ti, lora or pivotal; '' for the control group

    @property
    def face_found(self) -> bool:
        return self.faces > 0

    @property
    def key(self) -> tuple[int, str, str, str]:
        return (self.prompt_index, self.command, self.method, self.group)

    @property
    def unit(self) -> str:
        return unit_name(self.method, self.group)


CSV_FIELDS = (
    "prompt_index",
    "prompt",
    "command",
    "seed",
    "method",
    "group",
    "image",
    "face_found",
    "faces",
    "sim_score",
    "yaw",
    "cnn_faces",
    "cnn_sim_score",
    "cnn_yaw",
    "arcface_similarity",
    "prompt_sent",
    "embedding",
    "fingerprint",
    "scorers",
)
_INT_FIELDS = {"prompt_index", "seed", "faces", "cnn_faces"}
_FLOAT_FIELDS = {"sim_score", "yaw", "cnn_sim_score", "cnn_yaw", "arcface_similarity"}


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def cell_to_row(cell: CellResult) -> dict[str, str]:
    values = asdict(cell)
    values["face_found"] = cell.face_found
    return {name: _format(values[name]) for name in CSV_FIELDS}


_REQUIRED = ("prompt_index", "prompt", "command", "group", "image", "faces")


def has_results_header(path: str | os.PathLike) -> bool:
    """Whether the file starts with the header of amari's results CSV (an empty file does not)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return set(_REQUIRED) <= set(header)


def row_to_cell(row: dict[str, str], where: str) -> CellResult:
    missing = [name for name in _REQUIRED if name not in row]
    if missing:
        raise UsageError(f"{where}: not an amari results file (no column {', '.join(missing)})")
    values: dict[str, Any] = {}
    for f in fields(CellResult):
        text = (row.get(f.name) or "").strip()
        try:
            if f.name in _INT_FIELDS:
                values[f.name] = int(text) if text else (0 if f.name in ("faces", "seed") else None)
            elif f.name in _FLOAT_FIELDS:
                values[f.name] = float(text) if text else None
                if values[f.name] is not None and not math.isfinite(values[f.name]):
                    raise ValueError(text)
            else:
                values[f.name] = row.get(f.name) or ""
        except ValueError:
            raise UsageError(f"{where}: column {f.name} holds {text!r}, not a number") from None
    if "method" not in row:
        values["method"] = "" if values["group"] == CONTROL else DEFAULT_METHOD
    return CellResult(**values)


def read_results(path: str | os.PathLike) -> list[CellResult]:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            return [row_to_cell(row, f"{path} line {i + 2}") for i, row in enumerate(reader)]
    except FileNotFoundError:
        raise UsageError(f"no results file at {path}: run `amari evaluate` first") from None


def write_results(path: str | os.PathLike, cells: Iterable[CellResult]) -> None:
    """Write the whole CSV aside and move it into place, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for cell in cells:
            writer.writerow(cell_to_row(cell))


@dataclass(frozen=True)
class ResultsManifest:
    """What the report needs to know about the study behind a results CSV."""

    study: str = "study"
    subject: str = "amari"
    prompts: tuple[str, ...] = ()
    commands: tuple[tuple[str, int], ...] = ()  # (name, seed)
    groups: tuple[str, ...] = ()  # in grid order, the control group last
    control: str | None = CONTROL
    methods: tuple[str, ...] = (DEFAULT_METHOD,)  # in grid order; each trained every group
    group_sizes: tuple[tuple[str, int], ...] = ()  # (group, training images): the dose-response chart's x
    tolerance: float = 0.40
    model: str = ""
    family: str = ""  # the model family that made every image of the grid (SD 1.x, SDXL, FLUX.1 [schnell], ...)
    sampler: str = ""
    steps: int = 0
    guidance: float = 0.0
    width: int = 0
    height: int = 0
    sim_group: str = ""
    sim_group_faces: int = 0
    scorers: tuple[str, ...] = ()
    training_metrics: tuple[tuple[str, str], ...] = ()  # (unit name, metrics CSV path)
    mining_archive: str = ""
    refine_rounds: str = ""  # the refinement loop's rounds.csv, when the study refined
    extra: dict[str, Any] = field(default_factory=dict)


def write_manifest(results_dir: str | os.PathLike, manifest: ResultsManifest) -> Path:
    path = Path(results_dir) / MANIFEST
    data = asdict(manifest)
    data["commands"] = [{"name": n, "seed": s} for n, s in manifest.commands]
    data["training_metrics"] = dict(manifest.training_metrics)
    data["group_sizes"] = dict(manifest.group_sizes)
    return write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_manifest(results_dir: str | os.PathLike) -> ResultsManifest | None:
    path = Path(results_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["commands"] = tuple((c["name"], int(c["seed"])) for c in data.get("commands", ()))
        data["training_metrics"] = tuple((g, str(p)) for g, p in dict(data.get("training_metrics", {})).items())
        data["group_sizes"] = tuple((g, int(n)) for g, n in dict(data.get("group_sizes", {})).items())
        for key in ("prompts", "groups", "scorers"):
            data[key] = tuple(data.get(key, ()))
        data["methods"] = tuple(data.get("methods") or (DEFAULT_METHOD,))
        known = {f.name for f in fields(ResultsManifest)}
        return ResultsManifest(**{k: v for k, v in data.items() if k in known})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path} is damaged ({exc}); run `amari evaluate` again to rewrite it") from None
