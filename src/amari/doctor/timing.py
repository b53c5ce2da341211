"""One candidate timed through every mining stage, one training step, one evaluation image.

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
from amari.doctor.render import human_size

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

    from amari.demo import IDENTITY, SAMPLE, SAMPLE_FACES, face_crop

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
    from amari.generate.run import generate

    seeds = list(range(1, count + 1))
    generate(prompt, seeds=seeds, config=dataclasses.replace(config, steps=1), progress=False)  # load, warm up
    if timing_steps is None or timing_steps >= config.steps:
        return timed(lambda: generate(prompt, seeds=seeds, config=config, progress=False)), f"{config.steps} steps"
    steps = max(2, timing_steps)
    ends: list[float] = []

    def step_done(_step: int) -> None:
        _sync()
        ends.append(time.perf_counter())

    total = timed(lambda: generate(prompt, seeds=seeds, config=dataclasses.replace(config, steps=steps),
                                   progress=False, on_step=step_done), repeats=1)
    per_step = statistics.median(b - a for a, b in itertools.pairwise(ends))
    fixed = max(0.0, total - steps * per_step)
    return fixed + per_step * config.steps, (f"{steps} of {config.steps} steps timed ({per_step:.2f} s a step), "
                                             f"the rest extrapolated")


def _generate_config(plan: StudyPlan, evaluation: bool):
    from amari.generate.config import GenerateConfig

    if evaluation:
        return GenerateConfig(model=plan.model, model_config=plan.model_config, scheduler=plan.eval_sampler,
                              steps=plan.eval_steps, guidance_scale=plan.eval_guidance, width=plan.eval_width,
                              height=plan.eval_height, batch_size=1, device=plan.device)
    return GenerateConfig(model=plan.model, model_config=plan.model_config, scheduler=plan.sampler, steps=plan.steps,
                          guidance_scale=plan.guidance, width=plan.width, height=plan.height,
                          batch_size=plan.images_per_call, device=plan.device, eta=0.0)


# 2. The mining stages -----------------------------------------------------------------------------

def time_mining(plan: StudyPlan, timing_steps: int | None, folder: Path, log: Log) -> tuple[list[StageTime], int]:
    """generate → enhance → detect → descriptor → write for one candidate; returns the PNG's size too."""
    from amari import faces
    from amari.provenance import save_png

    rows = []
    if plan.generates:
        log(f"timing generate ({plan.sampler}, {plan.images_per_call} images of {plan.width}×{plan.height}) ...")
        seconds, how = time_generation(_generate_config(plan, False), plan.prompt, plan.images_per_call, timing_steps)
        rows.append(StageTime("generate", seconds / plan.images_per_call, "candidate",
                              f"{plan.sampler}, {how}, batch of {plan.images_per_call} at {plan.width}×{plan.height}"))
    else:
        rows.append(StageTime("generate", None, "candidate", f"not run by amari: {plan.source} (another tool draws)"))
    candidate = sample_face(plan.width, plan.height)
    if plan.enhances:
        from amari.enhance import EnhanceConfig, Enhancer

        log("timing enhance ...")
        enhancer = Enhancer(EnhanceConfig(upscaler=plan.upscaler, face_restorer=plan.face_restorer,
                                          scale=plan.scale, device=plan.device))
        enhancer.enhance(sample_face(128, 128))  # loads both models and warms their kernels (a face to restore)
        result = {}
        seconds = timed(lambda: result.update(image=enhancer.enhance(candidate)))
        candidate = result["image"]
        names = " + ".join(Path(m).name for m in (plan.upscaler, plan.face_restorer) if m) or "resize only"
        rows.append(StageTime("enhance", seconds, "candidate", f"{names}, ×{plan.scale:g} to "
                                                               f"{candidate.shape[1]}×{candidate.shape[0]}"))
    else:
        why = "enhance = false" if plan.generates else "the folder source does not enhance"
        rows.append(StageTime("enhance", None, "candidate", f"not configured ({why})"))
    log("timing detect and descriptor ...")
    faces.encode(sample_face(96, 96))  # loads dlib's models
    # A real face at the candidate's final size: a random-weight model's output holds none to describe.
    candidate = sample_face(candidate.shape[1], candidate.shape[0])
    detect = timed(lambda: faces.detect(candidate, "hog", 1))
    encode = timed(lambda: faces.encode(candidate))
    size = f"{candidate.shape[1]}×{candidate.shape[0]}"
    rows.append(StageTime("detect", detect, "candidate", f"dlib HOG, upsampled once, on a face at {size}"))
    rows.append(StageTime("descriptor", max(0.0, encode - detect), "candidate",
                          "5-point landmarks + 128-d ResNet descriptor, 1 jitter"))
    target = folder / "candidate.png"
    params = {"prompt": plan.prompt, "seed": 1, "steps": plan.steps, "sampler": plan.sampler,
              "cfg_scale": plan.guidance, "width": plan.width, "height": plan.height, "model": "doctor"}
    seconds = timed(lambda: save_png(candidate, target, params))
    written = target.stat().st_size
    rows.append(StageTime("write", seconds, "candidate", f"watermark + PNG with provenance ({human_size(written)})"))
    return rows, written


