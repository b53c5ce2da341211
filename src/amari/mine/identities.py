"""Many identities at once: K sim-groups, each under its own policy state, founded from a pool of faces.

Pure functions over descriptors and frozen states, like `amari.mine.policy`, whose rules each identity
follows unchanged. Each batch:

1. `begin`: every identity that is not finished begins its own batch (`policy.begin_batch`); the batch
   asks the source for as many candidates as the identities that take candidates want together (at
   least the policy's smallest batch while identities are still to be founded).
2. `finish`: each candidate goes to the nearest identity (lowest sim-score) whose group accepts it under
   that identity's own bound; else to the almost-sim folder of the nearest identity it nearly fits;
   else to the shared unknown-person folder, the pool. Each identity then finishes its batch with the
   candidates it took (`policy.finish_batch`: analysis, relax, reset as for one identity).
3. While fewer than K identities live and the pool gained faces, the pool is clustered (Chinese
   Whispers at `cluster_threshold`): a cluster founds a new identity when, after its faces above the
   starting bound (0.5) are dropped one by one, it keeps at least `found_size` faces and its centroid is
   at least `separation` from every identity's centroid. The cluster seeds a fresh policy state as
   `--reference` images seed a single identity: its first analysis comes once `until_gsa` more joined.
4. Separation is checked after every batch: of two identities whose centroids are closer than
   `separation`, the one with fewer members (of equals, the younger) is retired and its images return
   to the pool. An identity whose group the user emptied is retired too.

Mining is done when K identities are each finished by the policy's own stop rule; a finished identity
takes no more candidates and is analysed no more.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from amari.faces import clusters
from amari.faces.descriptors import DESCRIPTOR_SIZE, distance_matrix
from amari.mine import policy
from amari.mine.policy import (
    CEILING,
    MAX_BATCH,
    MIN_BATCH,
    BatchOutcome,
    Faces,
    Judgement,
    MinerState,
    PolicyConfig,
    Verdict,
)
from amari.storage.layout import identity_name

Candidate = tuple[Hashable, "np.ndarray | None"]


@dataclass(frozen=True)
class FoundingConfig:
    """How many identities, and when a cluster of unplaced faces becomes one."""

    identities: int = 1  # K
    found_size: int = 3  # faces a cluster needs to found an identity
    separation: float = clusters.SAME_PERSON  # least distance between two identities' centroids
    cluster_threshold: float = clusters.CLUSTER_THRESHOLD  # Chinese Whispers links faces closer than this

    def __post_init__(self):
        if self.identities < 1:
            raise ValueError(f"identities must be at least 1, not {self.identities}")
        if self.found_size < 2:
            raise ValueError(f"found_size must be at least 2 faces, not {self.found_size}")
        if not 0 < self.cluster_threshold < 2:
            raise ValueError(f"cluster_threshold must be in (0, 2), not {self.cluster_threshold}")
        if not 0 < self.separation < 2:
            raise ValueError(f"separation must be in (0, 2), not {self.separation}")


@dataclass(frozen=True)
class Identity:
    number: int
    state: MinerState = field(default_factory=MinerState)
    retired: str = ""  # why it no longer takes part; empty while it does
    founded: int = 0  # the batch that founded it

    @property
    def name(self) -> str:
        return identity_name(self.number)


@dataclass(frozen=True)
class IdentitiesState:
    """Everything the identities carry from one batch to the next (persisted, so a run resumes)."""

    batch: int = 0
    identities: tuple[Identity, ...] = ()

    def live(self) -> tuple[Identity, ...]:
        return tuple(i for i in self.identities if not i.retired)

    def get(self, number: int) -> Identity:
        return next(i for i in self.identities if i.number == number)

    @property
    def next_number(self) -> int:
        return max((i.number for i in self.identities), default=0) + 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IdentitiesState:
        data = json.loads(text)
        identities = tuple(
            Identity(i["number"], MinerState(**i["state"]), i["retired"], i["founded"]) for i in data["identities"]
        )
        return cls(data["batch"], identities)


@dataclass(frozen=True)
class Plan:
    """A batch begun: the identities that take part, and how many candidates it asks for."""

    state: IdentitiesState
    planned: dict[int, MinerState]  # `policy.begin_batch`'s state of each identity that is not finished
    n: int  # candidates to ask for; 0: this batch only analyses
    founding: bool  # fewer identities live than wanted

    @property
    def generates(self) -> bool:
        return self.n > 0

    def judging(self, sizes: Mapping[int, int]) -> dict[int, MinerState]:
        """The identities that judge this batch's candidates: not in an analysis-only round, not empty."""
        return {k: p for k, p in self.planned.items() if policy.generates(p) and sizes.get(k, 0) > 0}


