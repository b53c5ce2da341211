"""Where every stage reads and writes: the folder and file names, defined once.

STUDY/                      StudyLayout
  mine/                     WorkspaceLayout: the miner's workspace
    sim-group/ almost-sim/ unknown-person/ incoming/
    mine.sqlite  archive.csv  progress.json  .lock
    trash/FOLDER/             what `amari serve` deleted from FOLDER, until the user empties it
    identity-01/sim-group/ identity-01/almost-sim/ ...   instead of sim-group/ and almost-sim/, when the
                            workspace mines several identities (IdentityFolders); unknown-person/ is shared
    audit/                  the leakage audit of its identities (AuditLayout)
  audit/                    the study's audit, when a gallery is configured (AuditLayout)
  groups/NAME/              training groups picked from the sim-group (manifest.csv)
  prepared/NAME/            their training images (manifest.csv)
  train/NAME/               TrainLayout: checkpoints/, metrics.csv, validation.csv, best.json, run.json
  train/METHOD/NAME/        the same, for a group trained with LoRA or pivotal tuning (TI keeps train/NAME/)
  refine/                   RefineLayout: refine.json, rounds.csv, rounds.png, round-NN/{data,train}/
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
MINE_PROGRESS = "progress.json"  # the running miner's live numbers, replaced whole after each step
TRASH = "trash"  # `amari serve`'s deletions, one sub-folder per folder they came from

# Many identities in one workspace: identity-01/, identity-02/, ... each with its sim-group/ and almost-sim/.
IDENTITY_PREFIX = "identity-"

# The leakage audit (`amari audit`).
AUDIT = "audit"
AUDIT_CSV = "audit.csv"
AUDIT_IDENTITIES_CSV = "identities.csv"
AUDIT_HTML = "index.html"
AUDIT_SUMMARY = "summary.json"

# The fingerprint registry of a workspace, a study or the cache folder (amari.provenance.fingerprint).
PROVENANCE_REGISTRY = "provenance.sqlite"

# A folder of chosen or prepared images, and the CSV that says where each came from.
FOLDER_MANIFEST = "manifest.csv"

# A training run.
CHECKPOINTS = "checkpoints"
METRICS_CSV = "metrics.csv"
VALIDATION_CSV = "validation.csv"
BEST_JSON = "best.json"
RUN_JSON = "run.json"
DIFFUSERS_EMBEDDING = "learned_embeds.safetensors"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' LoRA file name (`load_lora_weights(folder)`)
LORA_RECORD = "lora.json"  # a LoRA's trigger, token and files


def a1111_embedding_file(name: str) -> str:
    """The embedding file A1111, ComfyUI and InvokeAI load, which they name after the file: NAME.safetensors."""
    return f"{name}.safetensors"


def kohya_lora_file(name: str) -> str:
    """The LoRA in kohya's layout (A1111, ComfyUI, InvokeAI), beside the embedding NAME.safetensors."""
    return f"{name}-lora.safetensors"


# Training methods (`amari.train.config.METHODS`); a TI run keeps the folders it always had.
DEFAULT_METHOD = "ti"

# The refinement loop: one folder per round (its training images and its run), a state file, the table.
REFINE = "refine"
REFINE_STATE = "refine.json"
ROUNDS_CSV = "rounds.csv"
ROUNDS_CHART = "rounds.png"
TRAINING_IMAGES = "data"
TRAINING_RUN = "train"

# The evaluation and its report.
RESULTS_CSV = "results.csv"
RESULTS_MANIFEST = "manifest.json"
IMAGES = "images"
REPORT = "report"
REPORT_HTML = "index.html"
REPORT_SUMMARY = "summary.json"

# The cache folder's thumbnails of the images `amari serve` shows.
THUMBNAILS = "thumbnails"


class Inside:
    """A layout's file or folder: `<its folder attribute> / name`, read like an attribute."""

    def __init__(self, name: str, folder: str = "root"):
        self.name, self.folder = name, folder

    def __get__(self, layout, owner=None) -> Path:
        if layout is None:
            return self
        return getattr(layout, self.folder) / self.name


def _paths(layout, *names: str) -> None:
    for name in names:
        value = getattr(layout, name)
        if not isinstance(value, Path):
            object.__setattr__(layout, name, Path(value))


