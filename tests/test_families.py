"""SDXL and FLUX.1 through detection, mining, training and their files, on tiny pipelines this file builds
itself (the smallest configurations diffusers' own pipeline tests run, not amari.testing's), offline.

Each file amari writes is checked against its consumer: diffusers runs for real (`load_textual_inversion`
twice for SDXL's two encoders, `load_lora_weights` for SDXL and FLUX.1); the other tools' loader rules are
applied to the files, each citing the source it restates.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from amari.cli import main
from amari.errors import LicenceError, ModelError, UsageError
from amari.models.families.registry import detect
from amari.provenance.png import read_provenance
from amari.storage.images import image_files
from amari.testing.sd import write_clip_tokenizer

PROMPT = "a photo of a woman"
WIDTHS = (32, 48)  # SDXL's two text encoders, different so that nothing can mix them up


def _clip(width: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=width,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=1000,
        hidden_act="gelu",
        projection_dim=width,
    )


def _t5_tokenizer(folder):
    """A T5 tokenizer built offline with the `tokenizers` library: SentencePiece-style whole words, letters."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(f"\u2581{w}", -1.0) for w in ("a", "photo", "of", "woman", "person", "face")]
    vocab += [(c, -4.0) for c in "abcdefghijklmnopqrstuvwxyz"] + [("\u2581", -3.0)]
    model = Tokenizer(models.Unigram(vocab, unk_id=2))
    model.pre_tokenizer = pre_tokenizers.Metaspace()
    model.decoder = decoders.Metaspace()
    model.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    T5TokenizerFast(tokenizer_object=model, extra_ids=0).save_pretrained(folder)
    return T5TokenizerFast.from_pretrained(folder)


def build_sdxl(folder):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + WIDTHS[1],
        cross_attention_dim=sum(WIDTHS),
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        sample_size=64,
    )
    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder.parent / "clip-tokenizer"))
    StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(_clip(WIDTHS[0])),
        text_encoder_2=CLIPTextModelWithProjection(_clip(WIDTHS[1])),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
        add_watermarker=False,
    ).save_pretrained(folder)
    return folder


def build_flux(folder, guidance: bool = False):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=guidance,
        axes_dims_rope=(4, 4, 8),
    )
    vae = AutoencoderKL(
        sample_size=32,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    t5 = T5EncoderModel(T5Config(vocab_size=48, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4))
    FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=CLIPTextModel(_clip(32)),
        tokenizer=CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder.parent / "clip-tokenizer")),
        text_encoder_2=t5,
        tokenizer_2=_t5_tokenizer(folder.parent / "t5-tokenizer"),
        transformer=transformer,
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return build_sdxl(tmp_path_factory.mktemp("sdxl") / "model")


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return build_flux(tmp_path_factory.mktemp("flux") / "model")


@pytest.fixture(scope="module")
def flux_dev(tmp_path_factory):
    # Named as schnell on purpose: the weights decide, not the name.
    return build_flux(tmp_path_factory.mktemp("flux-dev") / "FLUX.1-schnell", guidance=True)


@pytest.fixture(scope="module")
def faces(tmp_path_factory, t1_people):
    folder = tmp_path_factory.mktemp("faces")
    for path in t1_people[:2]:
        Image.open(path).convert("RGB").resize((64, 64)).save(folder / path.name)
    return folder


def render(pipe, prompt=PROMPT, **extra):
    generator = torch.Generator().manual_seed(3)
    out = pipe(prompt, num_inference_steps=2, height=64, width=64, generator=generator, output_type="np", **extra)
    return out.images[0]


# 1. Which family -----------------------------------------------------------------------------------


def _file(path, names):
    save_file({name: torch.zeros(2, 2) for name in names}, path)
    return str(path)


