"""The mining policy: which image joins the sim-group, and how the group's upper bound moves.

Pure functions over descriptor arrays, distance matrices and a small frozen `MinerState`: no files,
no database, no models. The batch loop (`amari.mine.loop`) does the I/O around two calls per batch,
`begin_batch` (may this batch generate?) and `finish_batch` (judge, bootstrap, analyse or relax).

The numbers are the original miner's; docs/mining.md walks through them and names the few places where
amari follows the original's stated intent, or closes a gap it left, rather than its literal code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum

import numpy as np

from amari.faces.descriptors import DESCRIPTOR_SIZE, distance_matrix
from amari.storage.layout import ALMOST_SIM, SIM_GROUP, UNKNOWN_PERSON

CEILING = 0.5  # the bound never rises above this (clamp, relax cap, reset)
RELAX_FACTOR = 1.05  # an unproductive pair of batches loosens the bound by 5 %
RESET_BOUNDS = (0.52, 0.49)  # the two analysis rounds of a reset re-test every member at these bounds
RESET_ALMOST_SIZE = 400  # an almost-sim folder larger than this makes the next relax a reset at once
MIN_BATCH, MAX_BATCH = 4, 100


class Verdict(str, Enum):
    """Where an image goes; the values are the workspace's folder names."""

    SIM = SIM_GROUP
    ALMOST = ALMOST_SIM
    UNKNOWN = UNKNOWN_PERSON


JUDGED = {Verdict.SIM: "accepted", Verdict.ALMOST: "almost", Verdict.UNKNOWN: "too far"}  # a scored face's reason


@dataclass(frozen=True)
class PolicyConfig:
    """What the user may tune; everything else is the original's constants above."""

    almost_band: float = 0.10  # hi < score < hi + band goes to almost-sim
    target: int = 100  # the original's "more than 99": a group this big is analysed every batch
    stop_average: float = 0.40  # done when the group holds `target` images whose average is at most this

    def __post_init__(self):
        if not 0 < self.almost_band < 1:
            raise ValueError(f"almost_band must be in (0, 1), not {self.almost_band}")
        if self.target < 2:
            raise ValueError(f"target must be at least 2 images, not {self.target}")
        if not 0 < self.stop_average <= CEILING:
            raise ValueError(f"stop_average must be in (0, {CEILING}], not {self.stop_average}")


@dataclass(frozen=True)
class MinerState:
    """Everything the policy carries from one batch to the next (persisted, so a run resumes)."""

    avg: float = 0.5  # group average at the last analysis
    hi: float = 0.5  # upper bound: a candidate joins when its mean distance to the group is <= hi
    n: int = 4  # images to generate per batch
    until_gsa: int = 3  # images still to add before the next group analysis
    idle: int = 0  # 1 after one unproductive batch
    fix: int = 0  # relaxes since the last analysis; 2 means reset
    mult: float = 1.0  # tightening divisor term, grows by 0.10 per tightened analysis
    extra: float = 0.0  # tightening divisor term, grows by 1.25 per analysis of a full group
    strict: bool = False  # the last analysis moved nobody out, so the next one adjusts the bound
    reset_phase: int = 0  # 1, 2: the next analysis is round 1 or 2 of a reset
    skip_generation: int = 0  # non-zero: this batch only analyses (1 -> 2 -> 0 across a reset)
    batch: int = 0  # number of the last batch begun
    done: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MinerState:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Faces:
    """Descriptors with an opaque key per row (the workspace uses content hashes)."""

    keys: tuple[Hashable, ...] = ()
    vectors: np.ndarray = field(default_factory=lambda: np.empty((0, DESCRIPTOR_SIZE)))

    def __post_init__(self):
        vectors = np.asarray(self.vectors, dtype=np.float64).reshape(-1, DESCRIPTOR_SIZE)
        if len(vectors) != len(self.keys):
            raise ValueError(f"{len(self.keys)} keys for {len(vectors)} descriptors")
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "keys", tuple(self.keys))

    def __len__(self) -> int:
        return len(self.keys)

    def plus(self, other: Faces) -> Faces:
        return Faces(self.keys + other.keys, np.concatenate([self.vectors, other.vectors]))


@dataclass(frozen=True)
class Analysis:
    """One group analysis: each member's score, the statistics and the bound that judged them."""

    keys: tuple[Hashable, ...]
    scores: np.ndarray  # mean distance of each member to every member, itself included
    avg: float
    sd: float
    hi: float
    leaving: tuple[Hashable, ...]  # members whose score is above hi: they move to almost-sim
    reset_round: int  # 0, or 1 / 2 for the rounds of a reset