@dataclass(frozen=True)
class Placed:
    """A candidate's verdict: the identity whose folder it goes to (None: the pool, unknown-person)."""

    key: Hashable
    identity: int | None
    judgement: Judgement


@dataclass(frozen=True)
class Founding:
    number: int
    state: MinerState  # its policy state after founding
    members: tuple[Hashable, ...]  # the cluster's faces that join its group
    nearest: float  # distance from its centroid to the nearest other identity's (inf: none)


@dataclass(frozen=True)
class Retirement:
    number: int
    reason: str


@dataclass(frozen=True)
class Outcome:
    """What one batch decided; the caller moves files accordingly."""

    state: IdentitiesState
    placed: tuple[Placed, ...]
    outcomes: dict[int, BatchOutcome]  # each taking part identity's batch, as `policy.finish_batch` decided it
    founded: tuple[Founding, ...]
    retired: tuple[Retirement, ...]

    @property
    def events(self) -> tuple[str, ...]:
        events = [
            f"{identity_name(number)}:{outcome.event}"
            for number, outcome in sorted(self.outcomes.items())
            if outcome.events
        ]
        events += [f"found-{identity_name(f.number)}" for f in self.founded]
        events += [f"retire-{identity_name(r.number)}" for r in self.retired]
        return tuple(events)

    @property
    def event(self) -> str:
        return "+".join(self.events) or "none"

    @property
    def joined(self) -> tuple[Hashable, ...]:
        keys = [key for outcome in self.outcomes.values() for key in outcome.joined]
        return tuple(keys) + tuple(key for f in self.founded for key in f.members)


# 1. Beginning a batch -----------------------------------------------------------------------------


def begin(state: IdentitiesState, sizes: Mapping[int, int], config: PolicyConfig, founding: FoundingConfig) -> Plan:
    """Each identity that is not finished begins its batch; the batch asks for what they want together."""
    planned = {
        identity.number: policy.begin_batch(identity.state, sizes.get(identity.number, 0), config)
        for identity in state.live()
        if not policy.finished(identity.state, sizes.get(identity.number, 0), config)
    }
    open_to_found = len(state.live()) < founding.identities
    wanted = sum(p.n for k, p in planned.items() if policy.generates(p) and sizes.get(k, 0) > 0)
    n = min(MAX_BATCH, max(MIN_BATCH, wanted)) if wanted or open_to_found else 0
    return Plan(replace(state, batch=state.batch + 1), planned, n, open_to_found)


def finished(state: IdentitiesState, sizes: Mapping[int, int], config: PolicyConfig, founding: FoundingConfig) -> bool:
    """K identities each hold the target, tight enough."""
    done = [i for i in state.live() if policy.finished(i.state, sizes.get(i.number, 0), config)]
    return len(done) >= founding.identities


# 2. Placing candidates ----------------------------------------------------------------------------


