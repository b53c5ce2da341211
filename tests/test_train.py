"""amari train: settings arithmetic, data draws, file formats, checkpoints, and short real runs on a tiny
random-weight Stable Diffusion built locally."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance
from safetensors import safe_open

from amari.cli import main
from amari.errors import ImageError, ModelError, UsageError, WorkspaceError
from amari.storage.layout import TrainLayout
from amari.train import checkpoints as ckpt
from amari.train.config import (
    TrainConfig,
    checkpoint_steps,
    epoch_at,
    learning_rate,
    lr_factor,
    read_templates,
    samples_per_step,
)
from amari.train.data import OBJECT_TEMPLATES, draw, load_training_images, sample_index, square_resize
from amari.train.formats import DIFFUSERS_FILE, load_embedding, save_embedding

# Face boxes (top, right, bottom, left) of three people in t1.jpg.
T1_FACES = [(283, 1226, 390, 1118), (283, 175, 390, 67), (367, 832, 474, 724)]


def face_crop(data_dir: Path, index: int, half: int = 110, wide: int = 0) -> Image.Image:
    top, right, bottom, left = T1_FACES[index]
    cx, cy = (left + right) // 2, (top + bottom) // 2
    return (
        Image.open(data_dir / "t1.jpg").convert("RGB").crop((cx - half - wide, cy - half, cx + half + wide, cy + half))
    )


@pytest.fixture(scope="session")
def train_images(tmp_path_factory, data_dir) -> Path:
    folder = tmp_path_factory.mktemp("train-images")
    face_crop(data_dir, 0).save(folder / "a.png")
    face_crop(data_dir, 1, wide=40).save(folder / "b.jpg")  # not square: centre-cropped
    face_crop(data_dir, 2).save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="session")
def reference_group(tmp_path_factory, data_dir) -> Path:
    folder = tmp_path_factory.mktemp("reference")
    base = face_crop(data_dir, 0, half=140)
    base.save(folder / "r1.png")
    ImageEnhance.Brightness(base).enhance(1.1).save(folder / "r2.png")
    return folder


# Settings arithmetic ------------------------------------------------------------------------------


def test_epoch_column_matches_the_study():
    config = TrainConfig()
    per_step = samples_per_step(config, processes=2)
    assert epoch_at(15_600, per_step, images=312, repeats=100) == 1.0
    assert epoch_at(15_500, per_step, images=4, repeats=100) == 77.5
    assert epoch_at(15_500, per_step, images=11, repeats=100) == pytest.approx(28.18, abs=0.01)
    assert epoch_at(100, samples_per_step(config, processes=1), images=4, repeats=100) == 0.25


def test_learning_rate_scales_with_processes_batch_and_accumulation():
    assert learning_rate(TrainConfig(), processes=2) == pytest.approx(0.01)
    assert learning_rate(TrainConfig(batch_size=2, grad_accum=3), 2) == pytest.approx(0.06)
    assert learning_rate(TrainConfig(scale_lr=False, batch_size=4), 2) == 0.005


def test_lr_schedules_and_checkpoint_steps():
    assert lr_factor(0, "constant", 0, 100) == 1.0
    assert [lr_factor(s, "constant_with_warmup", 4, 100) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(50, "linear", 0, 100) == pytest.approx(0.5)
    assert lr_factor(100, "cosine", 0, 100) == pytest.approx(0.0)
    assert checkpoint_steps(15_500, 500)[:2] == [500, 1000] and checkpoint_steps(15_500, 500)[-1] == 15_500
    assert checkpoint_steps(7, 3) == [3, 6, 7]


def test_defaults_are_the_studys():
    from amari.models.families.registry import native_size

    config = TrainConfig()
    assert (config.token, config.init_word, config.num_vectors) == ("*", "woman", 1)
    assert config.resolution is None and native_size(config.model) == 512  # the model's native size: SD 1.x's
    assert (config.repeats, config.batch_size, config.max_steps, config.checkpoint_every) == (100, 1, 15_500, 500)
    assert config.base_lr == 0.005 and config.flip_p == 0.5 and config.templates is None
    assert config.embedding_name == "amari"  # '*' is not a valid file name everywhere
    assert TrainConfig(token="amari").embedding_name == "amari"
    assert len(OBJECT_TEMPLATES) == 27 and all(t.count("{}") == 1 for t in OBJECT_TEMPLATES)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"token": "two words"}, "one word"),
        ({"resolution": 100}, "multiple of 8"),
        ({"templates": ("no placeholder here",)}, "exactly once"),
        ({"base_lr": -1.0}, "positive"),
        ({"max_steps": 0}, "max steps"),
        ({"name": "bad/name"}, "file name"),
        ({"mixed_precision": "fp8"}, "mixed-precision"),
    ],
)
def test_bad_settings_are_refused(change, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(**change)


def test_templates_file(tmp_path):
    path = tmp_path / "templates.txt"
    path.write_text("# portraits\na portrait of {}\n\n{} smiling\n")
    assert read_templates(path) == ("a portrait of {}", "{} smiling")
    path.write_text("a portrait of someone\n")
    with pytest.raises(UsageError, match="exactly once"):
        read_templates(path)


# Data ---------------------------------------------------------------------------------------------


def test_each_epoch_shows_every_image_repeats_times_and_draws_are_repeatable():
    images, repeats = 3, 4
    epoch = [draw(7, i, images, repeats, 27, 0.5) for i in range(images * repeats)]
    assert sorted(d.image for d in epoch) == sorted(list(range(images)) * repeats)
    assert [d.image for d in epoch] != [i % images for i in range(images * repeats)]  # shuffled
    assert draw(7, 5, images, repeats, 27, 0.5) == epoch[5]
    assert draw(8, 5, images, repeats, 27, 0.5) != epoch[5]
    flips = [draw(7, i, images, 100, 27, 0.5).flip for i in range(400)]
    assert 0.4 < np.mean(flips) < 0.6
    assert not any(draw(7, i, images, 100, 27, 0.0).flip for i in range(50))


def test_sample_indices_do_not_depend_on_the_number_of_processes():
    def indices(processes, batch, accum, steps):
        return sorted(
            sample_index(s, m, p, b, processes, batch, accum)
            for s in range(steps)
            for m in range(accum)
            for p in range(processes)
            for b in range(batch)
        )

    assert indices(2, 1, 1, 6) == list(range(12))
    assert indices(1, 2, 3, 2) == list(range(12))
    assert indices(4, 3, 1, 1) == list(range(12))


def test_square_resize_center_crops():
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 255  # the centre square is white, the sides black
    assert square_resize(wide, 8).min() > 200
    assert square_resize(wide, 8, center_crop=False).min() < 50


# Formats ------------------------------------------------------------------------------------------


def test_embedding_files_carry_the_keys_their_tools_read(tmp_path):
    vectors = torch.randn(2, 768)
    files = save_embedding(tmp_path, vectors, "<*>", "amari", {"step": 500})
    assert files["diffusers"].name == DIFFUSERS_FILE and files["a1111"].name == "amari.safetensors"
    with safe_open(str(files["diffusers"]), "pt") as handle:
        assert list(handle.keys()) == ["<*>"]  # diffusers: {token: [n, width]}
        assert torch.equal(handle.get_tensor("<*>"), vectors)
    with safe_open(str(files["a1111"]), "pt") as handle:
        # kohya reads `emb_params`; InvokeAI probes `emb_params`' last dimension; A1111 and ComfyUI take
        # the single tensor of a one-key file.
        assert list(handle.keys()) == ["emb_params"]
        assert handle.get_tensor("emb_params").shape[-1] == 768
        assert handle.metadata()["step"] == "500" and handle.metadata()["name"] == "amari"
    assert not list(tmp_path.glob("*.partial"))
    loaded = load_embedding(files["diffusers"])
    assert loaded.token == "<*>" and loaded.layout == "diffusers" and torch.equal(loaded.vectors, vectors)
    assert load_embedding(files["a1111"]).layout == "emb_params"


def test_load_embedding_reads_a1111_pt_and_refuses_junk(tmp_path):
    vector = torch.randn(1, 768)
    torch.save(
        {"string_to_token": {"*": 265}, "string_to_param": {"*": vector}, "name": "amari", "step": 10},
        tmp_path / "amari.pt",
    )
    loaded = load_embedding(tmp_path / "amari.pt")
    assert loaded.layout == "string_to_param" and loaded.token == "amari" and torch.equal(loaded.vectors, vector)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="not a readable embedding"):
        load_embedding(tmp_path / "junk.safetensors")
    with pytest.raises(ModelError, match="does not exist"):
        load_embedding(tmp_path / "missing.safetensors")


# Checkpoints and logs -----------------------------------------------------------------------------


def test_checkpoint_is_all_or_nothing(tmp_path):
    with ckpt.writing_checkpoint(tmp_path, 2) as folder:
        ckpt.write_json(folder / ckpt.STATE_FILE, {"step": 2})
    with pytest.raises(RuntimeError), ckpt.writing_checkpoint(tmp_path, 4) as folder:
        ckpt.write_json(folder / ckpt.STATE_FILE, {"step": 4})
        raise RuntimeError("killed mid-write")
    (tmp_path / "checkpoints" / ".step-000006.partial").mkdir()  # what a SIGKILL leaves behind
    assert ckpt.latest_checkpoint(tmp_path) == (2, tmp_path / "checkpoints" / "step-000002")
    ckpt.remove_partials(tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000002"]


def test_metrics_are_cut_back_to_the_checkpoint(tmp_path):
    log = ckpt.MetricsLog(tmp_path / "metrics.csv")
    for step in range(1, 6):
        log.append(step, step / 10, 0.1 * step, 0.005, 3.0)
    log.close()
    with open(tmp_path / "metrics.csv", "a") as handle:
        handle.write("6,0.6,0.1")  # a row cut short by a kill
    log.keep_until(3)
    rows = ckpt.MetricsLog(tmp_path / "metrics.csv").rows()
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert float(rows[2]["loss"]) == 0.1 * 3  # repr round-trips exactly


# Validation ---------------------------------------------------------------------------------------


def test_validation_scores_faces_against_the_reference(tmp_path, data_dir, reference_group):
    from amari.faces.descriptors import encode, largest
    from amari.faces.embeddings import EmbeddingCache, FaceEncoder
    from amari.storage.images import load_rgb
    from amari.train.validation import Sample, score_samples
    from amari.train.validation import reference_group as load_reference

    encoder = FaceEncoder(cache=EmbeddingCache(tmp_path / "cache.sqlite"))
    group = load_reference(reference_group, encoder)
    reference = group.descriptors
    assert reference.shape == (2, 128)
    face_crop(data_dir, 0, half=120).save(tmp_path / "same.png")
    face_crop(data_dir, 2, half=120).save(tmp_path / "other.png")
    Image.new("RGB", (96, 96), "gray").save(tmp_path / "blank.png")
    samples = [
        Sample(tmp_path / name, "a photo of <*>", seed)
        for seed, name in enumerate(("same.png", "other.png", "blank.png"))
    ]
    result = score_samples(samples, encoder, group)
    assert (result.images, result.faces_found) == (3, 2)
    assert result.faces_found_rate == pytest.approx(2 / 3)
    same, other, blank = (item["sim_score"] for item in result.per_image)
    expected = np.linalg.norm(reference - largest(encode(load_rgb(tmp_path / "same.png"))).descriptor, axis=1).mean()
    assert same == pytest.approx(expected) and same < 0.4 < other and blank is None
    assert result.mean_sim_score == pytest.approx((same + other) / 2)
    assert result.score == pytest.approx((same + other + 1.0) / 3)
    empty = tmp_path / "empty-group"
    empty.mkdir()
    Image.new("RGB", (64, 64)).save(empty / "x.png")
    with pytest.raises(UsageError, match="no face"):
        load_reference(empty, encoder)


# Placeholder splice -------------------------------------------------------------------------------


def test_placeholder_tokens_are_new_and_only_their_vectors_get_gradients(tiny_sd, one_thread):
    from transformers import CLIPTextModel, CLIPTokenizer

    from amari.train.tokens import add_placeholder, init_vectors, splice, training_token

    tokenizer = CLIPTokenizer.from_pretrained(tiny_sd / "tokenizer")
    encoder = CLIPTextModel.from_pretrained(tiny_sd / "text_encoder")
    vocabulary = tokenizer.get_vocab()
    known = len(tokenizer)
    assert training_token("*", vocabulary) == "<*>"  # '*' is a CLIP symbol already
    assert training_token("amari", vocabulary) == "amari"
    original = encoder.get_input_embeddings().weight.detach().clone()
    vectors = init_vectors(tokenizer, original, "woman", 2)
    assert torch.equal(vectors[0], original[tokenizer.convert_tokens_to_ids("woman</w>")])
    ids = add_placeholder(tokenizer, "<*>", 2)
    assert ids == [known, known + 1]
    encoder.requires_grad_(False)  # as the run freezes the whole model
    module = splice(encoder, ids, vectors)
    prompt = tokenizer(["a photo of <*> <*>_1 woman"], return_tensors="pt").input_ids
    assert set(ids) <= set(prompt[0].tolist())
    prompt[0, -1] = original.shape[0] - 1  # an id above the placeholder's stays a table row
    rows = module(prompt)
    for position, token_id in enumerate(prompt[0].tolist()):
        expected = vectors[ids.index(token_id)] if token_id in ids else original[token_id]
        assert torch.equal(rows[0, position], expected)
    encoder(prompt)[0].pow(2).mean().backward()
    trainable = [name for name, p in encoder.named_parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0].endswith("token_embedding.vectors")
    assert module.vectors.grad is not None and module.vectors.grad.abs().sum() > 0
    assert module.table.weight.grad is None


# Real runs on the tiny model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_sd, train_images, reference_group, one_thread):
    from amari.train import run

    layout = TrainLayout(train_images, tmp_path_factory.mktemp("run") / "out")
    config = TrainConfig(
        model=str(tiny_sd),
        num_vectors=2,
        resolution=64,
        batch_size=2,
        max_steps=4,
        checkpoint_every=2,
        base_lr=0.05,
        sample_seeds=(11, 12),
        sample_steps=2,
        reference_group=reference_group,
    )
    messages = []
    result = run(config, layout, log=messages.append)
    return config, layout, result, messages


def test_run_writes_metrics_with_finite_loss_and_the_epoch_column(trained):
    config, layout, result, messages = trained
    rows = ckpt.MetricsLog(layout.out / "metrics.csv").rows()
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) > 0 for r in rows)
    assert [float(r["epoch"]) for r in rows] == [s * 2 / (3 * 100) for s in range(1, 5)]  # batch 2
    assert all(float(r["lr"]) == 0.1 and float(r["images_per_s"]) > 0 for r in rows)  # 0.05 × batch 2
    assert result.step == 4 and result.resumed_from == 0 and result.token == "<*>"
    assert any("3 images" in m for m in messages) and any("step 4/4" in m for m in messages)


def test_only_the_placeholder_rows_change(trained, tiny_sd):
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel

    config, layout, result, _ = trained
    original = CLIPTextModel.from_pretrained(tiny_sd / "text_encoder").get_input_embeddings().weight
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None, requires_safety_checker=False)
    known = len(pipe.tokenizer)  # the tiny model's table has spare rows above its vocabulary
    pipe.load_textual_inversion(result.embedding_files["diffusers"])
    table = pipe.text_encoder.get_input_embeddings().weight
    ids = pipe.tokenizer.convert_tokens_to_ids(["<*>", "<*>_1"])
    assert ids == [known, known + 1]
    assert torch.equal(table[:known], original[:known])  # every original row bit-identical
    trained = load_embedding(result.embedding_files["a1111"]).vectors
    assert torch.equal(table[known : known + 2], trained)
    woman = original[pipe.tokenizer.convert_tokens_to_ids("woman</w>")]
    assert not torch.equal(trained[0], woman) and not torch.equal(trained[1], woman)  # the vectors learned


def test_diffusers_file_changes_the_image_and_matches_the_checkpoint_samples(trained, tiny_sd):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    config, layout, result, _ = trained

    def generate(with_embedding: bool) -> np.ndarray:
        pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None, requires_safety_checker=False)
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        if with_embedding:
            pipe.load_textual_inversion(result.embedding_files["diffusers"])
        image = pipe(
            "a photo of <*>",
            num_inference_steps=2,
            guidance_scale=7.5,
            height=64,
            width=64,
            generator=torch.Generator("cpu").manual_seed(12),
        ).images[0]
        return np.asarray(image, dtype=np.int16)

    with_embedding, without = generate(True), generate(False)
    assert np.abs(with_embedding - without).max() > 0
    sample = np.asarray(Image.open(layout.out / "checkpoints/step-000004/samples/p0-seed12.png"), dtype=np.int16)
    try:  # samples carry amari's invisible watermark when the provenance module is there
        from amari.provenance.png import embed_watermark

        with_embedding = embed_watermark(with_embedding.astype(np.uint8)).astype(np.int16)
    except ImportError:
        pass
    assert np.abs(sample - with_embedding).max() <= 1  # the samples are what users will get


def test_each_checkpoints_a1111_file_loads_in_diffusers_under_its_own_name(trained, tiny_sd):
    from diffusers import StableDiffusionPipeline

    _config, _layout, result, _ = trained
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None, requires_safety_checker=False)
    for folder in result.checkpoints:
        step = int(folder.name.split("-")[1])
        path = folder / f"amari-{step}.safetensors"
        pipe.load_textual_inversion(path, token=f"amari-{step}")
        ids = pipe.tokenizer.convert_tokens_to_ids([f"amari-{step}", f"amari-{step}_1"])
        table = pipe.text_encoder.get_input_embeddings().weight
        assert torch.equal(table[ids], load_embedding(path).vectors)


def test_checkpoints_hold_embeddings_state_samples_and_validation(trained):
    config, layout, result, _ = trained
    assert [p.name for p in result.checkpoints] == ["step-000002", "step-000004"]
    folder = result.checkpoints[-1]
    state = json.loads((folder / "state.json").read_text())
    # Each checkpoint's A1111 file is named after its step (A1111 and ComfyUI name embeddings by file).
    assert state["step"] == 4 and state["files"] == {"diffusers": DIFFUSERS_FILE, "a1111": "amari-4.safetensors"}
    final = load_embedding(layout.out / "amari.safetensors").vectors
    assert torch.equal(load_embedding(folder / "amari-4.safetensors").vectors, final)
    assert torch.equal(load_embedding(folder / DIFFUSERS_FILE).vectors, final)
    training_state = torch.load(folder / "training_state.pt", weights_only=True)
    assert training_state["step"] == 4 and torch.equal(training_state["vectors"], final)
    sample = Image.open(folder / "samples" / "p0-seed11.png")
    assert sample.size == (64, 64) and "Seed: 11" in sample.text["parameters"]
    # The infotext names the checkpoint's A1111 file, so pasting it into A1111 triggers the embedding.
    assert sample.text["parameters"].startswith("a photo of amari-4\n")
    assert 'TI hashes: "amari-4: ' in sample.text["parameters"]
    assert json.loads(sample.text["amari"])["synthetic"] is True
    # Random weights draw no faces: the validation says so instead of failing.
    assert state["validation"]["faces_found"] == 0 and state["validation"]["images"] == 2
    assert state["validation"]["score"] == 1.0 and state["validation"]["mean_sim_score"] is None
    best = json.loads((layout.out / "best.json").read_text())
    assert best["checkpoint"] == "checkpoints/step-000002"  # ties go to the earlier checkpoint
    rows = ckpt.read_csv(layout.out / "validation.csv", ckpt.VALIDATION_FIELDS)
    assert [(r["step"], r["best"]) for r in rows] == [("2", "1"), ("4", "0")]


def test_rerun_of_a_finished_run_changes_nothing_and_other_settings_are_refused(trained, capsys):
    from amari.train import run

    config, layout, _, _ = trained
    before = (layout.out / "metrics.csv").read_bytes()
    again = run(config, layout)
    assert again.resumed_from == 4 and (layout.out / "metrics.csv").read_bytes() == before
    code = main(
        [
            "train",
            str(layout.data),
            "--out",
            str(layout.out),
            "--model",
            config.model,
            "--resolution",
            "64",
            "--batch-size",
            "2",
            "--vectors",
            "2",
            "--token",
            "amari",
        ]
    )
    assert code == 2
    assert "token: '*' there, 'amari' now" in capsys.readouterr().err


def test_bad_inputs_fail_before_any_model_loads(tmp_path, train_images, capsys):
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in train_images.glob("*.png"):
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "z.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ImageError, match="z.png"):
        load_training_images(broken, 64)
    assert main(["train", str(broken), "--out", str(tmp_path / "o")]) == 1
    assert "z.png" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_model_offline_is_a_clear_error(tmp_path, train_images, capsys):
    code = main(
        [
            "train",
            str(train_images),
            "--out",
            str(tmp_path / "o"),
            "--model",
            "nobody/no-such-model",
            "--resolution",
            "64",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "nobody/no-such-model" in err and "Hugging Face cache" in err and len(err.strip().splitlines()) == 1


def test_checkpoints_without_a_run_record_are_refused(tmp_path, train_images):
    from amari.train.loop import check_previous_run

    out = tmp_path / "out"
    with ckpt.writing_checkpoint(out, 2) as folder:
        ckpt.write_json(folder / ckpt.STATE_FILE, {"step": 2})
    with pytest.raises(WorkspaceError, match="no run.json"):
        check_previous_run(TrainConfig(), TrainLayout(train_images, out), ["a.png"], 1)


def test_cli_options_reach_the_config(tmp_path):
    from amari.cli import build_parser
    from amari.config.options import from_args

    def config_from_args(args):
        return from_args(TrainConfig, args)

    templates = tmp_path / "t.txt"
    templates.write_text("a portrait of {}\n")
    args = build_parser().parse_args(
        [
            "train",
            "data",
            "--out",
            "o",
            "--token",
            "amari",
            "--vectors",
            "3",
            "--templates",
            str(templates),
            "--no-scale-lr",
            "--no-flip",
            "--sample-seeds",
            "1,2",
            "--steps",
            "10",
            "--checkpoint-every",
            "5",
            "--no-gradient-checkpointing",
            "--reference-group",
            "ref",
        ]
    )
    config = config_from_args(args)
    assert (config.token, config.num_vectors, config.templates) == ("amari", 3, ("a portrait of {}",))
    assert (config.scale_lr, config.flip_p, config.sample_seeds) == (False, 0.0, (1, 2))
    assert (config.max_steps, config.checkpoint_every, config.gradient_checkpointing) == (10, 5, False)
    assert config.reference_group == Path("ref") and config.embedding_name == "amari"
    defaults = config_from_args(build_parser().parse_args(["train", "data", "--out", "o"]))
    assert defaults == TrainConfig()
    assert build_parser().parse_args(["train", "d", "--out", "o", "--sample-seeds", ""]).sample_seeds == ()


def test_bf16_autocast_on_the_cpu_trains_and_samples(tmp_path, tiny_sd, train_images, one_thread):
    from amari.train import run

    layout = TrainLayout(train_images, tmp_path / "out")
    config = TrainConfig(
        model=str(tiny_sd),
        resolution=64,
        max_steps=2,
        checkpoint_every=2,
        mixed_precision="bf16",
        gradient_checkpointing=True,
        grad_accum=2,
        sample_seeds=(3,),
        sample_steps=1,
    )
    result = run(config, layout)
    rows = ckpt.MetricsLog(layout.out / "metrics.csv").rows()
    assert len(rows) == 2 and all(math.isfinite(float(r["loss"])) for r in rows)
    assert (result.checkpoints[-1] / "samples" / "p0-seed3.png").is_file()
    assert load_embedding(result.embedding_files["diffusers"]).vectors.dtype == torch.float32
