"""amari train --method lora / pivotal: settings, the files users load (diffusers' and kohya's layouts,
checked against the naming rules A1111 and ComfyUI apply), short real runs on the tiny model, exact
resume after SIGKILL, and two processes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from amari.cli import build_parser, main
from amari.config.options import from_args
from amari.errors import UsageError
from amari.storage.layout import LORA_WEIGHTS, TrainLayout
from amari.train import TrainConfig, run
from amari.train.checkpoints import MetricsLog
from amari.train.config import LORA_RESUME_KEYS, UNET_ATTENTION
from amari.train.exports import addnet_hash, kohya_module, kohya_state, read_record
from amari.train.formats import load_embedding
from amari.train.lora import LoraSpec
from test_train_resume import _rows, images, kill_at_step_5_then_resume, train_on_two_processes  # noqa: F401 - a fixture

# Settings -----------------------------------------------------------------------------------------


def test_lora_settings_and_their_defaults():
    config = TrainConfig()
    assert config.method == "ti" and config.methods is None and config.study_methods() == ("ti",)
    assert (config.lora_rank, config.lora_alpha, config.alpha) == (4, None, 4.0)
    assert config.lora_targets == UNET_ATTENTION == ("to_q", "to_k", "to_v", "to_out.0")
    assert config.unet_lr == 1e-4 and not config.text_encoder_lora
    assert not config.trains_lora and config.trains_token
    lora = TrainConfig(method="lora", token="amari", lora_rank=8, lora_alpha=4)
    assert lora.trains_lora and not lora.trains_token and lora.alpha == 4.0 and lora.trigger == "amari woman"
    assert TrainConfig(method="pivotal").trains_lora and TrainConfig(method="pivotal").trains_token
    assert TrainConfig(methods=["ti", "pivotal"]).study_methods() == ("ti", "pivotal")


def test_a_ti_run_records_the_settings_it_always_recorded():
    # A TI run's run.json is unchanged, so runs started before LoRA existed resume.
    assert not set(LORA_RESUME_KEYS) & set(TrainConfig().resume_settings())
    assert set(LORA_RESUME_KEYS) <= set(TrainConfig(method="lora").resume_settings())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"method": "dreambooth"}, "unknown method"),
        ({"methods": ("ti", "ti")}, "each method once"),
        ({"lora_rank": 0}, "lora rank"),
        ({"lora_alpha": -1.0}, "lora-alpha"),
        ({"lora_targets": ()}, "lora-targets"),
        ({"unet_lr": 0.0}, "unet-lr"),
    ],
)
def test_bad_lora_settings_are_refused(change, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(**change)


def test_lora_options_reach_the_config():
    options = "--method pivotal --lora-rank 8 --lora-alpha 16 --lora-targets to_q,to_v --text-encoder-lora"
    args = build_parser().parse_args(["train", "d", "--out", "o", *options.split(), "--unet-lr", "0.0002"])
    config = from_args(TrainConfig, args)
    assert (config.method, config.lora_rank, config.lora_alpha) == ("pivotal", 8, 16.0)
    assert config.lora_targets == ("to_q", "to_v") and config.text_encoder_lora and config.unet_lr == 2e-4


# The kohya file against the rules its loaders apply -------------------------------------------------

# A1111 (extensions-builtin/Lora, `convert_diffusers_name_to_compvis`) maps a kohya module name to the LDM
# module of SD 1.x: input blocks count 3 per level from 1, output blocks 3 per level from 0, attentions are
# the block's second part (1), the middle block's attention is part 1; text encoder layers sit under
# `transformer.text_model`. It then looks the name up among the model's modules, '.' written as '_'.
_A1111_UNET = (
    (re.compile(r"lora_unet_down_blocks_(\d+)_attentions_(\d+)_(.+)"), lambda b, i: f"input_blocks_{1 + 3 * b + i}_1"),
    (re.compile(r"lora_unet_up_blocks_(\d+)_attentions_(\d+)_(.+)"), lambda b, i: f"output_blocks_{3 * b + i}_1"),
)
_A1111_MID = re.compile(r"lora_unet_mid_block_attentions_0_(.+)")
_A1111_TEXT = re.compile(r"lora_te_text_model_encoder_layers_(\d+)_(.+)")


def a1111_module(name: str) -> str | None:
    for pattern, block in _A1111_UNET:
        match = pattern.fullmatch(name)
        if match:
            return f"diffusion_model_{block(int(match.group(1)), int(match.group(2)))}_{match.group(3)}"
    match = _A1111_MID.fullmatch(name)
    if match:
        return f"diffusion_model_middle_block_1_{match.group(1)}"
    match = _A1111_TEXT.fullmatch(name)
    if match:
        return f"transformer_text_model_encoder_layers_{match.group(1)}_{match.group(2)}"
    return None


def _sd15_unet():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):  # SD 1.5's module tree, without its weights
        return UNet2DConditionModel(
            sample_size=64,
            cross_attention_dim=768,
            attention_head_dim=8,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
        )


def _lora_like_state(unet, targets, text_layers: int, rank: int = 4) -> dict:
    """A LoRA state dict (file keys, right shapes) for every target of the UNet and a CLIP text encoder."""
    state = {}
    for name, module in unet.named_modules():
        if any(name.endswith(f".{target}") for target in targets):
            state[f"unet.{name}.lora_A.weight"] = torch.zeros(rank, module.in_features)
            state[f"unet.{name}.lora_B.weight"] = torch.zeros(module.out_features, rank)
    for layer in range(text_layers):
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            key = f"text_encoder.text_model.encoder.layers.{layer}.self_attn.{proj}"
            state[f"{key}.lora_A.weight"] = torch.zeros(rank, 768)
            state[f"{key}.lora_B.weight"] = torch.zeros(768, rank)
    return state


def test_kohya_names_are_the_ones_a1111_and_comfyui_look_up():
    from amari.testing.ldm import unet_to_ldm

    unet = _sd15_unet()
    spec = LoraSpec(rank=4, alpha=2.5, unet_targets=UNET_ATTENTION, text_encoder_targets=("q_proj",))
    state = _lora_like_state(unet, UNET_ATTENTION, text_layers=12)
    kohya = kohya_state(state, spec)
    modules = {key.split(".", 1)[0] for key in kohya}  # A1111 splits each key at its first '.'
    assert len(modules) == 16 * 8 + 12 * 4  # 16 transformer blocks × 2 attentions × 4 projections, 12 CLIP layers
    for key in kohya:
        assert key.split(".", 1)[1] in ("lora_down.weight", "lora_up.weight", "alpha"), key
    # A1111: every name maps to a module of the LDM UNet, or of CLIP's attention.
    ldm = {
        key.removeprefix("model.").removesuffix(".weight").replace(".", "_")
        for key in unet_to_ldm(unet.state_dict(), dict(unet.config))
    }
    for module in modules:
        mapped = a1111_module(module)
        assert mapped is not None, module
        if mapped.startswith("transformer_"):
            assert re.fullmatch(r"transformer_text_model_encoder_layers_([0-9]|1[01])_self_attn_[qkvout]+_proj", mapped)
        else:
            assert mapped in ldm, (module, mapped)
    # ComfyUI: "lora_unet_" + each diffusers UNet weight's module path with '_', and SD 1.x's CLIP names.
    comfy_unet = {"lora_unet_" + k.removesuffix(".weight").replace(".", "_") for k in unet.state_dict()}
    comfy_clip = {
        f"lora_te_text_model_encoder_layers_{b}_{c}"
        for b in range(12)
        for c in ("self_attn_q_proj", "self_attn_k_proj", "self_attn_v_proj", "self_attn_out_proj", "mlp_fc1")
    }
    assert modules <= comfy_unet | comfy_clip
    # Shapes and alpha as both read them: down [rank, in], up [out, rank], alpha a 0-dim float = the real alpha.
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    assert kohya[f"{name}.lora_down.weight"].shape == (4, 768)  # cross-attention: in = CLIP width
    assert kohya[f"{name}.lora_up.weight"].shape == (320, 4)
    alpha = kohya[f"{name}.alpha"]
    assert alpha.ndim == 0 and alpha.dtype == torch.float32 and alpha.item() == 2.5
    assert kohya_module("unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_B.weight") == (
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_out_0",
        "up",
    )


# Real runs on the tiny model ----------------------------------------------------------------------


def _config(tiny_sd, method: str, **changes) -> TrainConfig:
    values = dict(
        model=str(tiny_sd),
        method=method,
        token="amari",
        resolution=64,
        max_steps=4,
        checkpoint_every=2,
        base_lr=0.05,
        unet_lr=0.02,
        sample_seeds=(11,),
        sample_steps=2,
    )
    values.update(changes)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_sd, images, one_thread):  # noqa: F811
    # alpha ≠ rank and a text-encoder LoRA: the files must carry both for the image to come out the same.
    config = _config(tiny_sd, "lora", lora_rank=4, lora_alpha=2.0, text_encoder_lora=True)
    layout = TrainLayout(images, tmp_path_factory.mktemp("lora") / "out")
    messages = []
    return config, layout, run(config, layout, log=messages.append), messages


@pytest.fixture(scope="module")
def pivotal_run(tmp_path_factory, tiny_sd, images, one_thread):  # noqa: F811
    config = _config(tiny_sd, "pivotal", lora_alpha=8.0, reference_group=images)  # samples scored, as TI's
    layout = TrainLayout(images, tmp_path_factory.mktemp("pivotal") / "out")
    messages = []
    return config, layout, run(config, layout, log=messages.append), messages


def _pipeline(tiny_sd):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(pipe, prompt: str, seed: int = 11) -> np.ndarray:
    image = pipe(
        prompt,
        num_inference_steps=2,
        guidance_scale=7.5,
        height=64,
        width=64,
        generator=torch.Generator("cpu").manual_seed(seed),
    ).images[0]
    return np.asarray(image, dtype=np.int16)


def _watermarked(array: np.ndarray) -> np.ndarray:
    from amari.provenance.png import embed_watermark

    return embed_watermark(array.astype(np.uint8)).astype(np.int16)


def _sample(folder: Path) -> np.ndarray:
    return np.asarray(Image.open(folder / "samples" / "p0-seed11.png"), dtype=np.int16)


def test_lora_run_writes_metrics_checkpoints_and_the_record(lora_run):
    config, layout, result, messages = lora_run
    rows = MetricsLog(layout.metrics).rows()
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and all(float(r["lr"]) == 0.02 for r in rows)
    assert result.token == "amari woman" and result.embedding_files == {}
    assert any("trigger 'amari woman'; LoRA rank 4, alpha 2 on the UNet and text encoder" in m for m in messages)
    folder = result.checkpoints[-1]
    state = json.loads((folder / "state.json").read_text())
    assert state["files"] == {
        "lora": "pytorch_lora_weights.safetensors",
        "kohya": "amari-4-lora.safetensors",
        "record": "lora.json",
    }
    training_state = torch.load(folder / "training_state.pt", weights_only=True)
    assert "vectors" not in training_state and len(training_state["optimizer"]["param_groups"]) == 1
    record = read_record(layout.lora_record)
    assert record["trigger"] == "amari woman" and record["token"] is None and record["alpha"] == 2.0
    assert record["files"] == {"lora": "pytorch_lora_weights.safetensors", "kohya": "amari-lora.safetensors"}
    assert record["prompts"]["a1111"] == "a photo of amari woman <lora:amari-lora:1>"
    sample = Image.open(folder / "samples" / "p0-seed11.png").text["parameters"]
    assert sample.startswith("a photo of amari woman <lora:amari-4-lora:1>\n")
    assert f'Lora hashes: "amari-4-lora: {addnet_hash(folder / "amari-4-lora.safetensors")[:12]}"' in sample


def test_the_diffusers_file_holds_the_adapters_and_their_config(lora_run):
    _config_, layout, _result, _ = lora_run
    with safe_open(str(layout.lora), "pt") as handle:
        keys = list(handle.keys())
        metadata = handle.metadata()
        b_weights = [handle.get_tensor(k) for k in keys if k.endswith("lora_B.weight")]
    assert {k.split(".")[0] for k in keys} == {"unet", "text_encoder"}
    assert all(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys)
    assert any(k.startswith("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.") for k in keys)
    assert all(b.abs().sum() > 0 for b in b_weights)  # every B left zero (its start) during training
    adapters = json.loads(metadata["lora_adapter_metadata"])
    assert adapters["unet.r"] == 4 and adapters["unet.lora_alpha"] == 2.0 and adapters["text_encoder.r"] == 4
    assert sorted(adapters["unet.target_modules"]) == sorted(UNET_ATTENTION)


def test_the_lora_file_loads_in_diffusers_and_makes_the_samples(lora_run, tiny_sd):
    _config_, layout, result, _ = lora_run
    pipe = _pipeline(tiny_sd)
    plain = _image(pipe, "a photo of amari woman")
    pipe.load_lora_weights(layout.out, weight_name=LORA_WEIGHTS)  # offline, diffusers 0.34 needs the file named
    with_lora = _image(pipe, "a photo of amari woman")
    assert np.abs(with_lora - plain).max() > 0
    # The same pixels as the last checkpoint's sample: rank, alpha (≠ rank) and targets all survived.
    assert np.abs(_sample(result.checkpoints[-1]) - _watermarked(with_lora)).max() <= 1


def test_the_kohya_file_loads_to_the_same_model(lora_run, tiny_sd):
    _config_, layout, _result, _ = lora_run
    kohya = layout.out / "amari-lora.safetensors"
    with safe_open(str(kohya), "pt") as handle:
        metadata = handle.metadata()
        alphas = {k: handle.get_tensor(k) for k in handle.keys() if k.endswith(".alpha")}  # noqa: SIM118
        prefixes = {k.split("_")[1] for k in handle.keys()}  # noqa: SIM118
    assert prefixes == {"unet", "te"} and all(a.ndim == 0 and a.item() == 2.0 for a in alphas.values())
    assert metadata["ss_network_dim"] == "4" and metadata["ss_network_alpha"] == "2.0"
    assert metadata["sshs_model_hash"] == addnet_hash(kohya)
    pipe = _pipeline(tiny_sd)
    pipe.load_lora_weights(layout.out, weight_name=LORA_WEIGHTS)
    expected = _image(pipe, "a photo of amari woman")
    pipe.unload_lora_weights()
    pipe.load_lora_weights(layout.out, weight_name=kohya.name)  # diffusers converts kohya's names and alphas
    assert np.array_equal(_image(pipe, "a photo of amari woman"), expected)


def test_the_pivotal_pair_loads_together(pivotal_run, tiny_sd):
    config, layout, result, messages = pivotal_run
    assert any("token 'amari' (1 vector, from 'woman'); LoRA rank 4, alpha 8" in m for m in messages)
    assert any("lr 0.05 and 0.02 on 1 process(es)" in m for m in messages)
    record = read_record(layout.lora_record)
    assert record["token"] == record["trigger"] == "amari" and record["method"] == "pivotal"
    assert record["files"] == {
        "embedding": "learned_embeds.safetensors",
        "embedding_a1111": "amari.safetensors",
        "lora": "pytorch_lora_weights.safetensors",
        "kohya": "amari-lora.safetensors",
    }
    assert record["prompts"]["a1111"] == "a photo of amari <lora:amari-lora:1>"
    training_state = torch.load(result.checkpoints[-1] / "training_state.pt", weights_only=True)
    groups = training_state["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == [0.05, 0.02] and groups[0]["params"] == [0]
    pipe = _pipeline(tiny_sd)
    pipe.load_textual_inversion(layout.embedding)
    token_only = _image(pipe, "a photo of amari")
    pipe.load_lora_weights(layout.out, weight_name=LORA_WEIGHTS)
    pair = _image(pipe, "a photo of amari")
    assert np.abs(pair - token_only).max() > 0
    assert np.abs(_sample(result.checkpoints[-1]) - _watermarked(pair)).max() <= 1
    # The token's vectors learned too: they left the init word's embedding they started from.
    table = pipe.text_encoder.get_input_embeddings().weight
    woman = table[pipe.tokenizer.convert_tokens_to_ids("woman</w>")]
    assert not torch.equal(load_embedding(layout.out / "amari.safetensors").vectors[0], woman)
    sample = Image.open(result.checkpoints[-1] / "samples" / "p0-seed11.png").text["parameters"]
    assert sample.startswith("a photo of amari-4 <lora:amari-4-lora:1>\n") and 'TI hashes: "amari-4: ' in sample
    # Identity-scored validation at every checkpoint, and the best one named (random weights draw no face).
    state = json.loads((result.checkpoints[-1] / "state.json").read_text())
    assert state["validation"]["images"] == 1 and state["validation"]["score"] == 1.0
    assert result.best["checkpoint"] == "checkpoints/step-000002"


def a1111_lora_version(metadata: dict) -> str:
    """A1111's `extensions-builtin/Lora/network.py` (`NetworkOnDisk.detect_version`): SDXL when
    `ss_base_model_version` starts with `sdxl_`, SD 2 when `ss_v2` is "True", else SD 1 for a file with any
    metadata; its LoRA list hides a LoRA whose version is not the loaded model's."""
    if str(metadata.get("ss_base_model_version", "")).startswith("sdxl_"):
        return "SDXL"
    if str(metadata.get("ss_v2", "")) == "True":
        return "SD2"
    return "SD1" if metadata else "Unknown"


