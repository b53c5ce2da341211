"""The batch loop of `amari mine --identities K`: many identities grown from one stream of candidates.

The one-identity loop's parts (`amari.mine.loop`: curation, the engine, gathering candidates, one
transaction per batch, crash safety) with the decisions of `amari.mine.identities`. The workspace holds
identity-NN/sim-group/ and identity-NN/almost-sim/ for each identity and one shared unknown-person/
(the pool); the identities' states are one JSON value in the database, written in the batch's
transaction, so a killed run redoes an uncommitted batch from the same inputs and ends as if it had
never stopped.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from amari.faces import clusters
from amari.faces.embeddings import FaceEncoder
from amari.mine import identities
from amari.mine.config import MineConfig
from amari.mine.curation import reconcile
from amari.mine.engine import Engine
from amari.mine.identities import IdentitiesState, Outcome, Plan
from amari.mine.judging import Examined, place_files
from amari.mine.loop import STALL_LIMIT, MineResult, early_choice, examine, gather, report
from amari.mine.policy import Faces, MinerState, Verdict
from amari.mine.progress import MiningProgress
from amari.mine.records import Commit, Decision
from amari.mine.source import Source
from amari.mine.workspace import Workspace
from amari.storage.layout import UNKNOWN_PERSON, IdentityFolders, identity_name


def run_many(
    workspace: Workspace,
    encoder: FaceEncoder,
    engine: Engine,
    source: Source,
    config: MineConfig,
    progress: MiningProgress,
) -> MineResult:
    """Mine until K identities are finished, the source runs dry or max_batches is reached (the caller,
    `amari.mine.loop.run`, opened the workspace and started the engine)."""
    rules, founding = config.policy(), config.founding()
    stalled = 0
    while True:
        for message in reconcile(workspace, encoder):
            progress.note(message)
        state = workspace.identities()
        groups = {i.number: faces_in(workspace, IdentityFolders(i.number).group) for i in state.live()}
        sizes = {number: len(group) for number, group in groups.items()}
        if identities.finished(state, sizes, rules, founding):
            return result(workspace, "done")
        if config.max_batches is not None and state.batch >= config.max_batches:
            return result(workspace, "max-batches")
        plan = identities.begin(state, sizes, rules, founding)
        candidates, notes = [], []
        if plan.generates:
            progress.update(batch=plan.state.batch, batch_size=plan.n, event=f"waiting for {source.description}")
            if config.max_batches is not None and state.batch + 1 >= config.max_batches:
                engine.ahead = 0  # the last batch: nothing is made that no batch would judge
            # While identities are still to be founded, a face far from every identity may found one.
            judging = [] if plan.founding else [(groups[k].vectors, p.hi) for k, p in plan.judging(sizes).items()]
            candidates = gather(workspace, engine, source, plan.n, early_choice(config, judging), notes)
            if not candidates:
                return result(workspace, "source exhausted")
            progress.update(event=f"judging {len(candidates)} images")
        examined = [examine(candidate) for candidate in candidates]
        counts = workspace.counts()
        outcome = identities.finish(
            plan,
            rules,
            founding,
            groups,
            [(e.content_hash, e.descriptor) for e in examined],
            unknown=faces_in(workspace, UNKNOWN_PERSON, removed=False) if plan.founding else Faces(),
            almost=_AlmostFaces(workspace),
            almost_sizes={k: counts[IdentityFolders(k).almost] for k in groups},
        )
        change = build_commit(workspace, plan, outcome, examined)
        workspace.commit(change)
        notes += [
            f"{e.candidate.name}: unreadable ({e.error}), moved to {UNKNOWN_PERSON}/" for e in examined if e.error
        ]
        for message in notes:
            progress.note(message)
        if progress.enabled:
            for founded in outcome.founded:
                progress.note(f"founded {identity_name(founded.number)} from {len(founded.members)} faces")
            for retired in outcome.retired:
                progress.note(f"retired {identity_name(retired.number)}: {retired.reason}")
        stalled = 0 if candidates or outcome.joined or change.relocations else stalled + 1
        row = change.batch_row
        sizes_now = (row["group_size"], row["almost_size"], row["unknown_size"])
        report(engine, progress, plan.state.batch, candidates, outcome, sizes_now, row["avg"], row["hi"])
        if stalled >= STALL_LIMIT:
            return result(workspace, "stalled")


def faces_in(workspace: Workspace, folder: str, removed: bool = True) -> Faces:
    """The faces of a folder, keyed by content hash, oldest first; without `removed`, none the user took
    out of a group (they never return to one by themselves)."""
    rows = [r for r in workspace.images(folder) if r.descriptor is not None and (removed or not r.user_removed)]
    return Faces(tuple(r.content_hash for r in rows), np.array([r.descriptor for r in rows]))


class _AlmostFaces:
    """Each identity's almost-sim faces that may return to its group, read when the policy asks (a reset)."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace

    def get(self, number: int, default: Faces) -> Faces:
        return faces_in(self.workspace, IdentityFolders(number).almost, removed=False)