@dataclass(frozen=True)
class Judgement:
    key: Hashable
    verdict: Verdict
    score: float  # mean distance to the group; nan when there is no face or no group
    reason: str


@dataclass(frozen=True)
class Seeding:
    """The faces that start an empty group, and why (recorded with each seed's decision)."""

    keys: tuple[Hashable, ...]
    reason: str
    judge_rest: bool = False  # the other faces seen are then judged against the new group


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch decided; the caller moves files accordingly."""

    state: MinerState
    bound: float  # the hi that judged this batch's candidates
    judgements: tuple[Judgement, ...]
    seeds: tuple[Hashable, ...]  # the faces that started an empty group
    analysis: Analysis | None
    reset: bool  # every almost-sim image returns to the group, to be re-tested
    events: tuple[str, ...]
    seed_reason: str = ""  # how the seeds were chosen
    placed: tuple[Judgement, ...] = ()  # earlier faces a start judged against the group it seeded

    @property
    def joined(self) -> tuple[Hashable, ...]:
        judged = self.judgements + self.placed
        return tuple(j.key for j in judged if j.verdict is Verdict.SIM) + self.seeds

    @property
    def event(self) -> str:
        return "+".join(self.events) or "none"


# 1. Judging candidates ---------------------------------------------------------------------------


def candidate_scores(cross_distances: np.ndarray) -> np.ndarray:
    """Mean over each row of a (candidates × group) distance matrix; nan for every row of an empty group."""
    cross_distances = np.asarray(cross_distances, dtype=np.float64)
    if cross_distances.ndim != 2:
        raise ValueError(f"expected a 2-d distance matrix, got shape {cross_distances.shape}")
    if cross_distances.shape[1] == 0:
        return np.full(cross_distances.shape[0], np.nan)
    return cross_distances.mean(axis=1)


def rejects_early(distance: float | None, upper_bound: float, almost_band: float, margin: float) -> bool:
    """True when a raw image's face is so far from the group that enhancing it could not change its
    verdict (beyond the almost band by more than the margin): it is judged as it came."""
    return distance is not None and distance > upper_bound + almost_band + margin


def classify(score: float, hi: float, almost_band: float) -> Verdict:
    """score <= hi: sim-group; hi < score < hi + band: almost-sim; anything else (nan too): unknown."""
    if score <= hi:
        return Verdict.SIM
    if hi < score < hi + almost_band:
        return Verdict.ALMOST
    return Verdict.UNKNOWN


def tightest_pair(distances: np.ndarray, hi: float) -> tuple[int, int] | None:
    """The two closest faces of a square distance matrix, if their distance is at most hi."""
    distances = np.asarray(distances, dtype=np.float64)
    if distances.shape[0] < 2:
        return None
    upper = np.triu_indices(distances.shape[0], k=1)
    pairs = distances[upper]
    best = int(np.argmin(pairs))  # the first of equal pairs, so the choice is reproducible
    if pairs[best] > hi:
        return None
    return int(upper[0][best]), int(upper[1][best])


def pair_start(faces: Faces, hi: float) -> Seeding | None:
    """The original gap closed the simplest way: the two closest faces seen so far, if within the bound."""
    pair = tightest_pair(distance_matrix(faces.vectors), hi) if len(faces) >= 2 else None
    if pair is None:
        return None
    return Seeding((faces.keys[pair[0]], faces.keys[pair[1]]), "tightest pair")


# 2. The group analysis ----------------------------------------------------------------------------


def member_scores(group_distances: np.ndarray) -> np.ndarray:
    """Each member's mean distance to every member, itself (distance 0) included."""
    group_distances = np.asarray(group_distances, dtype=np.float64)
    if group_distances.ndim != 2 or group_distances.shape[0] != group_distances.shape[1]:
        raise ValueError(f"expected a square distance matrix, got shape {group_distances.shape}")
    return group_distances.mean(axis=1)


def upper_bound(avg: float, sd: float, group_size: int) -> float:
    """hi = ((4/3)^(1/avg) · 0.99^N + 0.25) · sd + avg + 0.005, before tightening and clamps.

    A loose group (large avg) gets a bound close to its average; a tight one gets room to grow. When
    every member is identical (avg = sd = 0) the spread term is 0 rather than 0 · infinity.
    """
    if sd <= 0 or avg <= 0:
        return avg + 0.005
    growth = math.exp(min(700.0, math.log(4 / 3) / avg))  # capped: beyond e^700 a float overflows
    return (growth * 0.99**group_size + 0.25) * sd + avg + 0.005


def next_batch_size(group_size: int, extra: float) -> int:
    """n = round(round(0.10·N + 1) · extra · 1.5), then at least 4 and at most 100."""
    n = round(round(0.10 * group_size + 1) * extra * 1.5)
    if n < 5:
        return MIN_BATCH
    return min(n, MAX_BATCH)


