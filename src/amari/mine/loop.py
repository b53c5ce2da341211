"""The batch loop of `amari mine`: candidates → judge → move files, resumable after any crash.

Each batch: (1) reconcile the folders with the database (the user may have curated them), (2) ask the
policy whether this batch takes candidates and how many, (3) take them from the engine in order (what
a killed run left in incoming/ first), each with its faces already found, choosing between a
candidate's raw and enhanced image by the early-rejection rule, (4) let the policy judge, bootstrap,
analyse or relax, (5) commit every change in one transaction and move the files. A killed run redoes
an uncommitted batch from the same inputs, so its result is the same as if it had never stopped.

The loop is the single writer; the engine (`amari.mine.engine`) makes candidates ready ahead of it
(streaming) or just in time (serial), and both give the same candidates in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amari.errors import UsageError
from amari.faces import descriptors as face_lib
from amari.faces.embeddings import EmbeddingCache, FaceEncoder
from amari.mine import policy
from amari.mine.config import DIFFUSERS, MineConfig
from amari.mine.curation import reconcile, seed_references
from amari.mine.engine import FINAL, RAW, Candidate, Engine, FeedContext
from amari.mine.guidance import Guidance
from amari.mine.judging import Examined, build_commit
from amari.mine.policy import BatchOutcome, Faces, MinerState
from amari.mine.progress import MiningProgress
from amari.mine.records import Commit
from amari.mine.source import Source
from amari.mine.start import starter, waiting_note
from amari.mine.workspace import MANY_IDENTITIES, Workspace, settings_meta
from amari.models.licences import licence_note
from amari.storage.layout import ALMOST_SIM, INCOMING, SIM_GROUP, UNKNOWN_PERSON, WorkspaceLayout

STALL_LIMIT = 50  # batches in a row that neither take candidates nor change a folder: the policy is stuck


@dataclass(frozen=True)
class MineResult:
    stopped: str  # done | max-batches | source exhausted | stalled
    batches: int
    group_size: int  # with several identities: their members together
    almost_size: int
    unknown_size: int
    avg: float
    hi: float
    identities: tuple[str, ...] = ()  # one line per live identity, when the workspace mines several

    def summary(self) -> str:
        if self.identities:
            return (
                f"{self.stopped} after batch {self.batches}: {len(self.identities)} identities, "
                f"{self.group_size} images in their groups, almost-sim {self.almost_size}, "
                f"unknown-person {self.unknown_size}\n" + "\n".join(f"  {line}" for line in self.identities)
            )
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
    engine = None
    try:
        for path in config.reference:  # before the workspace exists, so a typo leaves nothing behind
            if not Path(path).is_file():
                raise UsageError(f"reference image {path} does not exist")
        if config.source == DIFFUSERS and (note := licence_note(config.model, config.biometric_licence)):
            progress.note(note)
        # Descriptors of other face settings are not comparable with the ones already in the workspace.
        settings = settings_meta(face_settings=config.faces.key, **{MANY_IDENTITIES: config.identities > 1})
        with (
            Workspace.open(layout.root, settings) as workspace,
            ExitStack() as stack,
        ):
            cache = EmbeddingCache(connection=workspace.conn)
            encoder = FaceEncoder(config.faces, cache)
            source.open(workspace.database_path)
            seed_references(workspace, encoder, config.reference)
            context = FeedContext(
                workspace.incoming,
                config.faces,
                cache,
                known=lambda digest: workspace.image_by_hash(digest) is not None,
            )
            stack.callback(context.close)  # the fingerprint registries, last: after the engine's last step
            executors = _cluster_executors(config, stack, progress) if config.ray is not None else None
            engine = Engine(streaming=config.engine == "streaming", cpus=config.worker_processes, executors=executors)
            stack.callback(engine.close)  # before the cluster goes
            engine.start(source, context)
            if engine.streaming:
                # Generator batches ahead of the policy, once the source knows its batch (on a GPU, what the
                # free memory holds): per model step under way, one being made while workers finish another.
                engine.ahead = 2 * engine.model_capacity * getattr(source, "batch_size", 8)
            many = config.identities > 1
            if many:
                from amari.mine.many import result as many_result
                from amari.mine.many import run_many
            start = many_result(workspace, "starting") if many else _result(workspace, "starting")
            progress.update(
                source=source.description,
                target=config.target,
                running=True,
                batch=start.batches,
                group_size=start.group_size,
                almost_size=start.almost_size,
                unknown_size=start.unknown_size,
                avg=start.avg,
                hi=start.hi,
            )
            progress.publish_to(layout.progress)
            try:
                if many:
                    result = run_many(workspace, encoder, engine, source, config, progress)
                else:
                    guidance = Guidance(config, encoder) if config.ip_adapter else None
                    result = _loop(workspace, encoder, engine, source, config, progress, guidance)
                progress.update(event=result.stopped)
                return result
            finally:  # while the lock is held; a killed run leaves `running` for a reader to check the pid of
                progress.update(running=False)
    finally:
        if engine is None:
            source.close()


def _cluster_executors(config: MineConfig, stack: ExitStack, progress: MiningProgress) -> tuple:
    """CPU tasks and model actors on Ray (`--ray`); the cluster is left (or stopped) when the run ends."""
    from amari.execution.cluster import Cluster, ModelPool, TaskPool

    cluster = stack.enter_context(Cluster(config.ray, cpus=config.worker_processes))
    progress.note(cluster.describe())
    return TaskPool(cluster), ModelPool(cluster, config.ray_actors, config.device)


def _loop(
    workspace: Workspace,
    encoder: FaceEncoder,
    engine: Engine,
    source: Source,
    config: MineConfig,
    progress: MiningProgress,
    guidance: Guidance | None = None,
) -> MineResult:
    stalled = 0
    while True:
        for message in reconcile(workspace, encoder):
            progress.note(message)
        state = workspace.state()
        group = members(workspace)
        note = guidance.update(workspace, source) if guidance is not None else None
        if note:
            progress.note(note)
        stop = _stop_reason(state, len(group), config)
        if stop:
            return _result(workspace, stop)
        planned = policy.begin_batch(state, len(group), config.policy())
        candidates: list[Candidate] = []
        notes: list[str] = []
        if policy.generates(planned):
            progress.update(batch=planned.batch, batch_size=planned.n, event=f"waiting for {source.description}")
            if config.max_batches is not None and state.batch + 1 >= config.max_batches:
                engine.ahead = 0  # the last batch: nothing is made that no batch would judge
            wanted = _wanted(workspace, planned, group, config)
            judging = [(group.vectors, planned.hi)] if len(group) else []
            candidates = gather(workspace, engine, source, wanted, early_choice(config, judging), notes)
            if not candidates:
                return _result(workspace, "source exhausted")
            progress.update(event=f"judging {len(candidates)} images")
        # The source had no more (a folder read to its end): a start need not wait for more faces.
        complete = bool(candidates) and len(candidates) < wanted and not config.watch
        change, outcome, judged_notes = run_batch(workspace, planned, group, candidates, config, complete)
        workspace.commit(change)
        for message in notes + judged_notes:
            progress.note(message)
        stalled = 0 if candidates or outcome.joined or change.relocations else stalled + 1
        counts = workspace.counts()
        sizes = (counts[SIM_GROUP], counts[ALMOST_SIM], counts[UNKNOWN_PERSON])
        report(engine, progress, planned.batch, candidates, outcome, sizes, outcome.state.avg, outcome.state.hi)
        if stalled >= STALL_LIMIT:
            return _result(workspace, "stalled")


def report(
    engine: Engine,
    progress: MiningProgress,
    batch: int,
    candidates: list[Candidate],
    outcome,
    sizes: tuple[int, int, int],
    avg: float,
    hi: float,
) -> None:
    """A batch's line (or panel) of progress: sizes are (group, almost-sim, unknown-person)."""
    generated, judged = engine.stats.rates()
    progress.batch_done(
        batch=batch,
        batch_size=len(candidates),
        group_size=sizes[0],
        almost_size=sizes[1],
        unknown_size=sizes[2],
        avg=avg,
        hi=hi,
        judged=progress.snapshot.judged + len(candidates),
        joined=progress.snapshot.joined + len(outcome.joined),
        event=outcome.event,
        generated_per_s=generated,
        judged_per_s=judged,
        generator_wait=engine.generator_wait_share(),
        **engine.depths(),
    )


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