@pytest.mark.slow
def test_loras_and_samples_say_which_model_family_they_were_trained_on(lora_run, tmp_path, images, one_thread):  # noqa: F811
    """A LoRA trained on SD 2.x is labelled so for A1111 (`ss_v2`) and kohya (`sd_v2`, as kohya's
    `library/model_util.py` spells it), and its samples' InvokeAI metadata give the model and the LoRA base
    `sd-2` (InvokeAI recalls a LoRA of the main model's base only) with the embedding as a `<name>` trigger
    and no A1111 `<lora:...>` tag in the prompt (InvokeAI's `ti_utils.py`, `parsing.tsx`)."""
    from amari.provenance.names import header_metadata
    from amari.testing.sd import build_tiny_sd
    from test_infotext import invokeai_recalled_loras, invokeai_triggers

    _config_, sd1_layout, _result, _ = lora_run
    sd1 = header_metadata(sd1_layout.out / "amari-lora.safetensors")
    assert a1111_lora_version(sd1) == "SD1" and sd1["ss_base_model_version"] == "sd_v1"
    sd2_model = build_tiny_sd(tmp_path / "sd2", family="sd-2")
    layout = TrainLayout(images, tmp_path / "out")
    run(_config(sd2_model, "pivotal", max_steps=1, checkpoint_every=1, sample_steps=1), layout)
    sd2 = header_metadata(layout.out / "amari-lora.safetensors")
    assert a1111_lora_version(sd2) == "SD2" and sd2["ss_base_model_version"] == "sd_v2"
    sample = Image.open(layout.checkpoints / "step-000001" / "samples" / "p0-seed11.png")
    meta = json.loads(sample.text["invokeai_metadata"])
    assert meta["model"]["base_model"] == "sd-2"
    assert invokeai_recalled_loras(meta) == [("amari-1-lora", "sd-2", 1.0)]
    assert meta["positive_prompt"] == "a photo of <amari-1>" and invokeai_triggers(meta["positive_prompt"]) == [
        "amari-1"
    ]