# 3. Training and evaluation -----------------------------------------------------------------------

def time_training_step(plan: StudyPlan, folder: Path, log: Log) -> StageTime:
    """One Textual Inversion step at the study's resolution and batch (after one untimed step)."""
    from PIL import Image

    from amari.train import TrainConfig
    from amari.train.loop import prepare_run, train_step

    values = dict(plan.train)
    resolution = values["resolution"]
    data = folder / "train-data"
    data.mkdir()
    Image.fromarray(sample_face(resolution, resolution)).save(data / "face.png")
    values.update(max_steps=2, checkpoint_every=2, sample_seeds=())
    log(f"timing one training step ({resolution} px, batch {values['batch_size']}) ...")
    run = prepare_run(TrainConfig(data_dir=data, out_dir=folder / "train-out", model=plan.model, **values))
    train_step(run, 0)
    seconds = timed(lambda: train_step(run, 1))
    return StageTime("train step", seconds, "step", f"Textual Inversion, batch {values['batch_size']} × "
                                                    f"{values['grad_accum']} accumulation at {resolution} px, "
                                                    f"{run.accelerator.mixed_precision} mixed precision")


def time_evaluation_image(plan: StudyPlan, timing_steps: int | None, log: Log) -> StageTime:
    """One grid image: generated at the evaluation's settings, then its face found and described."""
    from amari import faces

    log(f"timing one evaluation image ({plan.eval_sampler}, {plan.eval_width}×{plan.eval_height}) ...")
    seconds, how = time_generation(_generate_config(plan, True), "a photo of a woman", 1, timing_steps)
    face = sample_face(plan.eval_width, plan.eval_height)
    scoring = timed(lambda: faces.encode(face))
    return StageTime("evaluate image", seconds + scoring, "image",
                     f"{plan.eval_sampler}, {how} ({seconds:.2f} s) + face and descriptor ({scoring:.2f} s)")


def time_study(plan: StudyPlan, timing_steps: int | None = None, log: Log | None = None) -> Timings:
    """Every timing the estimate needs, in the order the study runs its stages."""
    from amari.generate.pipeline import resolve_device

    log = log or (lambda message: None)
    device = resolve_device(plan.device)
    with tempfile.TemporaryDirectory(prefix="amari-doctor-") as name:
        folder = Path(name)
        mining, written = time_mining(plan, timing_steps, folder, log)
        training = time_training_step(plan, folder, log)
        evaluation = time_evaluation_image(plan, timing_steps, log)
    return Timings(stages=(*mining, training, evaluation), device=device, candidate_bytes=written)