def test_the_weights_decide_the_family(sdxl, flux, flux_dev, tiny_sd, tmp_path):
    from amari.testing.flux import build_tiny_flux
    from amari.testing.sdxl import build_tiny_sdxl

    assert [detect(str(m)).name for m in (tiny_sd, sdxl, flux, flux_dev)] == ["sd1", "sdxl", "flux-schnell", "flux-dev"]
    # The builders the rest of the suite and the benchmarks use make what they say.
    built = build_tiny_sdxl(tmp_path / "xl"), build_tiny_flux(tmp_path / "dev", guidance=True)
    assert [detect(str(m)).name for m in built] == ["sdxl", "flux-dev"]
    # Single files, by their keys: an SDXL checkpoint (label_emb, two embedders), BFL's FLUX.1 transformers.
    xl = _file(tmp_path / "a.safetensors", ["model.diffusion_model.label_emb.0.0.weight", "conditioner.embedders.1.x"])
    schnell = _file(tmp_path / "b.safetensors", ["double_blocks.0.img_attn.qkv.weight"])
    dev = _file(tmp_path / "c.safetensors", ["double_blocks.0.img_attn.qkv.weight", "guidance_in.in_layer.weight"])
    assert [detect(p).name for p in (xl, schnell, dev)] == ["sdxl", "flux-schnell", "flux-dev"]
    with pytest.raises(ModelError, match="not a model amari knows"):
        detect(_file(tmp_path / "d.safetensors", ["something.else.weight"]))


def test_each_family_has_its_defaults(sdxl, flux):
    from amari.generate import preset_config
    from amari.mine import MineConfig

    schnell = preset_config("fast", model=str(flux))
    assert (schnell.scheduler, schnell.steps, schnell.guidance_scale) == ("flow_euler", 4, 0.0)
    assert detect(str(flux)).defaults.max_tokens == 256 and detect(str(flux)).defaults.dtype == "bfloat16"
    assert preset_config("fast", model=str(sdxl)).scheduler == "dpmpp_2m"
    # At 1024² the 2022 chain's upscaling gains nothing: SDXL and FLUX.1 restore faces only, SD 1.x upscales.
    enhance = MineConfig(prompt=PROMPT, model=str(sdxl), face_restorer="x.pth").enhance_config()
    assert enhance.upscaler is None and enhance.scale == 1.0
    chosen = MineConfig(prompt=PROMPT, model=str(sdxl), face_restorer="x.pth", enhancement="upscale")
    assert chosen.enhance_config().upscaler == "RealESRGAN_x4plus" and chosen.enhance_config().scale == 2.0
    with pytest.raises(UsageError, match="flow_euler"):
        MineConfig(prompt=PROMPT, model=str(flux), sampler="ddim", enhance=False)


def test_doctor_says_what_each_family_needs_and_whether_the_gpu_has_it():
    from amari.doctor.memory import memory_rows

    rows = {row[0]: row for row in memory_rows(24.0)}
    assert set(rows) == {"SD 1.x", "SD 2.x", "SDXL", "FLUX.1"}
    assert rows["SDXL"][-1] == "yes: generates and trains" and rows["FLUX.1"][-1] == "no"
    assert rows["FLUX.1"][4] == "not offered"
    assert memory_rows(30.0)[-1][-1] == "only with --offload (slower)"
    assert {row[-1] for row in memory_rows(None)} == {"no GPU"}


# 2. Mining and the licence ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("family, base", [("sdxl", "sdxl"), ("flux", "flux")])
def test_mine_writes_judged_pngs_that_name_the_family(request, family, base, tmp_path, capsys, one_thread):
    model = request.getfixturevalue(family)
    workspace = tmp_path / "ws"
    args = ["mine", "--workspace", str(workspace), "--source", "diffusers", "--model", str(model), "--prompt", PROMPT]
    args += ["--width", "64", "--height", "64", "--steps", "2", "--gen-batch", "2", "--max-batches", "1"]
    assert main([*args, "--seed", "5", "--no-enhance", "--quiet"]) == 0, capsys.readouterr().err
    judged = image_files(workspace / "unknown-person")  # random weights draw no face
    assert len(judged) >= 2 and not image_files(workspace / "sim-group")
    for path in judged:
        record = read_provenance(path)
        assert record.amari["model_base"] == base and record.amari["family"] == detect(str(model)).name
        assert json.loads(Image.open(path).info["invokeai_metadata"])["model"]["base"] == base


