"""The batch loop of `amari mine`: source → judge → move files, resumable after any crash.

Each batch: (1) reconcile the folders with the database (the user may have curated them), (2) ask the
policy whether this batch generates, (3) take the images waiting in incoming/ plus new ones from the
source, (4) find their faces (cached by content), (5) let the policy judge, bootstrap, analyse or
relax, (6) commit every change in one transaction and move the files. A killed run redoes an
uncommitted batch from the same inputs, so its result is the same as if it had never stopped.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amari import faces as face_lib
from amari.embeddings import EmbeddingCache, FaceEncoder
from amari.errors import ImageError, UsageError
from amari.layout import ALMOST_SIM, INCOMING, SIM_GROUP, UNKNOWN_PERSON, WorkspaceLayout
from amari.mine import policy
from amari.mine.config import MineConfig
from amari.mine.curation import reconcile, seed_references
from amari.mine.policy import BatchOutcome, Faces, MinerState
from amari.mine.progress import MiningProgress
from amari.mine.records import Commit, Decision, NewImage, Relocation
from amari.mine.source import BatchContext, Source
from amari.mine.workspace import Workspace, file_identity, settings_meta

STALL_LIMIT = 50  # batches in a row that neither generate nor change a folder: the policy is stuck


@dataclass(frozen=True)
class MineResult:
    stopped: str  # done | max-batches | source exhausted | stalled
    batches: int
    group_size: int
    almost_size: int
    unknown_size: int
    avg: float
    hi: float

    def summary(self) -> str:
        return (
            f"{self.stopped} after batch {self.batches}: sim-group {self.group_size} "
            f"(average {self.avg:.4f}, upper bound {self.hi:.4f}), almost-sim {self.almost_size}, "
            f"unknown-person {self.unknown_size}"
        )


def run(
    config: MineConfig, layout: WorkspaceLayout, source: Source, progress: MiningProgress | None = None
) -> MineResult:
    """Mine into the workspace until the policy is done, the source runs dry or max_batches is reached.

    The caller builds the source (`amari.mine.FolderSource`, `amari.generate.DiffusersSource`) and this
    function closes it.
    """
    progress = progress or MiningProgress(enabled=False)
    try:
        for path in config.reference:  # before the workspace exists, so a typo leaves nothing behind
            if not Path(path).is_file():
                raise UsageError(f"reference image {path} does not exist")
        # Descriptors of other face settings are not comparable with the ones already in the workspace.
        with Workspace.open(layout.root, settings_meta(face_settings=config.faces.key)) as workspace:
            encoder = FaceEncoder(config.faces, EmbeddingCache(connection=workspace.conn))
            source.open(workspace.database_path)
            seed_references(workspace, encoder, config.reference)
            progress.update(source=source.description)
            return _loop(workspace, encoder, source, config, progress)
    finally:
        source.close()


def _loop(
    workspace: Workspace, encoder: FaceEncoder, source: Source, config: MineConfig, progress: MiningProgress
) -> MineResult:
    stalled = 0
    while True:
        for message in reconcile(workspace, encoder):
            progress.note(message)
        state = workspace.state()
        group = members(workspace)
        stop = _stop_reason(state, len(group), config)
        if stop:
            return _result(workspace, stop)
        planned = policy.begin_batch(state, len(group), config.policy())
        candidates: list[Candidate] = []
        notes: list[str] = []
        if policy.generates(planned):
            progress.update(batch=planned.batch, batch_size=planned.n, event=f"waiting for {source.description}")
            candidates = gather(workspace, source, planned, group, encoder, config.almost_band, notes)
            if not candidates:
                return _result(workspace, "source exhausted")
            progress.update(event=f"judging {len(candidates)} images")
        change, outcome, judged_notes = run_batch(workspace, encoder, planned, group, candidates, config)
        workspace.commit(change)
        for message in notes + judged_notes:
            progress.note(message)
        stalled = 0 if candidates or outcome.joined or change.relocations else stalled + 1
        counts = workspace.counts()
        progress.batch_done(
            batch=planned.batch,
            batch_size=len(candidates),
            group_size=counts[SIM_GROUP],
            almost_size=counts[ALMOST_SIM],
            unknown_size=counts[UNKNOWN_PERSON],
            avg=outcome.state.avg,
            hi=outcome.state.hi,
            judged=progress.snapshot.judged + len(outcome.judgements),
            joined=progress.snapshot.joined + len(outcome.joined),
            event=outcome.event,
        )
        if stalled >= STALL_LIMIT:
            return _result(workspace, "stalled")


def _stop_reason(state: MinerState, group_size: int, config: MineConfig) -> str | None:
    if policy.finished(state, group_size, config.policy()):
        return "done"
    if config.max_batches is not None and state.batch >= config.max_batches:
        return "max-batches"
    return None


def _result(workspace: Workspace, stopped: str) -> MineResult:
    state, counts = workspace.state(), workspace.counts()
    return MineResult(
        stopped, state.batch, counts[SIM_GROUP], counts[ALMOST_SIM], counts[UNKNOWN_PERSON], state.avg, state.hi
    )


# 1. What the policy sees -------------------------------------------------------------------------


def members(workspace: Workspace) -> Faces:
    """The sim-group's faces, keyed by content hash, oldest member first."""
    rows = [r for r in workspace.images(SIM_GROUP) if r.descriptor is not None]
    return Faces(tuple(r.content_hash for r in rows), np.array([r.descriptor for r in rows]))