def clamp_bound(hi: float, avg: float) -> float:
    """A bound below the average becomes 1.05 · average; one above the ceiling becomes the ceiling."""
    if hi < avg:
        hi = 1.05 * avg
    return min(hi, CEILING)


def analyse(state: MinerState, group: Faces, config: PolicyConfig) -> tuple[MinerState, Analysis]:
    """One group analysis over the group's descriptors."""
    return analyse_distances(state, group.keys, distance_matrix(group.vectors), config)


def analyse_distances(
    state: MinerState, keys: Sequence[Hashable], group_distances: np.ndarray, config: PolicyConfig
) -> tuple[MinerState, Analysis]:
    """One group analysis over the group's (N×N) distance matrix (SPEC §3 step 3, in its order)."""
    keys = tuple(keys)
    if len(keys) == 0:
        raise ValueError("cannot analyse an empty group")
    if np.shape(group_distances) != (len(keys), len(keys)):
        raise ValueError(
            f"{len(keys)} members need a {len(keys)}×{len(keys)} distance matrix, not {np.shape(group_distances)}"
        )
    skip, reset_phase = state.skip_generation, state.reset_phase
    if state.fix == 2:
        skip, reset_phase = 1, 1
    size = len(keys)
    full = size >= config.target

    scores = member_scores(group_distances)
    avg, sd = float(scores.mean()), float(scores.std())
    hi = upper_bound(avg, sd, size)

    extra = state.extra + 1.25 if full else state.extra
    mult = state.mult
    if full or state.strict:
        hi = (hi - avg) / (mult + 0.05 + extra) + avg
        mult += 0.10
    else:
        mult = 0.0
    hi = clamp_bound(hi, avg)

    reset_round = 0
    if reset_phase == 1:
        hi, reset_phase, reset_round = RESET_BOUNDS[0], 2, 1
    elif reset_phase == 2:
        hi, reset_phase, reset_round = RESET_BOUNDS[1], 0, 2

    leaving = tuple(key for key, score in zip(keys, scores) if score > hi)
    n = next_batch_size(size, extra)
    remaining = size - len(leaving)
    new_state = replace(
        state,
        avg=avg,
        hi=hi,
        n=n,
        until_gsa=n,
        idle=0,
        fix=0,
        mult=mult,
        extra=extra,
        # The original's comment: tighten when an analysis removes nobody (see docs/mining.md).
        strict=not leaving,
        reset_phase=reset_phase,
        skip_generation={1: 2, 2: 0}.get(skip, 0),
        done=remaining >= config.target and avg <= config.stop_average,
    )
    return new_state, Analysis(keys, scores, avg, sd, hi, leaving, reset_round)


# 3. Unproductive batches --------------------------------------------------------------------------


def after_unproductive(state: MinerState, almost_size: int) -> tuple[MinerState, str]:
    """A batch that added nobody and ran no analysis: wait one, then relax by 5 % or reset.

    Returns the new state and its event: "idle", "relax" or "reset" (every almost-sim image returns
    to the group, hi goes back to the ceiling and the next two batches are the reset's analyses).
    """
    if state.idle == 0:
        return replace(state, idle=1), "idle"
    fix = 2 if almost_size > RESET_ALMOST_SIZE else state.fix + 1
    if fix == 2:
        return replace(state, idle=0, fix=fix, hi=CEILING, skip_generation=1), "reset"
    return replace(state, idle=0, fix=fix, hi=min(RELAX_FACTOR * state.hi, CEILING)), "relax"


# 4. A whole batch ---------------------------------------------------------------------------------


def begin_batch(state: MinerState, group_size: int, config: PolicyConfig) -> MinerState:
    """Step 1: a new batch number; a full group skips generation so that it is analysed instead."""
    skip = 2 if group_size >= config.target else state.skip_generation
    return replace(state, batch=state.batch + 1, skip_generation=skip)


def generates(state: MinerState) -> bool:
    """Whether the batch `begin_batch` returned asks the source for new images."""
    return state.skip_generation == 0


def judge(
    candidates: Sequence[tuple[Hashable, np.ndarray | None]], group: Faces, hi: float, almost_band: float
) -> tuple[Judgement, ...]:
    """Each candidate's verdict from its mean distance to the group as it was when the batch began."""
    judgements = []
    with_face = [(key, vector) for key, vector in candidates if vector is not None]
    vectors = np.array([v for _, v in with_face]).reshape(-1, DESCRIPTOR_SIZE)
    # An empty group gives every face a nan score (`candidate_scores`).
    scores = dict(zip([k for k, _ in with_face], candidate_scores(distance_matrix(vectors, group.vectors))))
    for key, vector in candidates:
        if vector is None:
            judgements.append(Judgement(key, Verdict.UNKNOWN, math.nan, "no face found"))
            continue
        score = float(scores[key])
        if len(group) == 0:
            judgements.append(Judgement(key, Verdict.UNKNOWN, score, "no group yet"))
            continue
        verdict = classify(score, hi, almost_band)
        judgements.append(Judgement(key, verdict, score, JUDGED[verdict]))
    return tuple(judgements)