@dataclass(frozen=True)
class FolderLayout:
    """A layout of files and folders inside one root folder."""

    root: Path

    def __post_init__(self):
        _paths(self, "root")


def identity_name(number: int) -> str:
    """The folder of identity `number` in a workspace of several: identity-01, identity-02, ..."""
    return f"{IDENTITY_PREFIX}{number:02d}"


def identity_number(name: str) -> int | None:
    """The number an identity folder's name stands for (identity-03: 3); None for any other name."""
    digits = name[len(IDENTITY_PREFIX) :] if name.startswith(IDENTITY_PREFIX) else ""
    return int(digits) if digits.isdigit() and int(digits) > 0 else None


@dataclass(frozen=True)
class IdentityFolders:
    """One identity's folders, relative to the workspace (the form the miner's database stores):
    sim-group and almost-sim for the one identity of a workspace, identity-NN/sim-group and
    identity-NN/almost-sim for identity NN of a workspace of several."""

    number: int | None = None

    @property
    def name(self) -> str:
        return SIM_GROUP if self.number is None else identity_name(self.number)

    @property
    def group(self) -> str:
        return SIM_GROUP if self.number is None else f"{identity_name(self.number)}/{SIM_GROUP}"

    @property
    def almost(self) -> str:
        return ALMOST_SIM if self.number is None else f"{identity_name(self.number)}/{ALMOST_SIM}"

    @classmethod
    def of(cls, folder: str) -> IdentityFolders | None:
        """The identity a workspace folder (relative, as the database stores it) belongs to; None for
        unknown-person and anything else."""
        if folder in (SIM_GROUP, ALMOST_SIM):
            return cls()
        top, _, inner = folder.partition("/")
        number = identity_number(top)
        return cls(number) if number is not None and inner in (SIM_GROUP, ALMOST_SIM) else None


def is_group_folder(folder: str) -> bool:
    """Whether a workspace folder (relative) is an identity's sim-group."""
    identity = IdentityFolders.of(folder)
    return identity is not None and folder == identity.group


def is_almost_folder(folder: str) -> bool:
    identity = IdentityFolders.of(folder)
    return identity is not None and folder == identity.almost


@dataclass(frozen=True)
class WorkspaceLayout(FolderLayout):
    """A miner's workspace; `identity` picks one identity of a workspace of several (its `sim_group`)."""

    identity: int | None = None

    incoming = Inside(INCOMING)
    database = Inside(MINE_DATABASE)
    archive = Inside(ARCHIVE_CSV)
    lock = Inside(LOCK_FILE)
    progress = Inside(MINE_PROGRESS)
    trash = Inside(TRASH)

    @property
    def sim_group(self) -> Path:
        return self.root / IdentityFolders(self.identity).group

    def folder(self, name: str) -> Path:
        return self.root / name

    def judged_folders(self) -> tuple[str, ...]:
        """The folders judged images live in, relative to the root, as a person curates them (a browser
        lists them in this order); with `identity`, that identity's two and the shared unknown-person."""
        if self.identity is None:
            return JUDGED_FOLDERS
        folders = IdentityFolders(self.identity)
        return folders.group, folders.almost, UNKNOWN_PERSON

    def identities(self) -> list[int]:
        """The numbers of the identity folders the workspace holds (empty for a single identity)."""
        if not self.root.is_dir():
            return []
        found = (identity_number(p.name) for p in self.root.iterdir() if p.is_dir())
        return sorted(number for number in found if number is not None)

    def identity_folders(self, number: int | None = None) -> tuple[Path, Path]:
        """(sim-group, almost-sim) of one identity (None: the single identity's)."""
        folders = IdentityFolders(number)
        return self.root / folders.group, self.root / folders.almost

    @property
    def audit(self) -> AuditLayout:
        return AuditLayout(self.root / AUDIT)


@dataclass(frozen=True)
class AuditLayout(FolderLayout):
    """What `amari audit` writes: every match in the warning band, identities too close, a page, a summary."""

    csv = Inside(AUDIT_CSV)
    identities_csv = Inside(AUDIT_IDENTITIES_CSV)
    html = Inside(AUDIT_HTML)
    summary = Inside(AUDIT_SUMMARY)


