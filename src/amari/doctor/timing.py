"""One candidate timed through every mining stage, one training step per method, one evaluation image.

Each stage runs once untimed first, so model loading and one-off kernel set-up (cuDNN autotuning,
lazy initialisation) are not counted; what is left is the cost the study pays again and again.
Faces are detected and described on a real face (the sample photo the demo ships) at the candidate's
size, because a random-weight model, like the demo's, draws no face to find.

With `timing_steps` below the config's step counts, generation runs `timing_steps` denoising steps and
is extrapolated linearly (the per-step cost is constant for a fixed size), which lets a CPU give a
figure for a 250-step sampler in minutes.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amari.doctor.plan import StudyPlan
from amari.models.inventory import human_size
from amari.storage.layout import DEFAULT_METHOD

Log = Callable[[str], None]


@dataclass(frozen=True)
class StageTime:
    """Seconds per `unit` of one stage; `seconds` is None when the study does not run the stage."""

    stage: str
    seconds: float | None
    unit: str
    note: str


@dataclass(frozen=True)
class Timings:
    stages: tuple[StageTime, ...]
    device: str
    candidate_bytes: int  # size of one written candidate PNG

    def seconds(self, stage: str) -> float | None:
        return next((s.seconds for s in self.stages if s.stage == stage), None)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(function: Callable[[], object], repeat_under: float = 1.0, repeats: int = 3) -> float:
    """Seconds `function` takes; a fast one runs up to `repeats` times and the best run counts, since
    other work on the machine only ever adds time."""
    best = float("inf")
    for _ in range(repeats):
        _sync()
        started = time.perf_counter()
        function()
        _sync()
        best = min(best, time.perf_counter() - started)
        if best >= repeat_under:
            break
    return best


def sample_face(width: int, height: int) -> np.ndarray:
    """The demo's sample person, cropped around the face and resized to width × height (RGB uint8)."""
    from PIL import Image

    from amari.study.demo import IDENTITY, SAMPLE, SAMPLE_FACES, face_crop

    with Image.open(SAMPLE) as photo:
        face = face_crop(photo.convert("RGB"), SAMPLE_FACES[IDENTITY])
    return np.asarray(face.resize((width, height), Image.LANCZOS))


# 1. Generation ------------------------------------------------------------------------------------


def time_generation(config, prompt: str, count: int, timing_steps: int | None) -> tuple[float, str]:
    """Seconds for one call of `count` images at `config`'s steps, and how that figure was found.

    With fewer `timing_steps`, the cost of one step is the median time between consecutive steps (a
    burst of other work on the machine moves one interval, not the median), and the rest of the call
    (prompt encoding, decoding the images) is what the timed call took beyond its steps.
    """
    from amari.generate import generate

    seeds = list(range(1, count + 1))
    generate(prompt, seeds=seeds, config=dataclasses.replace(config, steps=1), progress=False)  # load, warm up
    if timing_steps is None or timing_steps >= config.steps:
        return timed(lambda: generate(prompt, seeds=seeds, config=config, progress=False)), f"{config.steps} steps"
    steps = max(2, timing_steps)
    ends: list[float] = []

    def step_done(_step: int) -> None:
        _sync()
        ends.append(time.perf_counter())

    total = timed(
        lambda: generate(
            prompt, seeds=seeds, config=dataclasses.replace(config, steps=steps), progress=False, on_step=step_done
        ),
        repeats=1,
    )
    per_step = statistics.median(b - a for a, b in itertools.pairwise(ends))
    fixed = max(0.0, total - steps * per_step)
    return fixed + per_step * config.steps, (
        f"{steps} of {config.steps} steps timed ({per_step:.2f} s a step), the rest extrapolated"
    )


def image_size(config) -> tuple[int, int]:
    """(width, height) of the images `config` makes: its own, else its model's native size."""
    if config.width and config.height:
        return config.width, config.height
    from amari.generate import load_model

    native = load_model(config).native_size  # loaded once per process: the timed runs loaded it already
    return config.width or native, config.height or native


def generation_params(config, prompt: str) -> dict:
    """What a generated candidate's provenance records (the written PNG carries it)."""
    width, height = image_size(config)
    return {
        "prompt": prompt,
        "seed": 1,
        "steps": config.steps,
        "sampler": config.scheduler,
        "cfg_scale": config.guidance_scale,
        "width": width,
        "height": height,
        "model": "doctor",
    }


