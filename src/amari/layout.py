"""Where every stage reads and writes: the folder and file names, defined once.

STUDY/                      StudyLayout
  mine/                     WorkspaceLayout: the miner's workspace
    sim-group/ almost-sim/ unknown-person/ incoming/
    mine.sqlite  archive.csv  .lock
  groups/NAME/              training groups picked from the sim-group (manifest.csv)
  prepared/NAME/            their training images (manifest.csv)
  train/NAME/               TrainLayout: checkpoints/, metrics.csv, validation.csv, best.json, run.json
  results/                  ResultsLayout: results.csv, manifest.json, images/, report/
  .steps/                   the study's completion markers
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The miner's workspace.
SIM_GROUP = "sim-group"
ALMOST_SIM = "almost-sim"
UNKNOWN_PERSON = "unknown-person"
JUDGED_FOLDERS = (SIM_GROUP, ALMOST_SIM, UNKNOWN_PERSON)
INCOMING = "incoming"
MINE_DATABASE = "mine.sqlite"
ARCHIVE_CSV = "archive.csv"
LOCK_FILE = ".lock"

# A folder of chosen or prepared images, and the CSV that says where each came from.
FOLDER_MANIFEST = "manifest.csv"

# A training run.
CHECKPOINTS = "checkpoints"
METRICS_CSV = "metrics.csv"
VALIDATION_CSV = "validation.csv"
BEST_JSON = "best.json"
RUN_JSON = "run.json"
DIFFUSERS_EMBEDDING = "learned_embeds.safetensors"

# The evaluation and its report.
RESULTS_CSV = "results.csv"
RESULTS_MANIFEST = "manifest.json"
IMAGES = "images"
REPORT = "report"
REPORT_HTML = "index.html"
REPORT_SUMMARY = "summary.json"


@dataclass(frozen=True)
class WorkspaceLayout:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def folder(self, name: str) -> Path:
        return self.root / name

    @property
    def sim_group(self) -> Path:
        return self.root / SIM_GROUP

    @property
    def incoming(self) -> Path:
        return self.root / INCOMING

    @property
    def database(self) -> Path:
        return self.root / MINE_DATABASE

    @property
    def archive(self) -> Path:
        return self.root / ARCHIVE_CSV

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE


@dataclass(frozen=True)
class SelectLayout:
    workspace: WorkspaceLayout
    out: Path  # one folder per training group is written here

    def __post_init__(self):
        if not isinstance(self.workspace, WorkspaceLayout):
            object.__setattr__(self, "workspace", WorkspaceLayout(self.workspace))
        object.__setattr__(self, "out", Path(self.out))


@dataclass(frozen=True)
class PrepareLayout:
    source: Path  # only read
    destination: Path

    def __post_init__(self):
        object.__setattr__(self, "source", Path(self.source))
        object.__setattr__(self, "destination", Path(self.destination))


@dataclass(frozen=True)
class TrainLayout:
    data: Path  # the training images
    out: Path

    def __post_init__(self):
        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "out", Path(self.out))

    @property
    def checkpoints(self) -> Path:
        return self.out / CHECKPOINTS

    @property
    def metrics(self) -> Path:
        return self.out / METRICS_CSV

    @property
    def validation(self) -> Path:
        return self.out / VALIDATION_CSV

    @property
    def best(self) -> Path:
        return self.out / BEST_JSON

    @property
    def run_record(self) -> Path:
        return self.out / RUN_JSON

    @property
    def embedding(self) -> Path:
        """The final embedding in diffusers' layout, which evaluation loads."""
        return self.out / DIFFUSERS_EMBEDDING


@dataclass(frozen=True)
class ResultsLayout:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def csv(self) -> Path:
        return self.root / RESULTS_CSV

    @property
    def manifest(self) -> Path:
        return self.root / RESULTS_MANIFEST

    @property
    def images(self) -> Path:
        return self.root / IMAGES

    @property
    def report(self) -> Path:
        return self.root / REPORT


@dataclass(frozen=True)
class StudyLayout:
    root: Path
    results_override: Path | None = None

    @property
    def workspace(self) -> WorkspaceLayout:
        return WorkspaceLayout(self.root / "mine")

    @property
    def groups(self) -> Path:
        return self.root / "groups"

    def group(self, name: str) -> Path:
        return self.groups / name

    def prepared(self, group: str) -> Path:
        return self.root / "prepared" / group

    def train(self, group: str) -> TrainLayout:
        return TrainLayout(self.prepared(group), self.root / "train" / group)

    @property
    def results(self) -> ResultsLayout:
        return ResultsLayout(self.results_override or self.root / "results")

    @property
    def markers(self) -> Path:
        return self.root / ".steps"


def cache_root() -> Path:
    """Where amari keeps what it can make again: $AMARI_CACHE_DIR, else $XDG_CACHE_HOME/amari, else
    ~/.cache/amari (the descriptor cache, downloaded models)."""
    base = os.environ.get("AMARI_CACHE_DIR")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "amari"