def bootstrap_pool(workspace: Workspace) -> Faces:
    """Faces that may start an empty group: outside it, and never one the user took out of it."""
    rows = [r for r in workspace.images(ALMOST_SIM, UNKNOWN_PERSON) if r.descriptor is not None and not r.user_removed]
    return Faces(tuple(r.content_hash for r in rows), np.array([r.descriptor for r in rows]))


# 2. Candidates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    path: Path
    content_hash: str
    size: int
    mtime_ns: int


def gather(
    workspace: Workspace,
    source: Source,
    planned: MinerState,
    group: Faces,
    encoder: FaceEncoder,
    almost_band: float,
    notes: list[str],
) -> list[Candidate]:
    """Up to n images with content new to the workspace: those a killed run left in incoming/, then the source's.

    A file the source wrote whose content the workspace already holds is deleted at once and does not
    count, so a batch is the same whether or not an earlier run died after the source wrote a file but
    before it noted so. A file the user put there with such content is left alone.
    """
    context = BatchContext(
        group=group.vectors,
        upper_bound=planned.hi,
        almost_band=almost_band,
        encoder=encoder,
        batch_number=planned.batch,
        known=lambda digest: workspace.image_by_hash(digest) is not None,
    )
    chosen: dict[str, Candidate] = {}
    looked: set[Path] = set()
    asked = False
    while True:
        dropped = 0
        for path in workspace.incoming_files():
            if path in looked:
                continue
            looked.add(path)
            try:
                candidate = Candidate(path, *file_identity(path))
            except ImageError:
                continue  # vanished meanwhile
            if candidate.content_hash in chosen or workspace.image_by_hash(candidate.content_hash):
                if source.made(path.name, candidate.content_hash):
                    notes.append(f"{path.name}: same content as an image the workspace already has; dropped")
                    path.unlink(missing_ok=True)
                    dropped += 1
                elif path not in workspace.ignored_incoming:  # the user's own file: never deleted
                    workspace.ignored_incoming.add(path)
                    notes.append(f"{INCOMING}/{path.name} holds an image the workspace already has; left there")
            else:
                chosen[candidate.content_hash] = candidate
        wanted = planned.n - len(chosen)
        # Ask again only to refill places that dropped files took; a source with fewer images than
        # wanted (a watched folder between files) gives a smaller batch instead of a wait.
        if wanted <= 0 or source.exhausted or (asked and not dropped):
            return sorted(chosen.values(), key=lambda c: c.path.name)
        asked = True
        written = source.next_batch(wanted, workspace.incoming, context)
        notes.extend(source.notes)
        source.notes.clear()
        if not written:
            return sorted(chosen.values(), key=lambda c: c.path.name)


@dataclass
class _Examined:
    candidate: Candidate
    descriptor: np.ndarray | None
    n_faces: int | None
    error: str | None

    @property
    def content_hash(self) -> str:
        return self.candidate.content_hash


def examine(encoder: FaceEncoder, candidates: list[Candidate], cpus: int) -> list[_Examined]:
    """The largest face of each candidate (or why there is none)."""
    found = encoder.faces_many([c.path for c in candidates], cpus=cpus)
    examined = []
    for candidate in candidates:
        result = found[candidate.path]
        if isinstance(result, ImageError):
            examined.append(_Examined(candidate, None, None, result.reason))
        else:
            face = face_lib.largest(result)
            examined.append(_Examined(candidate, face.descriptor if face else None, len(result), None))
    return examined


# 3. One batch -----------------------------------------------------------------------------------