# 2. The mining stages -----------------------------------------------------------------------------

# A folder source's images come from another tool, at a size amari does not know: the study's 512 px.
FOLDER_SIZE = (512, 512)


def time_mining(plan: StudyPlan, timing_steps: int | None, folder: Path, log: Log) -> tuple[list[StageTime], int]:
    """generate → enhance → detect → descriptor → write for one candidate; returns the PNG's size too."""
    from amari.faces import descriptors as faces
    from amari.provenance.png import save_png
    from amari.storage.images import shrink_to
    from amari.storage.layout import PROVENANCE_REGISTRY

    rows = []
    generate = plan.generate
    if generate is not None:
        if plan.batch_by_memory:  # what the miner will choose on this machine (on a GPU, by its free memory)
            from amari.execution.memory import MINING_BATCH_CAP
            from amari.generate import pass_size

            generate = dataclasses.replace(generate, batch_size=pass_size(generate, MINING_BATCH_CAP, True)[0])
        batch, sampler = generate.batch_size, generate.scheduler
        log(f"timing generate ({sampler}, {batch} images per pass) ...")
        seconds, how = time_generation(generate, plan.prompt, batch, timing_steps)
        width, height = image_size(generate)
        rows.append(
            StageTime(
                "generate", seconds / batch, "candidate", f"{sampler}, {how}, batch of {batch} at {width}×{height}"
            )
        )
        params = generation_params(generate, plan.prompt)
    else:
        width, height = FOLDER_SIZE
        rows.append(StageTime("generate", None, "candidate", f"not run by amari: {plan.source} (another tool draws)"))
        params = {"prompt": plan.prompt, "width": width, "height": height, "model": "doctor"}
    candidate = sample_face(width, height)
    if plan.enhance is not None:
        from amari.enhance import Enhancer

        log("timing enhance ...")
        enhancer = Enhancer(plan.enhance)
        enhancer.enhance(sample_face(128, 128))  # loads both models and warms their kernels (a face to restore)
        result = {}
        seconds = timed(lambda: result.update(image=enhancer.enhance(candidate)))
        candidate = result["image"]
        models = (plan.enhance.upscaler, plan.enhance.face_restorer)
        names = " + ".join(Path(m).name for m in models if m) or "resize only"
        rows.append(
            StageTime(
                "enhance",
                seconds,
                "candidate",
                f"{names}, ×{plan.enhance.scale:g} to {candidate.shape[1]}×{candidate.shape[0]}",
            )
        )
    else:
        why = "enhance = false" if plan.generates else "the folder source does not enhance"
        rows.append(StageTime("enhance", None, "candidate", f"not configured ({why})"))
    log("timing detect and descriptor ...")
    settings = plan.faces
    faces.encode(sample_face(96, 96), settings)  # loads dlib's models
    # A real face at the candidate's final size: a random-weight model's output holds none to describe.
    candidate = sample_face(candidate.shape[1], candidate.shape[0])
    pixels = shrink_to(candidate, settings.max_side) if settings.max_side else candidate
    detect = timed(lambda: faces.detect(pixels, settings.detector, settings.upsample))
    encode = timed(lambda: faces.encode(pixels, settings))
    size = f"{pixels.shape[1]}×{pixels.shape[0]}"
    rows.append(
        StageTime(
            "detect",
            detect,
            "candidate",
            f"dlib {settings.detector.upper()}, upsampled {settings.upsample}×, on a face at {size}",
        )
    )
    rows.append(
        StageTime(
            "descriptor",
            max(0.0, encode - detect),
            "candidate",
            f"{settings.landmarks}-point landmarks + 128-d ResNet descriptor, "
            f"{settings.jitters} jitter{'s' * (settings.jitters != 1)}",
        )
    )
    target = folder / "candidate.png"
    registry = folder / PROVENANCE_REGISTRY  # the timing's fingerprints never go into the user's registry
    seconds = timed(lambda: save_png(candidate, target, params, registries=[registry]))
    written = target.stat().st_size
    rows.append(StageTime("write", seconds, "candidate", f"watermark + PNG with provenance ({human_size(written)})"))
    return rows, written


# 3. Training and evaluation -----------------------------------------------------------------------