def _wanted(workspace: Workspace, planned: MinerState, group: Faces, config: MineConfig) -> int:
    """Candidates this batch asks for: the policy's n, or what the cluster start still needs to see."""
    if len(group) or config.start != "cluster":
        return planned.n
    return max(planned.n, config.start_candidates - len(bootstrap_pool(workspace)))


# 2. Candidates ----------------------------------------------------------------------------------


def raw_distance(found, group: np.ndarray) -> float | None:
    """Mean distance of the largest face to the group; None without a face or a group."""
    face = face_lib.largest(found or [])
    if face is None or group is None or len(group) == 0:
        return None
    return float(face_lib.sim_score(face.descriptor, group))


def early_choice(config: MineConfig, judging: list[tuple[np.ndarray, float]]) -> Callable[[Candidate], str]:
    """Which variant of a candidate with a raw and an enhanced image is judged: the enhanced one, unless
    its raw face is so far from every group judging the batch (each at its own bound) that enhancing
    could not change its verdict: then the raw one, as the original miner skipped enhancing such images.
    `judging`: (the group's descriptors, its bound) of each group that judges this batch."""

    def choose(candidate: Candidate) -> str:
        if not config.early_reject or not judging:
            return FINAL
        for vectors, bound in judging:
            distance = raw_distance(candidate.raw.faces, vectors)
            if not policy.rejects_early(distance, bound, config.almost_band, config.reject_margin):
                return FINAL
        return RAW

    return choose