def test_another_method_in_the_same_folder_is_refused(pivotal_run, capsys):
    config, layout, _result, _ = pivotal_run
    args = ["train", str(layout.data), "--out", str(layout.out), "--model", config.model, "--resolution", "64"]
    assert main([*args, "--token", "amari", "--method", "lora", "--lora-alpha", "8", "--lr", "0.05"]) == 2
    assert "method: 'pivotal' there, 'lora' now" in capsys.readouterr().err


def test_generation_loads_the_lora_files_and_unloads_them(lora_run, tiny_sd):
    from amari.generate import GenerateConfig, Lora, generate
    from amari.provenance.infotext import a1111_parameters

    _config_, layout, _result, _ = lora_run
    base = dict(model=str(tiny_sd), scheduler="ddim", steps=2, width=64, height=64, device="cpu")

    def image(*loras):
        made = generate("a photo of amari woman", seeds=[3], config=GenerateConfig(**base, loras=loras), progress=False)
        return np.asarray(made.images[0].image, dtype=np.int16), made.images[0].params

    plain, _ = image()
    diffusers_file, params = image(Lora(str(layout.lora)))
    kohya_file, kohya_params = image(Lora(str(layout.out / "amari-lora.safetensors")))
    half, _ = image(Lora(str(layout.lora), 0.5))
    again, _ = image()
    assert np.abs(diffusers_file - plain).max() > 0 and np.array_equal(kohya_file, diffusers_file)
    assert np.abs(half - diffusers_file).max() > 0 and np.array_equal(again, plain)  # the control sees no LoRA
    kohya = kohya_params["loras"][0]
    assert kohya == {
        "path": "amari-lora.safetensors",
        "name": "amari-lora",
        "hash": addnet_hash(layout.out / "amari-lora.safetensors")[:12],
        "weight": 1.0,
    }
    text = a1111_parameters(kohya_params)
    assert (
        text.startswith("a photo of amari woman <lora:amari-lora:1>\n")
        and f'Lora hashes: "amari-lora: {kohya["hash"]}"' in text
    )
    assert params["loras"] == kohya_params["loras"]  # the diffusers file names the kohya file beside it


