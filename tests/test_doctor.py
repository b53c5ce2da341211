"""`amari doctor`: the machine, the models, one timed candidate per stage, and the study's time estimate."""

from __future__ import annotations

import dataclasses
import math

import pytest

from amari.doctor.estimate import ACCEPTANCE_2022, estimate
from amari.doctor.plan import plan_from_study
from amari.doctor.render import duration, table_text
from amari.doctor.timing import StageTime, Timings
from amari.study.config import load_study
from amari.study.demo import write_demo
from test_inventory import STUDY_2022, amari


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny_sd):
    return write_demo(tmp_path_factory.mktemp("demo") / "demo", model=tiny_sd)


def section(output: str, title: str) -> list[str]:
    """The lines of one table, from its title to the blank line after it."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


@pytest.mark.slow
def test_doctor_on_the_demo_prints_every_table_and_a_time_estimate(demo):
    done = amari("doctor", str(demo))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    environment = "\n".join(section(out, "environment"))
    for check in ("python", "torch", "GPU", "SDPA", "dlib", "disk: workspace", "disk: model cache"):
        assert f"\n{check} " in environment
    models = "\n".join(section(out, "models"))
    assert "tiny-sd" in models and " present " in models and "not used" in models
    stages = {line.split()[0]: line for line in section(out, "stage times on CPU")[3:]}
    for stage in ("detect", "descriptor", "write", "train", "evaluate"):
        assert stages[stage].split()[1] != "-", stages[stage]
    assert "not run by amari" in stages["generate"] and "not configured" in stages["enhance"]
    estimate_rows = "\n".join(section(out, "estimate for demo"))
    assert "mine to 3 images" in estimate_rows and "train 2 groups" in estimate_rows
    assert "evaluate 12 images" in estimate_rows and "whole study" in estimate_rows
    assert "assumptions:" in out and "7.4% of candidates join the sim-group" in out


def test_doctor_exits_non_zero_naming_a_missing_model(demo, tmp_path):
    gone = tmp_path / "no-such-model"
    config = tmp_path / "study.toml"
    config.write_text(_with_model(demo.read_text(), str(gone)))
    done = amari("doctor", str(config))
    assert done.returncode == 1
    assert str(gone) in done.stderr and "missing" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "stage times: not measured (a model is missing)" in done.stdout


def _with_model(text: str, model: str) -> str:
    lines = [f'model = "{model}"' if line.startswith("model = ") else line for line in text.splitlines()]
    return "\n".join(lines) + "\n"


def test_doctor_names_the_enhancement_models_a_generating_study_lacks():
    done = amari("doctor", str(STUDY_2022), "--no-timing", env={"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1
    error = done.stderr.strip()
    for name in ("CompVis/stable-diffusion-v1-4", "RealESRGAN_x4plus", "GFPGANv1.4"):
        assert name in error
    assert f"amari models pull {STUDY_2022}" in error


def test_the_estimate_is_the_stage_times_times_the_study_counts():
    plan = dataclasses.replace(plan_from_study(load_study(STUDY_2022)), workers=0)  # the serial engine
    assert plan.generate.steps == 250 and plan.generate.batch_size == 4 and plan.enhance.scale == 2.0
    assert plan.evaluate.scheduler == "k_lms" and plan.train.max_steps == 15500
    seconds = {
        "generate": 2.0,
        "enhance": 1.0,
        "detect": 0.25,
        "descriptor": 0.125,
        "write": 0.125,
        "train step": 0.5,
        "evaluate image": 5.0,
    }
    timings = Timings(
        tuple(StageTime(stage, value, "x", "") for stage, value in seconds.items()),
        device="cuda",
        candidate_bytes=2_000_000,
    )
    result = estimate(plan, timings)
    assert result.candidates == 4200 == math.ceil(312 / ACCEPTANCE_2022)
    assert result.mining_seconds == 4200 * 3.5
    # The 3 groups at once: 15,500 steps × 0.5 s (a step of all three), and each group's 31 checkpoints ×
    # 5 sample seeds × an image of 50 of 250 steps.
    assert result.rows[1].seconds == pytest.approx(15500 * 0.5 + 3 * 31 * 5 * 5.0 * 50 / 250)
    assert any("trains the 3 groups in one run" in a for a in result.assumptions)
    assert result.rows[2].seconds == 80 * 5.0  # 4 prompts × 5 commands × (3 groups + control)
    assert result.total_seconds == pytest.approx(sum(r.seconds for r in result.rows[:3]))
    assert result.workspace_bytes == 4200 * 2_000_000
    assert any("every candidate is enhanced" in a for a in result.assumptions)
    halved = estimate(plan, timings, acceptance=ACCEPTANCE_2022 * 2)
    assert halved.candidates == 2100
    # Streaming: the workers' CPU work (0.5 s) runs beside the generator's 3 s, which alone sets the pace.
    streaming = estimate(dataclasses.replace(plan, workers=2), timings)
    assert streaming.mining_seconds == 4200 * 3.0
    assert any("2 worker processes" in a for a in streaming.assumptions)
    # A folder source: amari draws nothing, and the CPU work is shared among the workers.
    folder = dataclasses.replace(plan, workers=2, generate=None, enhance=None, source="folder:/drawn")
    drawn = Timings(tuple(s for s in timings.stages if s.stage not in ("generate", "enhance")), "cpu", 2_000_000)
    assert estimate(folder, drawn).mining_seconds == 4200 * 0.5 / 2


def test_durations_and_tables_read_plainly():
    assert [duration(s) for s in (0.0123, 0.5, 42, 600, 3 * 3600 + 12 * 60, 50 * 3600)] == [
        "12.3 ms",
        "0.50 s",
        "42.0 s",
        "10 min",
        "3 h 12 min",
        "2 d 2 h",
    ]
    assert table_text(["a", "b"], [["x", "y|z"]], markdown=True) == "| a | b |\n|---|---|\n| x | y\\|z |"
    assert table_text(["stage", "time"], [["generate", "1 s"]]).splitlines()[2] == "generate  1 s"


def test_generation_time_is_extrapolated_from_a_few_timed_steps(tiny_sd):
    from amari.doctor.timing import time_generation
    from amari.generate import GenerateConfig
    from amari.generate.run import generate

    config = GenerateConfig(model=str(tiny_sd), scheduler="ddim", steps=12, width=64, height=64, device="cpu")
    steps = []
    generate(
        "a photo of a woman",
        seeds=[1],
        config=dataclasses.replace(config, steps=3),
        progress=False,
        on_step=steps.append,
    )
    assert steps == [0, 1, 2]
    seconds, how = time_generation(config, "a photo of a woman", 1, timing_steps=3)
    assert seconds > 0 and how.startswith("3 of 12 steps timed") and "extrapolated" in how
    measured, how = time_generation(config, "a photo of a woman", 1, timing_steps=None)
    assert how == "12 steps" and measured > 0


def test_a_study_of_several_methods_is_estimated_per_method():
    plan = dataclasses.replace(plan_from_study(load_study(STUDY_2022.with_name("amari-2026.toml"))), workers=0)
    assert plan.methods == ("ti", "lora", "pivotal") and plan.groups == 6
    assert plan.eval_images == 4 * 5 * (6 * 3 + 1)  # prompts × commands × (groups × methods + control)
    steps = {"train step": 0.5, "train step (lora)": 0.75, "train step (pivotal)": 1.0}
    timings = Timings(
        tuple(StageTime(stage, value, "x", "") for stage, value in {**steps, "evaluate image": 5.0}.items()),
        device="cuda",
        candidate_bytes=1,
    )
    training = estimate(plan, timings).rows[1]
    samples = 31 * 5 * 5.0 * 50 / 250  # 31 checkpoints × 5 sample seeds × an image of 50 of 250 steps
    # Textual Inversion's six groups in one run; LoRA and pivotal tuning one group after another.
    assert training.seconds == pytest.approx(15500 * 0.5 + 6 * 15500 * (0.75 + 1.0) + 6 * 3 * samples)
    assert training.what == "train 6 groups × 3 methods"
    assert (
        "15500 steps × (0.50 s ti, 6 groups at once + 6 × 0.75 s lora + 6 × 1.0 s pivotal)" in training.how
        and "18 × 155 sample images" in training.how
    )


def test_each_method_of_the_study_has_its_training_step_timed(demo, tmp_path, one_thread):
    from amari.doctor.timing import time_training_steps
    from amari.study.config import replace

    plan = plan_from_study(replace(load_study(demo), "train", methods=("ti", "lora", "pivotal")))
    rows = time_training_steps(plan, tmp_path, log=lambda message: None)
    assert [row.stage for row in rows] == ["train step", "train step (lora)", "train step (pivotal)"]
    assert all(row.seconds > 0 and row.unit == "step" for row in rows)
    assert rows[0].note.startswith("Textual Inversion, 2 groups at once, batch")  # the demo's two, as it trains them
    assert rows[1].note.startswith("LoRA rank 4, batch")
