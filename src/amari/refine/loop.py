"""`amari refine`: rounds of mining with the identity learned so far, then training on the group it grew.

Round r:
1. mines `batches` more batches into the workspace with the identity round r-1 learned: its embedding
   loaded under its name (NAME-r(r-1)) and that name in the prompt where the init word stood, or its LoRA
   (`<lora:NAME-r(r-1)-lora:1>`) with the trigger words, or both (pivotal); round 1 mines with the plain
   prompt. Every image names what made it (A1111's `TI hashes`, `Lora hashes`). The policy judges these
   candidates exactly as any others;
2. measures the round (`amari.refine.measure`): its candidates are the fresh batch of that identity, so
   their acceptance and mean sim-score say how well it holds the group's face; when both reach the target,
   the loop stops there;
3. prepares the group's images and trains round r's identity on them (`method`), from round r-1's files
   (warm start) or from the init word.

`refine.json` says which steps of which round are done; each step is resumable in itself (the miner's
batches, training's checkpoints), so a run killed at any point resumes with the same results. Seeds come
from the miner's allocator: give [mine] seed for runs that can be compared. `rounds.csv` holds a row per
round, `rounds.png` its chart.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field

from amari.errors import UsageError
from amari.refine.config import RefineConfig
from amari.refine.measure import PoseCache, round_figures
from amari.storage.files import write_atomic
from amari.storage.layout import PrepareLayout, RefineLayout
from amari.storage.rounds import RoundRecord, write_rounds

TARGET, ROUNDS, MINER_FINISHED = "target reached", "rounds done", "miner finished"


@dataclass
class RefineResult:
    rounds: list[RoundRecord]
    stopped: str  # TARGET, ROUNDS or MINER_FINISHED
    identity: str  # the last identity trained ("" when none was)

    def table(self) -> str:
        """The rounds as text, for the terminal."""
        lines = ["round  guided by      candidates  accepted  acceptance  group mean  fresh mean  yaw sd  s/accepted"]
        for r in self.rounds:
            lines.append(
                f"{r.round:>5}  {r.guided_by or '-':<13}  {r.candidates:>10}  {r.accepted:>8}  "
                f"{_fmt(r.acceptance, '.0%'):>10}  {_fmt(r.group_mean):>10}  {_fmt(r.fresh_mean):>10}  "
                f"{_fmt(r.yaw_sd, '.1f'):>6}  {_fmt(r.seconds_per_accepted, '.1f'):>10}"
            )
        return "\n".join(lines) + f"\n{self.stopped}" + (f"; identity: {self.identity}" if self.identity else "")


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


@dataclass
class Step:
    """Where a round stands (persisted in refine.json)."""

    first_batch: int  # the workspace's last batch before the round
    last_batch: int  # the round mines until this batch
    mined: str = ""  # how the round's mining stopped, once it has
    mine_seconds: float = 0.0
    record: dict | None = None
    prepared: bool = False
    trained: bool = False
    train_seconds: float = 0.0


@dataclass
class State:
    steps: dict[int, Step] = field(default_factory=dict)
    stopped: str = ""

    @classmethod
    def load(cls, path) -> State:
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            steps = {int(k): Step(**v) for k, v in data["steps"].items()}
            return cls(steps, data.get("stopped", ""))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path} is damaged ({exc}); move it aside to start the rounds again") from None

    def save(self, path) -> None:
        data = {"steps": {str(k): asdict(v) for k, v in sorted(self.steps.items())}, "stopped": self.stopped}
        write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def check(config: RefineConfig, mine, train) -> None:
    """What the rounds need of the mining and training settings, before anything runs."""
    if mine.folder is not None:
        raise UsageError("refine mines with Stable Diffusion: a folder source cannot be steered by an identity")
    if mine.identities > 1:
        raise UsageError("refine grows a single identity: mine it with [mine] identities = 1")
    if config.rounds > 1 and not re.search(rf"\b{re.escape(train.init_word)}\b", mine.prompt):
        raise UsageError(
            f"the mining prompt {mine.prompt!r} must hold the init word {train.init_word!r}: later rounds put "
            "the learned identity in its place"
        )


def run(config: RefineConfig, layout: RefineLayout, mine, train, prepare, progress=None, log=None) -> RefineResult:
    """Run (or resume) the rounds; `mine`, `train` and `prepare` are the stages' configs."""
    from amari.mine import MiningProgress, WorkspaceView

    log = log or (lambda message: None)
    check(config, mine, train)
    layout.root.mkdir(parents=True, exist_ok=True)
    state = State.load(layout.state)
    view, poses = WorkspaceView(layout.workspace), PoseCache()
    progress = progress or MiningProgress(enabled=False)
    stopped = state.stopped if state.stopped in (TARGET, MINER_FINISHED) else ""
    number = 0
    for number in range(1, config.rounds + 1):
        if stopped:
            break
        step = state.steps.get(number)
        if step is None:
            first = view.state().batch
            step = state.steps[number] = Step(first, first + config.batches)
            state.save(layout.state)
        if not step.mined:
            began = time.perf_counter()
            result = _mine(config, layout, number, step, mine, train, progress)
            step.mined, step.mine_seconds = result.stopped, time.perf_counter() - began
            state.save(layout.state)
        if step.record is None:
            figures = round_figures(view, step.first_batch, step.last_batch, mine.faces, poses)
            reached = _reached(config, figures)
            guided = config.identity(number - 1) if number > 1 else ""
            record = RoundRecord(number, guided, config.method, **figures, mine_seconds=step.mine_seconds)
            step.record = asdict(RoundRecord(**{**asdict(record), "target_reached": reached}))
            state.save(layout.state)
            _write_table(layout, state)
        record = RoundRecord(**step.record)
        log(f"round {number}: {record.accepted} of {record.candidates} candidates joined; group {record.group_size}")
        if record.target_reached:
            stopped = TARGET
        elif not step.trained:
            _train(config, layout, number, step, state, train, prepare, log)
        if not stopped and step.mined != "max-batches":  # done, exhausted or stalled: no round can mine more
            stopped = MINER_FINISHED
    state.stopped = stopped or ROUNDS
    state.save(layout.state)
    rounds = [RoundRecord(**s.record) for _, s in sorted(state.steps.items()) if s.record]
    _write_table(layout, state)
    from amari.report import chart_refinement

    chart_refinement(rounds, layout.chart)
    trained = [r.trained for r in rounds if r.trained]
    return RefineResult(rounds, state.stopped, trained[-1] if trained else "")