@pytest.mark.parametrize("method", ["lora", "pivotal"])
def test_bf16_and_gradient_checkpointing_train_every_adapter(method, tmp_path, tiny_sd, images, one_thread):  # noqa: F811
    # A GPU's defaults: half-precision autocast, the frozen UNet in bf16, its blocks recomputed in backward.
    from amari.train.loop import prepare_run, train_step

    config = _config(tiny_sd, method, mixed_precision="bf16", gradient_checkpointing=True, sample_seeds=())
    run_ = prepare_run(config, TrainLayout(images, tmp_path / "out"))
    adapters = {k: p for k, p in run_.components.unet.named_parameters() if ".lora_B." in k}
    before = {k: p.detach().clone() for k, p in adapters.items()}
    loss, _lr = train_step(run_, 0)
    assert np.isfinite(loss) and run_.components.unet.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in adapters.values())  # the adapters learn in float32
    assert all(not torch.equal(before[k], p) for k, p in adapters.items())  # every one got a gradient


# Resuming and several processes ---------------------------------------------------------------------


def _lora_tensors(path: Path) -> dict:
    with safe_open(str(path), "pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118


def _cli_args(tiny_sd, steps: int, every: int) -> list[str]:
    """`amari train` options of a short LoRA run on the tiny model, without samples."""
    options = {"model": tiny_sd, "token": "amari", "resolution": 64, "steps": steps, "checkpoint-every": every}
    options.update({"lr": 0.05, "unet-lr": 0.02, "sample-seeds": ""})
    return [part for name, value in options.items() for part in (f"--{name}", str(value))]


METHOD_ARGS = {"lora": ["--method", "lora"], "pivotal": ["--method", "pivotal", "--text-encoder-lora"]}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHOD_ARGS))
def test_killed_lora_run_resumes_to_the_same_end(method, tmp_path, tiny_sd, images, one_thread):  # noqa: F811
    args = [*METHOD_ARGS[method], *_cli_args(tiny_sd, steps=7, every=3)]
    parsed = build_parser().parse_args(["train", str(images), "--out", "x", *args])
    run(from_args(TrainConfig, parsed), TrainLayout(images, tmp_path / "reference"))

    out = tmp_path / "killed"
    kill_at_step_5_then_resume(["train", str(images), "--out", str(out), *args], out, timeout=300)
    # The LoRA, its AdamW moments (and the token's) came back exactly: the same losses, the same weights.
    assert _rows(out) == _rows(tmp_path / "reference")
    final, reference = (
        _lora_tensors(out / "pytorch_lora_weights.safetensors"),
        _lora_tensors(tmp_path / "reference" / "pytorch_lora_weights.safetensors"),
    )
    assert final.keys() == reference.keys() and all(torch.equal(final[k], reference[k]) for k in final)
    if method == "pivotal":
        assert torch.equal(
            load_embedding(out / "learned_embeds.safetensors").vectors,
            load_embedding(tmp_path / "reference" / "learned_embeds.safetensors").vectors,
        )