def run_batch(
    workspace: Workspace,
    encoder: FaceEncoder,
    planned: MinerState,
    group: Faces,
    candidates: list[Candidate],
    config: MineConfig,
) -> tuple[Commit, BatchOutcome, list[str]]:
    """Judge one batch; returns the change to commit, the policy's outcome and lines to report."""
    examined = examine(encoder, candidates, config.cpus)
    almost_before = workspace.counts()[ALMOST_SIM]
    outcome = policy.finish_batch(
        planned,
        config.policy(),
        group,
        [(e.content_hash, e.descriptor) for e in examined],
        pool=bootstrap_pool(workspace) if len(group) == 0 else Faces(),
        almost_size=almost_before,
    )
    notes = [
        f"{e.candidate.path.name}: unreadable ({e.error}), moved to {UNKNOWN_PERSON}/" for e in examined if e.error
    ]
    return build_commit(workspace, planned, outcome, examined), outcome, notes


def build_commit(workspace: Workspace, planned: MinerState, outcome: BatchOutcome, examined: list[_Examined]) -> Commit:
    """Translate the policy's verdicts into rows and file moves."""
    change = Commit(batch=planned.batch, state=outcome.state)
    new = {e.content_hash: e for e in examined}
    folder, bound = _destinations(workspace, outcome, examined, change)

    counts = workspace.counts()
    for key, target in folder.items():
        if key in new:
            item, file = new[key], new[key].candidate
            change.new_images.append(
                NewImage(
                    file.path,
                    target,
                    file.content_hash,
                    file.size,
                    file.mtime_ns,
                    item.n_faces,
                    item.descriptor,
                    item.error,
                    "source",
                    bound=bound.get(key),
                )
            )
            counts[target] += 1
        else:
            row = workspace.image_by_hash(key)
            if row.folder != target:
                change.relocations.append(Relocation(row.id, target, bound.get(key)))
                counts[row.folder] -= 1
                counts[target] += 1

    state = outcome.state
    change.batch_row = dict(
        number=planned.batch,
        requested=planned.n if policy.generates(planned) else 0,
        received=len(examined),
        joined=len(outcome.joined),
        group_size=counts[SIM_GROUP],
        almost_size=counts[ALMOST_SIM],
        unknown_size=counts[UNKNOWN_PERSON],
        avg=state.avg,
        hi=state.hi,
        until_gsa=state.until_gsa,
        n=state.n,
        event=outcome.event,
        state=state.to_json(),
    )
    return change


def _destinations(
    workspace: Workspace, outcome: BatchOutcome, examined: list[_Examined], change: Commit
) -> tuple[dict[Hashable, str], dict[Hashable, float]]:
    """Where each image this batch touched ends up, and the bound an almost-sim name records.

    Later steps override earlier ones, in the policy's order: judged, bootstrap, analysis, reset.
    The decisions that explain each step are appended to `change`.
    """
    new = {e.content_hash for e in examined}
    folder: dict[Hashable, str] = {}
    bound: dict[Hashable, float] = {}
    for judgement, item in zip(outcome.judgements, examined):
        folder[item.content_hash] = judgement.verdict.value
        bound[item.content_hash] = outcome.bound
        reason = f"unreadable: {item.error}" if item.error else judgement.reason
        change.decisions.append(
            Decision(item.content_hash, judgement.verdict.value, reason, judgement.score, outcome.bound)
        )
    for key in outcome.seeds:
        folder[key] = SIM_GROUP
        change.decisions.append(Decision(key, SIM_GROUP, "bootstrap: tightest pair", None, outcome.bound))
    if outcome.analysis is not None:
        analysis = outcome.analysis
        reason = f"reset round {analysis.reset_round}" if analysis.reset_round else "analysis"
        scores = dict(zip(analysis.keys, analysis.scores))
        for key in analysis.leaving:
            folder[key], bound[key] = ALMOST_SIM, analysis.hi
            change.decisions.append(Decision(key, ALMOST_SIM, reason, float(scores[key]), analysis.hi))
    if outcome.reset:  # every almost-sim image, this batch's near misses included, is re-tested
        almost = [
            r.content_hash for r in workspace.images(ALMOST_SIM) if not r.user_removed and r.descriptor is not None
        ]
        almost += [key for key, target in folder.items() if key in new and target == ALMOST_SIM]
        for key in almost:
            folder[key] = SIM_GROUP
            change.decisions.append(Decision(key, SIM_GROUP, "reset: re-tested", None, outcome.state.hi))
    return folder, bound