def test_flux_dev_weights_are_refused_for_biometric_work_in_one_line(flux_dev, tmp_path, capsys):
    args = ["mine", "--workspace", str(tmp_path / "ws"), "--model", str(flux_dev), "--prompt", PROMPT]
    assert main(args) == LicenceError.exit_code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "FLUX.1 [dev] Non-Commercial License" in err and "FLUX.1 [schnell]" in err and "--biometric-licence" in err
    assert not (tmp_path / "ws").exists()
    # Evaluation scores faces too; training validates against a reference group's faces, without one it does not.
    from amari.evaluate.config import Command, EvaluateConfig
    from amari.train.config import TrainConfig

    grid = {"prompts": ("a photo of amari",), "commands": (Command(name="sd1", seed=1),), "sampler": "flow_euler"}
    with pytest.raises(LicenceError, match="amari evaluate"):
        EvaluateConfig(model=str(flux_dev), **grid)
    with pytest.raises(LicenceError, match="--reference-group"):
        TrainConfig(model=str(flux_dev), method="lora", reference_group=tmp_path)
    TrainConfig(model=str(flux_dev), method="lora")


@pytest.mark.slow
def test_a_licence_holder_names_the_licence_and_the_run_says_on_what_terms(flux_dev, tmp_path, capsys, one_thread):
    args = ["mine", "--workspace", str(tmp_path / "ws"), "--model", str(flux_dev), "--prompt", PROMPT]
    args += ["--width", "32", "--height", "32", "--steps", "1", "--gen-batch", "1", "--max-batches", "1"]
    assert main([*args, "--no-enhance", "--quiet", "--biometric-licence", "BFL commercial licence 42"]) == 0
    said = capsys.readouterr()
    assert "FLUX.1 [dev]: biometric processing under the licence you named: BFL commercial licence 42" in (
        said.out + said.err
    )
    assert image_files(tmp_path / "ws" / "unknown-person")


# 3. Training and the files -----------------------------------------------------------------------


def _train(model, images, out, *extra):
    args = ["train", str(images), "--out", str(out), "--model", str(model), "--resolution", "64", "--steps", "2"]
    args += ["--checkpoint-every", "2", "--sample-seeds", "", "--mixed-precision", "no", *extra]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def sdxl_pivotal(sdxl, faces, tmp_path_factory):
    """Pivotal tuning on SDXL: a vector in each text encoder, a LoRA on the UNet and both encoders."""
    out = tmp_path_factory.mktemp("sdxl-pivotal") / "out"
    # Its own VAE given as a replacement (--vae reaches training): the same weights, so the files agree.
    extra = ("--text-encoder-lora", "--vae", str(sdxl / "vae"), "--lr", "0.5", "--unet-lr", "0.05")
    return _train(sdxl, faces, out, "--method", "pivotal", *extra)


def _encoder_widths(pipe) -> tuple[int, int]:
    return tuple(e.get_input_embeddings().weight.shape[-1] for e in (pipe.text_encoder, pipe.text_encoder_2))


def test_sdxl_textual_inversion_is_one_file_with_clip_l_and_clip_g(sdxl, faces, tmp_path, one_thread):
    from diffusers import StableDiffusionXLPipeline

    out = _train(sdxl, faces, tmp_path / "ti", "--method", "ti", "--lr", "0.5")
    state = load_file(out / "amari.safetensors")
    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    assert set(state) == {"clip_l", "clip_g"}
    assert (state["clip_l"].shape, state["clip_g"].shape) == ((1, WIDTHS[0]), (1, WIDTHS[1]))
    assert _encoder_widths(pipe) == WIDTHS
    # A1111's rule (modules/textual_inversion/textual_inversion.py, create_embedding_from_data): a dict with
    # clip_g and clip_l is an SDXL embedding of clip_g's rows and both widths together.
    assert state["clip_g"].shape[-1] + state["clip_l"].shape[-1] == sum(WIDTHS)
    # ComfyUI's rule (comfy/sd1_clip.py, load_embed): each tokenizer reads its own key, clip_l or clip_g.
    assert all(key in state for key in ("clip_l", "clip_g"))
    before = render(pipe, "a photo of <amari>")
    # diffusers' recipe for SDXL embeddings: one call per text encoder and tokenizer.
    pipe.load_textual_inversion(
        state["clip_g"], token="<amari>", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2
    )
    pipe.load_textual_inversion(
        state["clip_l"], token="<amari>", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
    )
    after = render(pipe, "a photo of <amari>")
    assert np.abs(after - before).max() > 1e-3