def train_stage(method: str) -> str:
    """The stage-time row of one training step of `method` (Textual Inversion's keeps the plain name)."""
    return "train step" if method == DEFAULT_METHOD else f"train step ({method})"


def time_training_steps(plan: StudyPlan, folder: Path, log: Log) -> list[StageTime]:
    """One step of each method the study trains, at its training settings (each after one untimed step)."""
    from PIL import Image

    from amari.models.families.registry import native_size

    resolution = plan.train.resolution or native_size(plan.train.model)
    data = folder / "train-data"
    data.mkdir()
    Image.fromarray(sample_face(resolution, resolution)).save(data / "face.png")
    return [_time_training_step(plan, method, data, folder / f"train-{method}", log) for method in plan.methods]


def _time_training_step(plan: StudyPlan, method: str, data: Path, out: Path, log: Log) -> StageTime:
    """One step of `method`; Textual Inversion's of every group at once when the study trains them so."""
    from amari.models.families.registry import native_size
    from amari.storage.layout import TrainLayout
    from amari.train import METHOD_NAMES, Group
    from amari.train.loop import train_step
    from amari.train.together import joint_step, prepare_runs

    config = plan.train.replace(
        method=method,
        methods=None,
        max_steps=2,
        checkpoint_every=2,
        sample_seeds=(),
        reference_group=None,
        resolution=plan.train.resolution or native_size(plan.train.model),
    )
    groups = plan.groups if method == DEFAULT_METHOD and plan.together else 1
    log(f"timing one {method} training step ({config.resolution} px, batch {config.batch_size} × {groups}) ...")
    layouts = [TrainLayout(data, out / f"g{index}") for index in range(groups)]
    runs = None
    if groups > 1:  # one process: the run of every group is one batch
        quiet = [Group(f"g{i}", config, layout) for i, layout in enumerate(layouts)]
        runs, optimizer = prepare_runs(quiet, lambda message: None)
    if runs is not None:
        everyone = list(range(groups))
        joint_step(runs, optimizer, everyone, [0] * groups)
        seconds = timed(lambda: joint_step(runs, optimizer, everyone, [1] * groups))
        how, accelerator = f", {groups} groups at once", runs[0].accelerator
    else:
        from amari.train.setup import prepare_run

        run = prepare_run(config, layouts[0])
        train_step(run, 0)
        seconds = timed(lambda: train_step(run, 1))
        how, accelerator = "", run.accelerator
    lora = f" rank {config.lora_rank}" if config.trains_lora else ""
    return StageTime(
        train_stage(method),
        seconds,
        "step",
        f"{METHOD_NAMES[method]}{lora}{how}, batch {config.batch_size} × "
        f"{config.grad_accum} accumulation at {config.resolution} px, "
        f"{accelerator.mixed_precision} mixed precision",
    )


def time_evaluation_image(plan: StudyPlan, timing_steps: int | None, log: Log) -> StageTime:
    """One grid image: generated at the evaluation's settings, then its face found and described."""
    from amari.faces import descriptors as faces
    from amari.generate import pass_size

    size = plan.eval_batch or pass_size(plan.evaluate, plan.commands)[0]  # what the grid will use here
    config = dataclasses.replace(plan.evaluate, batch_size=size)
    log(f"timing one evaluation image ({config.scheduler}, {size} per pass) ...")
    seconds, how = time_generation(config, "a photo of a woman", size, timing_steps)
    seconds /= size
    face = sample_face(*image_size(config))
    scoring = timed(lambda: faces.encode(face))
    return StageTime(
        "evaluate image",
        seconds + scoring,
        "image",
        f"{config.scheduler}, {how}, {size} per pass ({seconds:.2f} s an image) + face and descriptor "
        f"({scoring:.2f} s)",
    )


def time_study(plan: StudyPlan, timing_steps: int | None = None, log: Log | None = None) -> Timings:
    """Every timing the estimate needs, in the order the study runs its stages."""
    from amari.execution.devices import resolve_device

    log = log or (lambda message: None)
    device = resolve_device(plan.device)
    with tempfile.TemporaryDirectory(prefix="amari-doctor-") as name:
        folder = Path(name)
        mining, written = time_mining(plan, timing_steps, folder, log)
        training = time_training_steps(plan, folder, log)
        evaluation = time_evaluation_image(plan, timing_steps, log)
    return Timings(stages=(*mining, *training, evaluation), device=device, candidate_bytes=written)