@dataclass(frozen=True)
class SelectLayout:
    workspace: WorkspaceLayout
    out: Path  # one folder per training group is written here

    def __post_init__(self):
        if not isinstance(self.workspace, WorkspaceLayout):
            object.__setattr__(self, "workspace", WorkspaceLayout(self.workspace))
        _paths(self, "out")


@dataclass(frozen=True)
class PrepareLayout:
    source: Path  # only read
    destination: Path

    def __post_init__(self):
        _paths(self, "source", "destination")


@dataclass(frozen=True)
class TrainLayout:
    data: Path  # the training images
    out: Path

    checkpoints = Inside(CHECKPOINTS, "out")
    metrics = Inside(METRICS_CSV, "out")
    validation = Inside(VALIDATION_CSV, "out")
    best = Inside(BEST_JSON, "out")
    run_record = Inside(RUN_JSON, "out")
    embedding = Inside(DIFFUSERS_EMBEDDING, "out")  # the final embedding in diffusers' layout, which evaluation loads
    lora = Inside(LORA_WEIGHTS, "out")  # the final LoRA in diffusers' layout (lora, pivotal)
    lora_record = Inside(LORA_RECORD, "out")

    def __post_init__(self):
        _paths(self, "data", "out")


@dataclass(frozen=True)
class RefineLayout(FolderLayout):
    """ROOT/refine.json (where the loop is), rounds.csv (a row per round), rounds.png, round-NN/{data,train}/;
    the workspace the rounds mine into."""

    workspace: WorkspaceLayout = None

    state = Inside(REFINE_STATE)
    rounds_csv = Inside(ROUNDS_CSV)
    chart = Inside(ROUNDS_CHART)

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.workspace, WorkspaceLayout):
            raise TypeError("a RefineLayout needs the workspace its rounds mine into")

    def round(self, number: int) -> Path:
        return self.root / f"round-{number:02d}"

    def train(self, number: int) -> TrainLayout:
        return TrainLayout(self.round(number) / TRAINING_IMAGES, self.round(number) / TRAINING_RUN)


@dataclass(frozen=True)
class ResultsLayout(FolderLayout):
    csv = Inside(RESULTS_CSV)
    manifest = Inside(RESULTS_MANIFEST)
    images = Inside(IMAGES)
    report = Inside(REPORT)


@dataclass(frozen=True)
class StudyLayout:
    root: Path
    results_override: Path | None = None
    identity: int | None = None  # the identity the study trains and evaluates, when it mines several

    groups = Inside("groups")
    markers = Inside(".steps")

    @property
    def workspace(self) -> WorkspaceLayout:
        return WorkspaceLayout(self.root / "mine", self.identity)

    @property
    def audit(self) -> AuditLayout:
        return AuditLayout(self.root / AUDIT)

    def group(self, name: str) -> Path:
        return self.groups / name

    @property
    def refine(self) -> RefineLayout:
        return RefineLayout(self.root / REFINE, self.workspace)

    def prepared(self, group: str) -> Path:
        return self.root / "prepared" / group

    def train(self, group: str, method: str = DEFAULT_METHOD) -> TrainLayout:
        out = self.root / "train" / group if method == DEFAULT_METHOD else self.root / "train" / method / group
        return TrainLayout(self.prepared(group), out)

    @property
    def results(self) -> ResultsLayout:
        return ResultsLayout(self.results_override or self.root / "results")


@dataclass(frozen=True)
class ServeLayout:
    """What `amari serve` shows: a workspace, and a study's results beside it (optional)."""

    workspace: WorkspaceLayout
    study: StudyLayout | None = None

    def __post_init__(self):
        if not isinstance(self.workspace, WorkspaceLayout):
            object.__setattr__(self, "workspace", WorkspaceLayout(self.workspace))
        if self.study is not None and not isinstance(self.study, StudyLayout):
            object.__setattr__(self, "study", StudyLayout(Path(self.study)))

    @property
    def thumbnails(self) -> Path:
        """Made once per image and side, kept in the cache folder, never beside the images."""
        return cache_root() / THUMBNAILS


def cache_root() -> Path:
    """Where amari keeps what it can make again: $AMARI_CACHE_DIR, else $XDG_CACHE_HOME/amari, else
    ~/.cache/amari (the descriptor cache, downloaded models)."""
    base = os.environ.get("AMARI_CACHE_DIR")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "amari"