@pytest.mark.slow
def test_sdxl_pivotal_lora_files_load_and_agree(sdxl, sdxl_pivotal, one_thread):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    state = load_file(sdxl_pivotal / "amari.safetensors")
    for key, encoder, tokenizer in (
        ("clip_l", pipe.text_encoder, pipe.tokenizer),
        ("clip_g", pipe.text_encoder_2, pipe.tokenizer_2),
    ):
        pipe.load_textual_inversion(state[key], token="<amari>", text_encoder=encoder, tokenizer=tokenizer)
    plain = render(pipe, "a photo of <amari>")
    pipe.load_lora_weights(sdxl_pivotal, adapter_name="diffusers")
    with_lora = render(pipe, "a photo of <amari>")
    pipe.unload_lora_weights()
    pipe.load_lora_weights(str(sdxl_pivotal / "amari-lora.safetensors"), adapter_name="kohya")
    with_kohya = render(pipe, "a photo of <amari>")
    assert np.abs(with_lora - plain).max() > 1e-3
    assert np.abs(with_kohya - with_lora).max() < 1e-4  # diffusers maps kohya's SGM names to the same modules
    kohya = load_file(sdxl_pivotal / "amari-lora.safetensors")
    modules = {key.split(".")[0] for key in kohya}
    # kohya's SDXL prefixes (networks/lora.py: lora_unet, lora_te1, lora_te2); ComfyUI (comfy/lora.py,
    # model_lora_keys_clip) maps lora_te1_/lora_te2_ + the encoder's own module path to clip_l / clip_g.
    unet = ("lora_unet_input_blocks_", "lora_unet_middle_block_", "lora_unet_output_blocks_")  # SGM's numbering
    text = ("lora_te1_text_model_encoder_layers_", "lora_te2_text_model_encoder_layers_")
    assert all(m.startswith(unet + text) for m in modules)
    assert {prefix for prefix in unet[:1] + text if any(m.startswith(prefix) for m in modules)} == {unet[0], *text}
    with safe_open(str(sdxl_pivotal / "amari-lora.safetensors"), "pt") as handle:
        meta = handle.metadata()
    # A1111 (extensions-builtin/Lora/network.py, detect_version): an ss_base_model_version starting sdxl_.
    assert meta["ss_base_model_version"].startswith("sdxl_")


def test_flux_lora_loads_in_diffusers_and_changes_the_image(flux, faces, tmp_path, one_thread):
    from diffusers import FluxPipeline

    out = _train(flux, faces, tmp_path / "lora", "--method", "lora", "--unet-lr", "0.05")
    pipe = FluxPipeline.from_pretrained(flux)
    pipe.set_progress_bar_config(disable=True)
    before = render(pipe, max_sequence_length=32)
    pipe.load_lora_weights(out)
    after = render(pipe, max_sequence_length=32)
    assert np.abs(after - before).max() > 1e-3
    keys = load_file(out / "pytorch_lora_weights.safetensors")
    # ComfyUI's rule for FLUX.1 (comfy/lora.py, model_lora_keys_unet with comfy/utils.py flux_to_diffusers):
    # `transformer.<diffusers module>` keys with lora_A/lora_B weights, for the attention projections it maps
    # onto BFL's fused qkv and proj weights.
    mapped = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0")
    modules = {key.rsplit(".lora_", 1)[0] for key in keys}
    assert modules and all(m.startswith("transformer.") and m.endswith(mapped) for m in modules)
    assert {key.rsplit(".", 2)[-2] for key in keys} == {"lora_A", "lora_B"}


def test_flux_refuses_textual_inversion_and_says_so(flux, faces, tmp_path, capsys):
    args = ["train", str(faces), "--out", str(tmp_path / "out"), "--model", str(flux), "--method", "ti"]
    assert main(args) == UsageError.exit_code
    assert "use --method lora" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "not offered for FLUX.1" in shown and "use --method lora" in shown


# 4. Generation safeguards ------------------------------------------------------------------------


