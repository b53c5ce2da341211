"""How long a study will take: the doctor's stage timings times the study's counts, assumptions stated.

The streaming miner runs the model work (generate, enhance) on one thread while its worker processes
do the CPU work (watermark, PNG, faces) of earlier candidates, so a candidate costs the slower of the
two; the serial engine pays both, one after the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from amari.doctor.plan import StudyPlan
from amari.doctor.render import duration
from amari.doctor.timing import Timings, train_stage
from amari.models.families.registry import guess
from amari.models.inventory import human_size
from amari.storage.layout import DEFAULT_METHOD
from amari.train.config import checkpoint_steps

# The 2022 study kept 312 images in its sim-group out of roughly 4,200 candidates it generated.
ACCEPTED_2022, CANDIDATES_2022 = 312, 4200
ACCEPTANCE_2022 = ACCEPTED_2022 / CANDIDATES_2022
MODEL_STAGES = ("generate", "enhance")  # the generator's thread (the GPU)
CPU_STAGES = ("detect", "descriptor", "write")  # the worker processes


@dataclass(frozen=True)
class EstimateRow:
    what: str
    how: str
    seconds: float


@dataclass(frozen=True)
class Estimate:
    rows: tuple[EstimateRow, ...]
    assumptions: tuple[str, ...]
    candidates: int
    workspace_bytes: int

    @property
    def mining_seconds(self) -> float:
        return self.rows[0].seconds

    @property
    def total_seconds(self) -> float:
        return self.rows[-1].seconds


def _step_text(method: str, seconds: float, runs: int, groups: int) -> str:
    """A method's share of a training step: one run of every group at once, or `runs` runs of one group."""
    if runs == 1 and groups > 1:
        return f"{duration(seconds)} {method}, {groups} groups at once"
    return f"{runs} × {duration(seconds)} {method}" if runs > 1 else f"{duration(seconds)} {method}"


def estimate(plan: StudyPlan, timings: Timings, acceptance: float = ACCEPTANCE_2022) -> Estimate:
    """Time to the target group size, to train every group with every method, to evaluate the grid, and in all."""
    if not 0 < acceptance <= 1:
        raise ValueError(f"the acceptance rate must be in (0, 1], not {acceptance}")
    # 1. Mining: every candidate passes through every stage; the target needs target / acceptance of them.
    model_work = sum(timings.seconds(stage) or 0.0 for stage in MODEL_STAGES)
    cpu_work = sum(timings.seconds(stage) or 0.0 for stage in CPU_STAGES)
    per_candidate = max(model_work, cpu_work / plan.workers) if plan.workers else model_work + cpu_work
    candidates = math.ceil(plan.target / acceptance)
    mining = candidates * per_candidate
    # 2. Training: max_steps steps per run, plus the sample images drawn at every checkpoint. Textual
    #    Inversion trains every group in one run (its timed step is one batch of all of them); the other
    #    methods one group after another.
    train = plan.train
    steps = {method: timings.seconds(train_stage(method)) or 0.0 for method in plan.methods}
    runs = {method: 1 if method == DEFAULT_METHOD and plan.together else plan.groups for method in steps}
    evaluate_image = timings.seconds("evaluate image") or 0.0
    samples = (
        len(checkpoint_steps(train.max_steps, train.checkpoint_every))
        * len(train.sample_prompts)
        * len(train.sample_seeds)
    )
    sample_steps = train.sample_steps or guess(train.model).defaults.sample_steps
    sample_image = evaluate_image * sample_steps / max(1, plan.evaluate.steps)
    sample_runs = plan.groups * len(steps)
    training = sum(runs[m] * train.max_steps * step for m, step in steps.items()) + sample_runs * samples * sample_image
    # 3. Evaluation: one image per cell, generated (in passes of a prompt's images) and scored.
    evaluation = plan.eval_images * evaluate_image
    total = mining + training + evaluation
    plural = "s" * (samples != 1)
    several = len(steps) > 1
    each = " + ".join(_step_text(method, step, runs[method], plan.groups) for method, step in steps.items())
    methods = f" × {len(steps)} methods" if several else ""
    rows = (
        EstimateRow(f"mine to {plan.target} images", f"{candidates} candidates × {duration(per_candidate)}", mining),
        EstimateRow(
            f"train {plan.groups} group{'s' * (plan.groups != 1)}{methods}",
            f"{train.max_steps} steps × ({each}) + {sample_runs} × {samples} sample image{plural} "
            f"× {duration(sample_image)}",
            training,
        ),
        EstimateRow(
            f"evaluate {plan.eval_images} images", f"{plan.eval_images} × {duration(evaluate_image)}", evaluation
        ),
        EstimateRow("whole study", "mine + train + evaluate", total),
    )
    assumptions = [
        (
            f"{acceptance:.1%} of candidates join the sim-group (the 2022 study kept about {ACCEPTED_2022} of "
            f"{CANDIDATES_2022:,}); another prompt may need more or fewer: --acceptance RATE"
        ),
        "the group analysis reuses cached descriptors, and select, prepare and report take seconds: not counted",
        (
            f"checkpoint sample images cost an evaluation image scaled to {sample_steps} steps (a checkpoint's "
            "are made in one call); their faces are scored beside the training, not counted"
        ),
        (
            f"the workspace needs about {human_size(candidates * timings.candidate_bytes)} "
            f"({candidates} candidate PNGs of {human_size(timings.candidate_bytes)})"
        ),
    ]
    if plan.together:
        assumptions.insert(
            1,
            f"Textual Inversion trains the {plan.groups} groups in one run: a step is one batch of every group's "
            "samples, timed as such",
        )
    if plan.workers:
        workers = f"{plan.workers} worker process{'es' * (plan.workers != 1)}"
        shared = f"the streaming engine does the CPU work ({duration(cpu_work)} a candidate) on {workers}"
        if plan.generates:
            shared += (
                f" while the generator ({duration(model_work)}) runs ahead: a candidate costs the slower of the two"
            )
        assumptions.insert(1, shared)
    if plan.enhances:
        assumptions.insert(
            1,
            "every candidate is enhanced; the miner skips enhancing faces far from the group, "
            "so mining is often faster than this",
        )
    if not plan.generates:
        assumptions.insert(1, f"candidates come from {plan.source}: the other tool's drawing time is not counted")
    return Estimate(
        rows=rows,
        assumptions=tuple(assumptions),
        candidates=candidates,
        workspace_bytes=candidates * timings.candidate_bytes,
    )