def finish_batch(
    state: MinerState,
    config: PolicyConfig,
    group: Faces,
    candidates: Sequence[tuple[Hashable, np.ndarray | None]] = (),
    pool: Faces = Faces(),
    almost_size: int = 0,
    start: Callable[[Faces, float], Seeding | None] | None = None,
) -> BatchOutcome:
    """Steps 2-4 of a batch that `begin_batch` opened.

    group: the members when the batch began. candidates: this batch's new images, (key, descriptor of
    the largest face or None). pool: faces outside the group that may seed an empty group (almost-sim
    and unknown-person, never a file the user took out of the group). almost_size: almost-sim's size
    before this batch. start: how an empty group starts, from the faces seen outside it and the bound
    (default `pair_start`; `amari.mine.start` has the cluster start).
    """
    events: list[str] = []
    hi_in_force = state.hi
    judgements = judge(candidates, group, state.hi, config.almost_band) if generates(state) else ()
    accepted = _accepted(judgements, candidates)
    members = group.plus(accepted)
    if len(accepted):
        events.append("accept")

    seeding, placed = None, ()
    if len(members) == 0:
        fresh = [(j.key, v) for j, (_, v) in zip(judgements, candidates) if v is not None]
        seeding = (start or pair_start)(pool.plus(Faces(*_unzip(fresh))), state.hi)
        if seeding:
            members = Faces(seeding.keys, np.array([_vector_of(k, pool, candidates) for k in seeding.keys]))
            events.append("bootstrap")
        if seeding and seeding.judge_rest:  # the faces not chosen are judged against the seeded group
            rest = [(k, v) for k, v in (*candidates, *zip(pool.keys, pool.vectors)) if k not in seeding.keys]
            verdicts = {j.key: j for j in judge(rest, members, state.hi, config.almost_band)}
            judgements = tuple(verdicts.get(j.key, j) for j in judgements)
            fresh_keys = {key for key, _ in candidates}
            placed = tuple(j for key, j in verdicts.items() if key not in fresh_keys)
            accepted = Faces(*_unzip([(k, v) for k, v in rest if verdicts[k].verdict is Verdict.SIM]))
            members = members.plus(accepted)
            if len(accepted):
                events.append("accept")
    seeds = seeding.keys if seeding else ()

    added = len(accepted) + len(seeds)
    state = replace(state, until_gsa=state.until_gsa - added)
    almost_size += sum(j.verdict is Verdict.ALMOST for j in judgements + placed)

    analysis, reset = None, False
    if len(members) and (state.until_gsa < 1 or state.skip_generation != 0 or len(members) >= config.target):
        state, analysis = analyse(state, members, config)
        events.append(f"reset-analysis-{analysis.reset_round}" if analysis.reset_round else "analysis")
    elif len(members) == 0 and state.skip_generation != 0:
        # A reset of an empty group (the user emptied it) has nothing to re-test: generate again.
        state = replace(state, skip_generation=0, reset_phase=0, fix=0, idle=0)
        events.append("empty-group")
    elif added == 0:
        state, event = after_unproductive(state, almost_size)
        reset = event == "reset"
        events.append(event)
    if state.done:
        events.append("done")
    reason = seeding.reason if seeding else ""
    return BatchOutcome(state, hi_in_force, judgements, seeds, analysis, reset, tuple(events), reason, placed)


def finished(state: MinerState, group_size: int, config: PolicyConfig) -> bool:
    """The stop rule, also for a resumed run whose target was raised since: enough images, tight enough."""
    return group_size >= config.target and state.avg <= config.stop_average and state.done


def _unzip(pairs):
    keys = tuple(k for k, _ in pairs)
    return keys, np.array([v for _, v in pairs]).reshape(-1, DESCRIPTOR_SIZE)


def _accepted(judgements, candidates) -> Faces:
    return Faces(*_unzip([(j.key, v) for j, (_, v) in zip(judgements, candidates) if j.verdict is Verdict.SIM]))


def _vector_of(key, pool: Faces, candidates) -> np.ndarray:
    for k, v in candidates:
        if k == key and v is not None:
            return v
    return pool.vectors[pool.keys.index(key)]