def place(
    candidates: Sequence[Candidate], groups: Mapping[int, Faces], bounds: Mapping[int, float], almost_band: float
) -> tuple[Placed, ...]:
    """Each candidate to the nearest identity that accepts it, else the nearest it nearly fits, else the
    pool; `groups` and `bounds` are those of the identities that judge this batch."""
    numbers = sorted(groups)
    placed = []
    for key, vector in candidates:
        if vector is None:
            placed.append(Placed(key, None, Judgement(key, Verdict.UNKNOWN, math.nan, "no face found")))
            continue
        if not numbers:
            placed.append(Placed(key, None, Judgement(key, Verdict.UNKNOWN, math.nan, "no identity yet")))
            continue
        scores = [policy.candidate_scores(distance_matrix(vector, groups[k].vectors))[0] for k in numbers]
        verdicts = [policy.classify(s, bounds[k], almost_band) for s, k in zip(scores, numbers)]
        for wanted, reason in ((Verdict.SIM, "accepted"), (Verdict.ALMOST, "almost")):
            fitting = [i for i, v in enumerate(verdicts) if v is wanted]
            if fitting:
                best = min(fitting, key=lambda i: scores[i])  # the first of equal scores: the oldest identity
                placed.append(Placed(key, numbers[best], Judgement(key, wanted, float(scores[best]), reason)))
                break
        else:
            best = int(np.argmin(scores))
            placed.append(Placed(key, None, Judgement(key, Verdict.UNKNOWN, float(scores[best]), "too far")))
    return tuple(placed)


# 3. Founding and separation -----------------------------------------------------------------------


def trim(vectors: np.ndarray, bound: float) -> np.ndarray:
    """Indices of the faces left after dropping, one at a time, the face whose mean distance to the rest
    (itself included) is largest while it is above `bound`."""
    keep = np.arange(len(vectors))
    while len(keep):
        scores = clusters.spread(vectors[keep])
        worst = int(np.argmax(scores))
        if scores[worst] <= bound:
            break
        keep = np.delete(keep, worst)
    return keep


def found(
    pool: Faces,
    centroids: dict[int, np.ndarray],
    room: int,
    first_number: int,
    config: PolicyConfig,
    founding: FoundingConfig,
) -> list[Founding]:
    """New identities from the pool's clusters, at most `room`, numbered from `first_number`; `centroids`
    (each identity's, by number) gains each new identity's."""
    founded: list[Founding] = []
    if room <= 0 or len(pool) < founding.found_size:
        return founded
    labels = clusters.chinese_whispers(pool.vectors, founding.cluster_threshold)
    for indices in clusters.clusters(labels, min_size=founding.found_size):
        if len(founded) >= room:
            break
        kept = indices[trim(pool.vectors[indices], CEILING)]
        if len(kept) < founding.found_size:
            continue
        centre = clusters.centroid(pool.vectors[kept])
        distances = [float(np.linalg.norm(centre - other)) for other in centroids.values()]
        nearest = min(distances, default=math.inf)
        if nearest < founding.separation:
            continue
        members = Faces(tuple(pool.keys[i] for i in sorted(kept)), pool.vectors[sorted(kept)])
        number = first_number + len(founded)
        centroids[number] = clusters.centroid(members.vectors)
        # The cluster seeds a fresh policy state as references seed a single identity's: the first
        # analysis comes once `until_gsa` more images joined.
        founded.append(Founding(number, MinerState(), members.keys, nearest))
    return founded


def separate(centroids: Mapping[int, np.ndarray], sizes: Mapping[int, int], separation: float) -> list[Retirement]:
    """Of each pair of identities whose centroids are closer than `separation`, nearest pair first, the
    one with fewer members retires (of equals, the younger: the higher number)."""
    numbers = sorted(centroids)
    pairs = sorted(
        (float(np.linalg.norm(centroids[a] - centroids[b])), a, b)
        for i, a in enumerate(numbers)
        for b in numbers[i + 1 :]
    )
    retired: dict[int, Retirement] = {}
    for distance, a, b in pairs:
        if distance >= separation or a in retired or b in retired:
            continue
        loser, winner = (a, b) if sizes[a] < sizes[b] else (b, a)
        reason = f"its centroid came within {distance:.4f} of {identity_name(winner)}'s (separation {separation})"
        retired[loser] = Retirement(loser, reason)
    return list(retired.values())


# 4. A whole batch ---------------------------------------------------------------------------------