def _reached(config: RefineConfig, figures: dict) -> bool:
    candidates, fresh = figures["candidates"], figures["fresh_mean"]
    return bool(
        candidates
        and figures["accepted"] / candidates >= config.target_acceptance
        and fresh is not None
        and fresh <= config.target_distance
    )


def _mine(config: RefineConfig, layout: RefineLayout, number: int, step: Step, mine, train, progress):
    """The round's batches, with the identity of the round before."""
    from amari import mine as mining
    from amari.generate import DiffusersSource, Embedding, Lora

    settings = mine.replace(max_batches=step.last_batch)
    generation = settings.generate_config()
    prompt = settings.prompt
    if number > 1:
        before = layout.train(number - 1).out
        name = config.identity(number - 1)
        token = config.method in ("ti", "pivotal")
        embeddings = (Embedding(str(before / f"{name}.safetensors"), name),) if token else ()
        loras = (Lora(str(before / f"{name}-lora.safetensors")),) if config.method != "ti" else ()
        generation = generation.replace(embeddings=embeddings, loras=loras)
        word = name if token else _round_train(config, train, number - 1, layout).trigger
        prompt = re.sub(rf"\b{re.escape(train.init_word)}\b", word, prompt)
    source = DiffusersSource(prompt, generation, settings.enhance_config(), seed=settings.seed, preset=settings.preset)
    return mining.run(settings, layout.workspace, source, progress)


def _round_train(config: RefineConfig, train, number: int, layout: RefineLayout):
    """Round `number`'s training settings: the round's method, length and name, warm from the round before."""
    warm = layout.train(number - 1).out if not config.scratch and number > 1 else None
    return train.replace(
        method=config.method,
        methods=None,
        max_steps=config.steps,
        checkpoint_every=min(train.checkpoint_every, config.steps),
        name=config.identity(number),
        warm_start=warm,
    )


def _train(config, layout: RefineLayout, number: int, step: Step, state: State, train, prepare, log) -> None:
    from amari import prepare as preparing
    from amari import train as training

    run_layout = layout.train(number)
    if not step.prepared:
        if run_layout.data.exists():
            shutil.rmtree(run_layout.data)  # a killed run's partial images; the seed makes them again exactly
        seed = prepare.seed if prepare.seed is not None else number
        preparing.run(prepare.replace(seed=seed), PrepareLayout(layout.workspace.sim_group, run_layout.data))
        step.prepared = True
        state.save(layout.state)
    began = time.perf_counter()
    training.run(
        _round_train(config, train, number, layout), run_layout, log=lambda text: log(f"round {number}: {text}")
    )
    step.train_seconds, step.trained = time.perf_counter() - began, True
    step.record = {**step.record, "train_seconds": step.train_seconds, "trained": config.identity(number)}
    state.save(layout.state)
    _write_table(layout, state)


def _write_table(layout: RefineLayout, state: State) -> None:
    write_rounds(layout.rounds_csv, [RoundRecord(**s.record) for _, s in sorted(state.steps.items()) if s.record])
