"""What a judged batch changes: the policy's verdicts as database rows, decisions and file operations."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from amari.mine import policy
from amari.mine.engine import Candidate
from amari.mine.policy import BatchOutcome, MinerState
from amari.mine.records import Commit, Decision, NewImage, Relocation
from amari.mine.workspace import Workspace
from amari.storage.layout import ALMOST_SIM, SIM_GROUP, UNKNOWN_PERSON


@dataclass
class Examined:
    """A settled candidate as the policy sees it: its chosen file's largest face, or why there is none."""

    candidate: Candidate
    descriptor: np.ndarray | None
    n_faces: int | None
    error: str | None

    @property
    def content_hash(self) -> str:
        return self.candidate.chosen.content_hash


def build_commit(workspace: Workspace, planned: MinerState, outcome: BatchOutcome, examined: list[Examined]) -> Commit:
    """Translate the policy's verdicts into rows and file moves."""
    change = Commit(batch=planned.batch, state=outcome.state)
    folder, bound = _destinations(workspace, outcome, examined, change)
    counts = place_files(workspace, change, folder, bound, examined)

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


def place_files(
    workspace: Workspace,
    change: Commit,
    folder: dict[Hashable, str],
    bound: dict[Hashable, float],
    examined: list[Examined],
) -> Counter:
    """Each image's destination as a new row (this batch's candidates) or a relocation (images the
    workspace holds); returns the images per folder once the change is made."""
    new = {e.content_hash: e for e in examined}
    counts = Counter(workspace.counts())
    for key, target in folder.items():
        if key in new:
            item = new[key]
            file = item.candidate.chosen
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
                    name=item.candidate.name,
                )
            )
            discarded = item.candidate.discarded
            if discarded is not None:  # the variant not judged: the miner made it, the miner deletes it
                change.deletions.append(discarded.path)
            counts[target] += 1
        else:
            row = workspace.image_by_hash(key)
            if row.folder != target:
                change.relocations.append(Relocation(row.id, target, bound.get(key)))
                counts[row.folder] -= 1
                counts[target] += 1
    return counts


def _destinations(
    workspace: Workspace, outcome: BatchOutcome, examined: list[Examined], change: Commit
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
        change.decisions.append(Decision(key, SIM_GROUP, f"bootstrap: {outcome.seed_reason}", None, outcome.bound))
    for judgement in outcome.placed:  # faces seen before the group started, judged against it now
        folder[judgement.key], bound[judgement.key] = judgement.verdict.value, outcome.bound
        reason = f"judged against the started group: {judgement.reason}"
        verdict = judgement.verdict.value
        change.decisions.append(Decision(judgement.key, verdict, reason, judgement.score, outcome.bound))
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