def test_an_sdxl_embedding_goes_into_both_encoders_when_amari_generates(sdxl, sdxl_pivotal, one_thread):
    from amari.generate import Embedding, generate, preset_config

    config = preset_config("fast", model=str(sdxl), steps=2, width=64, height=64, batch_size=1)
    plain = generate("a photo of <amari>", seeds=[4], config=config, progress=False).images[0]
    trained = Embedding(str(sdxl_pivotal / "amari.safetensors"), "<amari>")
    made = generate("a photo of <amari>", seeds=[4], config=config.replace(embeddings=(trained,)), progress=False)
    assert not np.array_equal(np.asarray(plain.image), np.asarray(made.images[0].image))


@pytest.mark.slow
def test_sdxl_vae_is_upcast_in_float16_and_an_overflow_is_one_error(sdxl, tmp_path, one_thread):
    """A VAE whose decoder overflows float16 decodes fine when upcast, as diffusers does for SDXL's VAE;
    the same VAE marked as float16-safe makes NaNs, which amari stops on with one line."""
    from amari.generate import GenerateConfig, generate

    folder = tmp_path / "overflowing"
    shutil.copytree(sdxl, folder)
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["decoder.conv_in.weight"] = state["decoder.conv_in.weight"] * 1e5  # activations past float16's 65504
    save_file(state, weights)
    config = GenerateConfig(model=str(folder), steps=1, width=32, height=32, dtype="float16", device="cpu")
    image = generate(PROMPT, seeds=[1], config=config, progress=False).images[0].image
    assert np.asarray(image).std() > 0
    settings = json.loads((folder / "vae" / "config.json").read_text())
    (folder / "vae" / "config.json").write_text(json.dumps({**settings, "force_upcast": False}))
    with pytest.raises(ModelError, match="NaN.*sdxl-vae-fp16-fix"):
        generate(PROMPT, seeds=[1], config=config.replace(vae=str(folder / "vae")), progress=False)


def test_a_replacement_vae_changes_the_images_and_is_named(sdxl, tmp_path, one_thread):
    from diffusers import AutoencoderKL

    from amari.generate import GenerateConfig, generate

    torch.manual_seed(7)
    other = AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
    )
    other.save_pretrained(tmp_path / "other-vae")
    config = GenerateConfig(model=str(sdxl), steps=2, width=64, height=64)
    plain = generate(PROMPT, seeds=[2], config=config, progress=False).images[0]
    swapped = generate(PROMPT, seeds=[2], config=config.replace(vae=str(tmp_path / "other-vae")), progress=False)
    image = swapped.images[0]
    assert not np.array_equal(np.asarray(plain.image), np.asarray(image.image))
    assert image.params["vae"] == "other-vae" and "vae" not in plain.params


def test_offload_without_a_gpu_is_a_usage_error(sdxl):
    from amari.generate import GenerateConfig, generate

    with pytest.raises(UsageError, match="offload"):
        generate(PROMPT, seeds=[1], config=GenerateConfig(model=str(sdxl), device="cpu", offload=True), progress=False)


def test_a_sharded_model_in_the_hub_cache_is_told_and_checked_shard_by_shard(
    flux_dev, isolated_state, tmp_path, monkeypatch
):
    """FLUX.1's transformer and T5 ship in shards: the family is read from the shard index's tensor names,
    and `amari models list` counts the model present only when every shard is there."""
    import huggingface_hub.constants
    from diffusers import FluxTransformer2DModel

    from amari.models.inventory import check, model_need
    from test_inventory import _hub_cache

    folder = tmp_path / "sharded"
    shutil.copytree(flux_dev, folder)
    transformer = FluxTransformer2DModel.from_pretrained(folder / "transformer")
    shutil.rmtree(folder / "transformer")
    transformer.save_pretrained(folder / "transformer", max_shard_size="40KB")
    shards = sorted((folder / "transformer").glob("diffusion_pytorch_model-*.safetensors"))
    assert len(shards) > 1
    snapshot = _hub_cache(isolated_state / "hf", "amari-test/flux-dev", folder)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(isolated_state / "hf" / "hub"))
    assert detect("amari-test/flux-dev").name == "flux-dev"  # offline, from the cache: the guidance weights
    assert check(model_need("amari-test/flux-dev")).state == "present"
    (snapshot / "transformer" / shards[-1].name).unlink()
    assert check(model_need("amari-test/flux-dev")).state == "missing"