def gather(
    workspace: Workspace,
    engine: Engine,
    source: Source,
    n: int,
    choose: Callable[[Candidate], str],
    notes: list[str],
) -> list[Candidate]:
    """Up to n candidates with content new to the workspace, in order, each judged on the variant
    `choose` picks (`early_choice`).

    A candidate the source made whose content the workspace already holds is deleted at once and does
    not count, so a batch is the same whether or not an earlier run died after writing a file but
    before noting it. A file the user put in incoming/ with such content is left alone.
    """
    chosen: dict[str, Candidate] = {}
    while len(chosen) < n:
        wanted = n - len(chosen)
        taken = engine.take(wanted, choose)
        notes.extend(source.notes)
        source.notes.clear()
        if not taken:
            break
        for candidate in taken:
            file = candidate.chosen
            if file.content_hash in chosen or workspace.image_by_hash(file.content_hash):
                if source.made(file.path.name, file.content_hash):
                    notes.append(f"{file.path.name}: same content as an image the workspace already has; dropped")
                    for variant in (candidate.raw, candidate.final):
                        if variant is not None:
                            variant.path.unlink(missing_ok=True)
                elif file.path not in workspace.ignored_incoming:  # the user's own file: never deleted
                    workspace.ignored_incoming.add(file.path)
                    notes.append(f"{INCOMING}/{file.path.name} holds an image the workspace already has; left there")
            else:
                chosen[file.content_hash] = candidate
        if len(taken) < wanted:
            break  # the feed has nothing more right now (a watched folder between files)
    return list(chosen.values())


# 3. One batch -----------------------------------------------------------------------------------


def examine(candidate: Candidate) -> Examined:
    file = candidate.chosen
    if file.faces is None:
        return Examined(candidate, None, None, file.error or "unreadable")
    face = face_lib.largest(file.faces)
    return Examined(candidate, face.descriptor if face else None, len(file.faces), None)


def run_batch(
    workspace: Workspace,
    planned: MinerState,
    group: Faces,
    candidates: list[Candidate],
    config: MineConfig,
    complete: bool = False,
) -> tuple[Commit, BatchOutcome, list[str]]:
    """Judge one batch; returns the change to commit, the policy's outcome and lines to report.

    complete: the source gave fewer candidates than asked for, so a start waits for no more."""
    examined = [examine(candidate) for candidate in candidates]
    almost_before = workspace.counts()[ALMOST_SIM]
    pool = bootstrap_pool(workspace) if len(group) == 0 else Faces()
    outcome = policy.finish_batch(
        planned,
        config.policy(),
        group,
        [(e.content_hash, e.descriptor) for e in examined],
        pool=pool,
        almost_size=almost_before,
        start=starter(config.start_config(), complete),
    )
    notes = [f"{e.candidate.name}: unreadable ({e.error}), moved to {UNKNOWN_PERSON}/" for e in examined if e.error]
    if outcome.seeds:
        notes.append(f"the group starts with {len(outcome.seeds)} faces: {outcome.seed_reason}")
    elif len(group) == 0 and not outcome.joined:
        faces = len(pool) + sum(e.descriptor is not None for e in examined)
        notes.extend(filter(None, [waiting_note(config.start_config(), faces)]))
    return build_commit(workspace, planned, outcome, examined), outcome, notes