def result(workspace: Workspace, stopped: str) -> MineResult:
    state, counts = workspace.identities(), workspace.counts()
    lines, group, almost = [], 0, 0
    for identity in state.live():
        folders = IdentityFolders(identity.number)
        size = counts[folders.group]
        group, almost = group + size, almost + counts[folders.almost]
        members = faces_in(workspace, folders.group)
        average = float(clusters.spread(members.vectors).mean()) if len(members) else float("nan")
        done = " (done)" if identity.state.done and size else ""
        lines.append(
            f"{identity.name}: {size} images, average {average:.4f}, upper bound {identity.state.hi:.4f}, "
            f"almost-sim {counts[folders.almost]}{done}"
        )
    avg, hi = _weighted(state, counts)
    return MineResult(stopped, state.batch, group, almost, counts[UNKNOWN_PERSON], avg, hi, tuple(lines))


def _weighted(state: IdentitiesState, counts) -> tuple[float, float]:
    """The average and upper bound of the identities together, each weighted by its group's size."""
    live = [(counts.get(IdentityFolders(i.number).group, 0), i.state) for i in state.live()]
    total = sum(size for size, _ in live)
    if total == 0:
        return MinerState().avg, MinerState().hi
    return (
        sum(size * s.avg for size, s in live) / total,
        sum(size * s.hi for size, s in live) / total,
    )


# Translating the decisions ---------------------------------------------------------------------------


def build_commit(workspace: Workspace, plan: Plan, outcome: Outcome, examined: list[Examined]) -> Commit:
    """The batch's decisions as rows and file moves, and the identities' new state."""
    change = Commit(batch=plan.state.batch, meta={"identities": outcome.state.to_json()})
    folder, bound = _destinations(workspace, outcome, examined, change)
    counts = place_files(workspace, change, folder, bound, examined)
    live = [IdentityFolders(i.number) for i in outcome.state.live()]
    avg, hi = _weighted(outcome.state, counts)
    planned = [p for k, p in plan.planned.items() if k in {f.number for f in live}]
    change.batch_row = dict(
        number=plan.state.batch,
        requested=plan.n,
        received=len(examined),
        joined=len(outcome.joined),
        group_size=sum(counts[f.group] for f in live),
        almost_size=sum(counts[f.almost] for f in live),
        unknown_size=counts[UNKNOWN_PERSON],
        avg=avg,
        hi=hi,
        until_gsa=min((outcome.outcomes[k].state.until_gsa for k in outcome.outcomes), default=MinerState().until_gsa),
        n=max((p.n for p in planned), default=plan.n),
        event=outcome.event,
        state=outcome.state.to_json(),
    )
    return change


def _destinations(
    workspace: Workspace, outcome: Outcome, examined: list[Examined], change: Commit
) -> tuple[dict[Hashable, str], dict[Hashable, float]]:
    """Where each image the batch touched ends up, and the bound an almost-sim name records. Later steps
    override earlier ones: judged, founded, each identity's analysis or reset, retired."""
    new = {e.content_hash for e in examined}
    folder: dict[Hashable, str] = {}
    bound: dict[Hashable, float] = {}

    def move(key: Hashable, target: str, reason: str, score: float | None = None, limit: float | None = None):
        folder[key] = target
        if limit is not None:
            bound[key] = limit
        change.decisions.append(Decision(key, target, reason, score, limit))

    for placed, item in zip(outcome.placed, examined):
        verdict, number = placed.judgement.verdict, placed.identity
        folders = IdentityFolders(number)
        target = {Verdict.SIM: folders.group, Verdict.ALMOST: folders.almost}.get(verdict, UNKNOWN_PERSON)
        limit = outcome.outcomes[number].bound if number in outcome.outcomes else None
        reason = f"unreadable: {item.error}" if item.error else placed.judgement.reason
        if number is not None and verdict is not Verdict.UNKNOWN:
            reason = f"{reason} by {identity_name(number)}"
        move(placed.key, target, reason, placed.judgement.score, limit)
    for founded in outcome.founded:
        for key in founded.members:
            move(key, IdentityFolders(founded.number).group, f"founded {identity_name(founded.number)}")
    for number, batch in sorted(outcome.outcomes.items()):
        folders = IdentityFolders(number)
        if batch.analysis is not None:
            analysis = batch.analysis
            reason = f"reset round {analysis.reset_round}" if analysis.reset_round else "analysis"
            scores = dict(zip(analysis.keys, analysis.scores))
            for key in analysis.leaving:
                move(key, folders.almost, reason, float(scores[key]), analysis.hi)
        if batch.reset:  # every almost-sim image of the identity, this batch's near misses included
            almost = [r.content_hash for r in workspace.images(folders.almost) if _may_return(r)]
            almost += [key for key, target in folder.items() if key in new and target == folders.almost]
            for key in almost:
                move(key, folders.group, "reset: re-tested", None, batch.state.hi)
    for retired in outcome.retired:
        folders = IdentityFolders(retired.number)
        held = [r.content_hash for r in workspace.images(folders.group, folders.almost)]
        held += [key for key, target in folder.items() if target in (folders.group, folders.almost)]
        for key in dict.fromkeys(held):
            move(key, UNKNOWN_PERSON, f"{identity_name(retired.number)} retired: {retired.reason}")
    return folder, bound


def _may_return(row) -> bool:
    return not row.user_removed and row.descriptor is not None