def finish(
    plan: Plan,
    config: PolicyConfig,
    founding: FoundingConfig,
    groups: Mapping[int, Faces],
    candidates: Sequence[Candidate] = (),
    unknown: Faces = Faces(),
    almost: Mapping[int, Faces] | None = None,
    almost_sizes: Mapping[int, int] | None = None,
) -> Outcome:
    """Steps 2-4 of a batch that `begin` opened.

    groups: each live identity's members when the batch began. candidates: this batch's new images,
    (key, descriptor of the largest face or None). unknown: the pool, faces in unknown-person (never a
    file the user took out of a group; needed only while identities are founded). almost: each
    identity's almost-sim faces (those a reset returns to its group; looked up only for an identity that
    resets). almost_sizes: the images in each identity's almost-sim folder (default: its faces in
    `almost`), which decide when a relax becomes a reset.
    """
    almost = almost or {}
    sizes_of_almost = almost_sizes if almost_sizes is not None else {k: len(f) for k, f in almost.items()}
    state = plan.state
    sizes = {i.number: len(groups.get(i.number, Faces())) for i in state.live()}
    retired = [Retirement(number, "its group is empty") for number, size in sizes.items() if size == 0]
    gone = {r.number for r in retired}
    judging = {k: p for k, p in plan.judging(sizes).items() if k not in gone}
    placed = place(
        candidates, {k: groups[k] for k in judging}, {k: p.hi for k, p in judging.items()}, config.almost_band
    )

    outcomes: dict[int, BatchOutcome] = {}
    for number, planned in sorted(plan.planned.items()):
        if number in gone:
            continue
        owned = [(p.key, vector) for p, (_, vector) in zip(placed, candidates) if p.identity == number]
        outcomes[number] = policy.finish_batch(
            planned, config, groups[number], owned, almost_size=sizes_of_almost.get(number, 0)
        )
    # Each identity's own judgement stands for the candidates it took (it is the policy's).
    judged = {j.key: j for outcome in outcomes.values() for j in outcome.judgements}
    placed = tuple(replace(p, judgement=judged.get(p.key, p.judgement)) for p in placed)

    vectors = {k: v for faces in (*groups.values(), unknown) for k, v in zip(faces.keys, faces.vectors)}
    vectors.update({key: vector for key, vector in candidates if vector is not None})
    members = {}
    for number in sizes:
        if number in gone:
            continue
        outcome = outcomes.get(number)
        back = almost.get(number, Faces()) if outcome is not None and outcome.reset else Faces()
        vectors.update(zip(back.keys, back.vectors))
        members[number] = _members_after(groups[number], outcome, back)

    fresh = [p.key for p in placed if p.judgement.verdict is Verdict.UNKNOWN and p.key in vectors]
    founded: list[Founding] = []
    if len(members) < founding.identities and fresh:
        pool = Faces(unknown.keys + tuple(fresh), np.array([vectors[k] for k in unknown.keys + tuple(fresh)]))
        centroids = {n: _centroid(keys, vectors) for n, keys in members.items() if keys}
        founded = found(pool, centroids, founding.identities - len(members), state.next_number, config, founding)
        for f in founded:
            members[f.number] = list(f.members)

    centroids = {n: _centroid(keys, vectors) for n, keys in members.items() if keys}
    retired += separate(centroids, {n: len(keys) for n, keys in members.items()}, founding.separation)
    why = {r.number: r.reason for r in retired}
    identities = [
        replace(
            i,
            state=outcomes[i.number].state if i.number in outcomes else i.state,
            retired=why.get(i.number, i.retired),
        )
        for i in state.identities
    ]
    identities += [Identity(f.number, f.state, why.get(f.number, ""), state.batch) for f in founded]
    return Outcome(replace(state, identities=tuple(identities)), placed, outcomes, tuple(founded), tuple(retired))


def _members_after(group: Faces, outcome: BatchOutcome | None, almost: Faces) -> list[Hashable]:
    """An identity's members once its batch's decisions are carried out (judged, analysis, reset)."""
    keys = list(group.keys)
    if outcome is None:
        return keys
    keys += outcome.joined
    if outcome.analysis is not None:
        leaving = set(outcome.analysis.leaving)
        keys = [k for k in keys if k not in leaving]
    if outcome.reset:
        keys += list(almost.keys) + [j.key for j in outcome.judgements if j.verdict is Verdict.ALMOST]
    return keys


def _centroid(keys: Sequence[Hashable], vectors: Mapping[Hashable, np.ndarray]) -> np.ndarray:
    return clusters.centroid(np.array([vectors[k] for k in keys]).reshape(-1, DESCRIPTOR_SIZE))