@pytest.mark.slow
def test_two_processes_train_pivotal_like_one_accumulating_two_batches(tmp_path, tiny_sd, images, one_thread):  # noqa: F811
    args = ["--method", "pivotal", *_cli_args(tiny_sd, steps=2, every=2)]
    out = tmp_path / "two"
    err = train_on_two_processes(["train", str(images), "--out", str(out), *args], timeout=300)
    assert "lr 0.1 and 0.04 on 2 process(es)" in err  # both rates scaled by 2 processes × batch 1

    parsed = build_parser().parse_args(["train", str(images), "--out", "x", *args, "--grad-accum", "2"])
    run(from_args(TrainConfig, parsed), TrainLayout(images, tmp_path / "one"))
    two, one = MetricsLog(out / "metrics.csv").rows(), MetricsLog(tmp_path / "one" / "metrics.csv").rows()
    for a, b in zip(two, one):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-4)
    # The LoRA's gradients, and the token's, were averaged across the processes.
    lora_two, lora_one = (
        _lora_tensors(out / "pytorch_lora_weights.safetensors"),
        _lora_tensors(tmp_path / "one" / "pytorch_lora_weights.safetensors"),
    )
    assert all(torch.allclose(lora_two[k], lora_one[k], atol=1e-5) for k in lora_one)
    vectors_two = load_embedding(out / "learned_embeds.safetensors").vectors
    assert torch.allclose(
        vectors_two, load_embedding(tmp_path / "one" / "learned_embeds.safetensors").vectors, atol=1e-4
    )
