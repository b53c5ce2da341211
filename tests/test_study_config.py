"""Study configs: the 2022 study as data, and clear errors for configs that cannot work."""

from pathlib import Path

import pytest

from amari.cli import main
from amari.errors import UsageError
from amari.evaluate import CONTROL, plan_cells
from amari.study.config import load_study, study_from_dict
from amari.study.stages import STEPS
from amari.study.stages import stage_fingerprints as step_fingerprints

REPO = Path(__file__).resolve().parents[1]
STUDY_2022 = REPO / "configs" / "amari-2022.toml"
STUDY_2026 = REPO / "configs" / "amari-2026.toml"


def minimal(**sections):
    data = {"evaluate": {"prompts": ["a photo of amari"], "commands": [{"name": "sd1", "seed": 1}]}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def test_the_2022_study_holds_the_original_numbers(tmp_path):
    config = load_study(STUDY_2022, base=tmp_path)
    ev, mine, train = config.evaluate, config.mine, config.train
    assert ev.prompts == (
        "a photo of amari",
        "a photograph of amari walking outside",
        "a side profile image of amari",
        "an extremely detailed photograph of amari",
    )
    assert [(c.name, c.seed) for c in ev.commands] == [
        ("sd1", 335728730),
        ("sd2", 691007764),
        ("sd3", 1295044561),
        ("sd4", 2565311105),
        ("sd5", 1995053400),
    ]
    assert (ev.sampler, ev.steps, ev.guidance, ev.width, ev.height) == ("k_lms", 250, 7.5, 512, 512)
    assert [(g.name, g.images) for g in config.select.groups] == [("a_312", None), ("b_11", 11), ("c_4", 4)]
    assert config.evaluated_groups == ("a_312", "b_11", "c_4", CONTROL)
    assert len(plan_cells(config.evaluate)) == 80
    assert (mine.sampler, mine.steps, mine.guidance, mine.width, mine.images_per_call) == ("ddim", 250, 8.2653, 512, 4)
    assert (mine.tolerance, mine.almost_band, mine.target, mine.scale) == (0.40, 0.10, 312, 2.0)
    assert mine.upscaler == "RealESRGAN_x4plus" and mine.face_restorer.startswith("GFPGAN")
    assert (config.study.model, config.study.subject) == ("CompVis/stable-diffusion-v1-4", "amari")
    assert (train.token, train.init_word, train.num_vectors, train.repeats) == ("*", "woman", 1, 100)
    assert (train.max_steps, train.checkpoint_every, train.resolution) == (15500, 500, 512)
    assert config.layout.root == tmp_path / "amari-2022"


def test_the_2022_grid_is_textual_inversion_alone_as_it_was(tmp_path):
    config = load_study(STUDY_2022, base=tmp_path)
    assert config.train.study_methods() == ("ti",) and config.evaluate.methods == ("ti",)
    assert [c.image for c in plan_cells(config.evaluate)][:4] == [
        f"images/{g}/p1-a_photo_of_amari-sd1.png" for g in ("a_312", "b_11", "c_4", "ctrl")
    ]
    assert config.layout.train("a_312").out == tmp_path / "amari-2022" / "train" / "a_312"


def test_the_2026_study_crosses_three_methods_with_six_sizes(tmp_path):
    config = load_study(STUDY_2026, base=tmp_path)
    sizes = [(g.name, g.images) for g in config.select.groups]
    assert sizes == [("n_312", None), ("n_100", 100), ("n_32", 32), ("n_11", 11), ("n_4", 4), ("n_1", 1)]
    assert config.train.study_methods() == ("ti", "lora", "pivotal") == config.evaluate.methods
    assert (config.train.lora_rank, config.train.alpha, config.train.unet_lr) == (4, 4.0, 1e-4)
    # The 2022 study's grid for each of 3 methods × 6 groups, and the control: 4 prompts × 5 seeds × 19.
    assert len(plan_cells(config.evaluate)) == 4 * 5 * 19
    assert config.evaluate.evaluated_units[-1] == ("", CONTROL)
    assert (config.evaluate.prompts, config.evaluate.commands) == (
        load_study(STUDY_2022, base=tmp_path).evaluate.prompts,
        load_study(STUDY_2022, base=tmp_path).evaluate.commands,
    )
    assert config.layout.train("n_4", "pivotal").out == tmp_path / "amari-2026" / "train" / "pivotal" / "n_4"


def test_the_2026_design_runs_on_sdxl_and_flux_at_their_own_settings(tmp_path):
    """The same groups, prompts and seeds on SDXL and FLUX.1 [schnell], each at its native size and sampler;
    FLUX.1 offers no Textual Inversion, so its grid is the LoRA's alone."""
    base = load_study(STUDY_2026, base=tmp_path)
    expected = {
        "sdxl": ("stabilityai/stable-diffusion-xl-base-1.0", ("ti", "lora", "pivotal"), "dpmpp_2m", 30, 5.0),
        "flux": ("black-forest-labs/FLUX.1-schnell", ("lora",), "flow_euler", 4, 0.0),
    }
    for family, (model, methods, sampler, steps, guidance) in expected.items():
        config = load_study(STUDY_2026.with_name(f"amari-2026-{family}.toml"), base=tmp_path)
        ev = config.evaluate
        assert config.study.model == model and config.train.study_methods() == methods == ev.methods
        assert (ev.sampler, ev.steps, ev.guidance, ev.width, ev.height) == (sampler, steps, guidance, 1024, 1024)
        assert (config.mine.sampler, config.mine.enhancement, config.prepare.size) == (sampler, "restore", 1024)
        assert (ev.prompts, ev.commands) == (base.evaluate.prompts, base.evaluate.commands)
        assert [g.images for g in config.select.groups] == [g.images for g in base.select.groups]
        assert len(plan_cells(ev)) == 4 * 5 * (6 * len(methods) + 1)
    assert load_study(STUDY_2026.with_name("amari-2026-sdxl.toml"), base=tmp_path).mine.vae.endswith("fp16-fix")


def test_the_2022_training_arithmetic_matches_the_original(tmp_path):
    from amari.train.config import TrainConfig, epoch_at, learning_rate, samples_per_step

    train = load_study(STUDY_2022, base=tmp_path).train
    config = TrainConfig(
        base_lr=train.base_lr, scale_lr=train.scale_lr, batch_size=train.batch_size, grad_accum=train.grad_accum
    )
    assert learning_rate(config, processes=1) == pytest.approx(0.01)  # two GPUs × batch 1 in 2022
    per_step = samples_per_step(config, processes=1)
    assert epoch_at(train.max_steps, per_step, 4, train.repeats) == pytest.approx(77.5)
    assert epoch_at(train.max_steps, per_step, 312, train.repeats) == pytest.approx(1.0, abs=0.01)


def test_defaults_fill_what_a_config_leaves_out(tmp_path):
    config = study_from_dict(minimal(), base=tmp_path)
    assert config.evaluate.sampler == "k_lms" and config.evaluate.steps == 250 and config.evaluate.control
    assert [g.name for g in config.select.groups] == ["a_312", "b_11", "c_4"]
    assert config.train.init_word == "woman" and config.mine.tolerance == 0.40
    assert config.layout.results.root == tmp_path / "study" / "results"  # OUT defaults to the study's name


def test_relative_paths_are_taken_from_the_base_folder(tmp_path):
    config = study_from_dict(
        minimal(
            study={"out": "runs/x"},
            mine={"reference": ["faces/a.png"], "source": "folder:incoming"},
            evaluate={
                "sim_group": "/abs/group",
                "arcface_model": "m/arc.onnx",
                "embeddings": {"b_11": "e/b.safetensors"},
            },
        ),
        base=tmp_path,
    )
    assert config.study.out == tmp_path / "runs" / "x"
    assert config.mine.reference == (tmp_path / "faces" / "a.png",)
    assert config.mine.source == f"folder:{tmp_path / 'incoming'}"
    assert config.evaluate.sim_group == Path("/abs/group")
    assert config.evaluate.arcface_model == tmp_path / "m" / "arc.onnx"
    assert config.evaluate.embedding_for("b_11") == tmp_path / "e" / "b.safetensors"
    assert config.evaluate.embedding_for("a_312") is None


@pytest.mark.parametrize(
    "data, message",
    [
        ({"evalute": {}}, "unknown table(s) evalute"),
        (minimal(evaluate={"sampler_name": "k_lms"}), "[evaluate] unknown key(s) sampler_name"),
        (minimal(evaluate={"steps": "250"}), "evaluate.steps must be a whole number"),
        (minimal(evaluate={"steps": 0}), "steps must be positive"),
        (minimal(evaluate={"guidance": True}), "evaluate.guidance must be a number"),
        (minimal(evaluate={"sampler": "k_euler_xyz"}), "unknown sampler 'k_euler_xyz'"),
        (minimal(evaluate={"width": 500}), "multiples of 8"),
        (minimal(evaluate={"prompts": ["a photo of a woman"]}), "does not contain the subject word 'amari'"),
        (minimal(evaluate={"commands": [{"name": "sd1"}]}), "missing key(s) seed"),
        (minimal(evaluate={"commands": [{"name": "sd1", "seed": 1}, {"name": "sd1", "seed": 2}]}), "same name"),
        (minimal(evaluate={"groups": ["z_9"]}), "are not training groups"),
        (minimal(evaluate={"embeddings": {"z_9": "e.safetensors"}}), "not a training group"),
        (minimal(select={"groups": [{"name": "a", "images": "some"}]}), 'must be a whole number or "all"'),
        (minimal(select={"groups": [{"name": "ctrl"}]}), "control group's name"),
        (minimal(select={"groups": [{"name": "a"}, {"name": "a", "images": 2}]}), "same name"),
        (minimal(select={"groups": []}), "no training groups"),
        (minimal(mine={"source": "camera"}), "source must be 'diffusers' or 'folder:PATH'"),
        (minimal(train={"lr_schedule": "sometimes"}), "[train] unknown --lr-schedule 'sometimes'"),
        (minimal(train={"init_word": "two words"}), "init_word 'two words' must be one word"),
        (minimal(study={"subject": "a b"}), "must be one word"),
        (minimal(study={"demo": "yes"}), "study.demo must be true or false"),
        (minimal(evaluate={"demo": True}), "[evaluate] demo: set by the study from [study]"),
        ({"study": []}, "study must be a table"),
    ],
)
def test_bad_configs_fail_with_the_table_and_key_named(tmp_path, data, message):
    with pytest.raises(UsageError) as caught:
        study_from_dict(data, base=tmp_path)
    assert message in str(caught.value)


def test_the_demo_flag_is_the_studys_and_reaches_the_evaluation(tmp_path):
    assert not study_from_dict(minimal(), base=tmp_path).evaluate.demo
    config = study_from_dict(minimal(study={"demo": True}), base=tmp_path)
    assert config.study.demo and config.evaluate.demo  # the evaluation's manifest tells the report


def test_unreadable_files_are_usage_errors(tmp_path, capsys):
    with pytest.raises(UsageError, match="not found"):
        load_study(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[study\nname = 1\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_study(broken)
    typo = tmp_path / "typo.toml"
    typo.write_text('[evaluate]\nprompts = ["a photo of amari"]\nstep = 3\n')
    assert main(["study", str(typo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("amari study: error: [evaluate] unknown key(s) step")


def test_a_step_is_redone_when_its_settings_or_an_earlier_steps_change(tmp_path):
    base = study_from_dict(minimal(), base=tmp_path)
    before = step_fingerprints(base)
    assert set(before) == set(STEPS)
    after_train = step_fingerprints(study_from_dict(minimal(train={"max_steps": 10}), base=tmp_path))
    changed = {step for step in STEPS if before[step] != after_train[step]}
    assert changed == {"train", "evaluate", "report"}
    after_report = step_fingerprints(study_from_dict(minimal(report={"thumbnail": 128}), base=tmp_path))
    assert {step for step in STEPS if before[step] != after_report[step]} == {"report"}
    after_mine = step_fingerprints(study_from_dict(minimal(mine={"target": 50}), base=tmp_path))
    assert {step for step in STEPS if before[step] != after_mine[step]} == set(STEPS)


def test_the_miner_gets_the_2022_mining_settings(tmp_path):
    mine = load_study(STUDY_2022, base=tmp_path).mine
    assert mine.source == "diffusers" and mine.policy().target == 312
    assert (mine.policy().stop_average, mine.policy().almost_band) == (0.40, 0.10)
    generate = mine.generate_config()
    assert (generate.model, generate.scheduler, generate.steps) == ("CompVis/stable-diffusion-v1-4", "ddim", 250)
    assert (generate.guidance_scale, generate.width, generate.height, generate.batch_size) == (8.2653, 512, 512, 4)
    enhance = mine.enhance_config()
    assert (enhance.upscaler, enhance.face_restorer, enhance.scale) == ("RealESRGAN_x4plus", "GFPGANv1.4", 2.0)
    plain = study_from_dict(minimal(mine={"enhance": False}), base=tmp_path).mine
    assert plain.enhance_config() is None


def test_a_study_refines_only_when_its_refine_table_asks_for_rounds(tmp_path):
    from amari.study.stages import STAGES, stage_units

    refine = next(stage for stage in STAGES if stage.name == "refine")
    base = study_from_dict(minimal(), base=tmp_path)
    assert base.refine.rounds == 0 and not refine.wanted(base)
    before = step_fingerprints(base)
    assert step_fingerprints(study_from_dict(minimal(refine={"batches": 3}), base=tmp_path)) == before
    refined = study_from_dict(minimal(refine={"rounds": 2}), base=tmp_path)
    assert refine.wanted(refined) and stage_units(refine, refined) == [("refine", None)]
    after = step_fingerprints(refined)
    assert {step for step in STEPS if before[step] != after[step]} == set(STEPS) - {"mine", "audit"}
