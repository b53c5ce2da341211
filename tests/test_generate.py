"""Generation with a tiny random-weight Stable Diffusion saved to disk and loaded the way users load models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amari.errors import ModelError, UsageError
from amari.generate import SAMPLERS, Embedding, GenerateConfig, generate, load_model, preset_config, with_overrides
from amari.generate.pipeline import model_source
from amari.storage.files import file_sha256

PROMPT = "a photo of a woman"


@pytest.fixture(scope="module")
def config(tiny_sd):
    return preset_config("fast", model=str(tiny_sd), steps=3, batch_size=4)


def pixels(generated):
    return np.asarray(generated.image, dtype=np.int16)


def test_same_seed_gives_the_same_image(config):
    first = generate(PROMPT, seeds=[11, 12], config=config, progress=False)
    second = generate(PROMPT, seeds=[11, 12], config=config, progress=False)
    assert first.seeds == [11, 12]
    assert np.array_equal(pixels(first.images[0]), pixels(second.images[0]))
    assert not np.array_equal(pixels(first.images[0]), pixels(first.images[1]))
    assert first.images[0].image.size == (64, 64)  # the tiny model's native size


def test_any_image_regenerates_alone_from_its_seed(config):
    batch = generate(PROMPT, seeds=[3, 4, 5, 6, 7], config=config, progress=False)  # passes of 4 + 1
    alone = generate(PROMPT, seeds=[5], config=config, progress=False)
    # Batched matrix products may round differently from single ones; the image is the same.
    assert np.abs(pixels(batch.images[2]) - pixels(alone.images[0])).max() <= 2
    assert np.abs(pixels(batch.images[3]) - pixels(alone.images[0])).max() > 2


def test_random_seeds_are_recorded_and_reproduce(config):
    result = generate(PROMPT, count=2, config=config, progress=False)
    assert len(result.seeds) == 2 and all(0 <= s < 2**32 for s in result.seeds)
    again = generate(PROMPT, seeds=[result.seeds[1]], config=config, progress=False)
    assert np.abs(pixels(result.images[1]) - pixels(again.images[0])).max() <= 2


@pytest.mark.parametrize("scheduler", sorted(name for name in SAMPLERS if not name.startswith("flow_")))
def test_every_scheduler_runs(config, scheduler):
    result = generate(PROMPT, seeds=[1], config=with_overrides(config, scheduler=scheduler, steps=3), progress=False)
    image = pixels(result.images[0])
    assert image.shape == (64, 64, 3) and image.std() > 1
    assert result.images[0].params["sampler"] == scheduler


def test_scheduler_switches_do_not_leak_options(config):
    ddim = with_overrides(config, scheduler="ddim")
    before = generate(PROMPT, seeds=[8], config=ddim, progress=False)
    generate(PROMPT, seeds=[8], config=with_overrides(config, scheduler="dpmpp_2m"), progress=False)
    after = generate(PROMPT, seeds=[8], config=ddim, progress=False)
    assert np.array_equal(pixels(before.images[0]), pixels(after.images[0]))
    model = load_model(ddim)
    assert not model.pipe.scheduler.config.get("use_karras_sigmas", False)


def test_model_loads_once_per_process(config):
    first = load_model(config)
    assert load_model(with_overrides(config, scheduler="unipc", steps=9)) is first


def test_size_cfg_and_negative_prompt_take_effect(config):
    base = generate(PROMPT, seeds=[2], config=config, progress=False).images[0]
    negative = generate(
        PROMPT, seeds=[2], config=with_overrides(config, negative_prompt="smiling"), progress=False
    ).images[0]
    wide = generate(PROMPT, seeds=[2], config=with_overrides(config, width=96, height=64), progress=False).images[0]
    assert not np.array_equal(pixels(base), pixels(negative))
    assert wide.image.size == (96, 64) and wide.params["width"] == 96
    assert negative.params["negative_prompt"] == "smiling"


def test_params_describe_the_image(config, tiny_sd):
    image = generate([PROMPT + " smiling"], seeds=[77], config=config, progress=False).images[0]
    assert image.params == {
        "prompt": PROMPT + " smiling",
        "negative_prompt": "",
        "seed": 77,
        "steps": 3,
        "sampler": "dpmpp_2m",
        "cfg_scale": 7.5,
        "width": 64,
        "height": 64,
        "model": tiny_sd.name,
        "model_base": "sd-1",
        "family": "sd1",
    }


def test_presets():
    study = preset_config("study", model="some/model")
    assert (study.scheduler, study.steps, study.guidance_scale, study.batch_size) == ("ddim", 250, 8.2653, 4)
    assert (study.width, study.height) == (512, 512)
    fast = preset_config("fast", model="some/model", steps=30)
    assert (fast.scheduler, fast.steps) == ("dpmpp_2m", 30)
    with pytest.raises(UsageError, match="unknown preset"):
        preset_config("slow")


@pytest.mark.parametrize(
    "bad",
    [
        {"scheduler": "heun_x"},
        {"steps": 0},
        {"width": 100},
        {"batch_size": 0},
        {"dtype": "float8"},
        {"device": "tpu"},
        {"guidance_scale": -1},
    ],
)
def test_bad_settings_are_usage_errors(bad):
    with pytest.raises(UsageError):
        GenerateConfig(**bad)


def test_bad_requests_are_usage_errors(config):
    with pytest.raises(UsageError, match="prompt"):
        generate("  ", seeds=[1], config=config, progress=False)
    with pytest.raises(UsageError, match="seeds"):
        generate(PROMPT, config=config, progress=False)
    with pytest.raises(UsageError, match="seed"):
        generate(PROMPT, seeds=[-1], config=config, progress=False)
    with pytest.raises(UsageError, match="2 prompts for 1 seeds"):
        generate([PROMPT, PROMPT], seeds=[1], config=config, progress=False)


def test_missing_models_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        model_source(str(tmp_path / "nothing.safetensors"))
    with pytest.raises(ModelError, match="model_index.json"):
        model_source(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match=".ckpt or .safetensors"):
        model_source(str(tmp_path / "weights.bin"))


def test_hub_id_offline_without_cache_says_how_to_get_it():
    with pytest.raises(ModelError) as caught:
        load_model(GenerateConfig(model="CompVis/stable-diffusion-v1-4"))
    message = str(caught.value)
    assert "hf download CompVis/stable-diffusion-v1-4" in message


# Textual inversion -------------------------------------------------------------------------------


def _width(config) -> int:
    return load_model(config).pipe.text_encoder.get_input_embeddings().weight.shape[-1]


def test_textual_inversion_embeddings_load_switch_and_unload(config, tmp_path):
    from safetensors.torch import save_file

    width = _width(config)
    torch.manual_seed(0)
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"<amari>": torch.randn(1, width)}, first)  # diffusers layout
    save_file({"emb_params": torch.randn(2, width)}, second)  # kohya layout, 2 vectors
    prompt = "a photo of <amari>"

    plain = generate(prompt, seeds=[4], config=config, progress=False).images[0]
    with_first = generate(
        prompt, seeds=[4], config=with_overrides(config, embeddings=(Embedding(str(first), "<amari>"),)), progress=False
    ).images[0]
    with_second = generate(
        prompt,
        seeds=[4],
        config=with_overrides(config, embeddings=(Embedding(str(second), "<amari>"),)),
        progress=False,
    ).images[0]
    plain_again = generate(prompt, seeds=[4], config=config, progress=False).images[0]

    assert not np.array_equal(pixels(plain), pixels(with_first))
    assert not np.array_equal(pixels(with_first), pixels(with_second))
    assert np.array_equal(pixels(plain), pixels(plain_again))
    (record,) = with_first.params["embeddings"]
    assert record["token"] == "<amari>" and record["path"] == "a.safetensors" and record["name"] == "a"
    assert record["hash"] == file_sha256(first)[:12]  # A1111's "TI hashes" form


def test_a1111_pickled_embedding_loads_safely(config, tmp_path):
    width = _width(config)
    path = tmp_path / "amari.pt"
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": {"*": torch.randn(1, width)},
            "name": "amari",
            "step": 15500,
        },
        path,
    )
    result = generate(
        "a photo of <a1111>",
        seeds=[1],
        progress=False,
        config=with_overrides(config, embeddings=(Embedding(str(path), "<a1111>"),)),
    )
    assert result.images[0].params["embeddings"][0]["token"] == "<a1111>"


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_malicious_embedding_does_not_run(config, tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.pt"
    torch.save({"string_to_param": {"*": torch.zeros(1, _width(config))}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(ModelError, match="refused"):
        generate(
            PROMPT,
            seeds=[1],
            progress=False,
            config=with_overrides(config, embeddings=(Embedding(str(path), "<evil>"),)),
        )
    assert not marker.exists()


def test_embedding_mismatches_are_clear(config, tmp_path):
    from safetensors.torch import save_file

    wrong = tmp_path / "sd2.safetensors"
    save_file({"<x>": torch.randn(1, 1024)}, wrong)
    with pytest.raises(ModelError, match="width 1024"):
        generate(
            PROMPT, seeds=[1], progress=False, config=with_overrides(config, embeddings=(Embedding(str(wrong), "<x>"),))
        )
    good = tmp_path / "good.safetensors"
    save_file({"<x>": torch.randn(1, _width(config))}, good)
    with pytest.raises(UsageError, match="<|endoftext|>"):
        generate(
            PROMPT,
            seeds=[1],
            progress=False,
            config=with_overrides(config, embeddings=(Embedding(str(good), "<|endoftext|>"),)),
        )
    not_embedding = tmp_path / "model.safetensors"
    save_file({"a": torch.randn(2, 2), "b": torch.randn(2)}, not_embedding)
    with pytest.raises(ModelError, match="not a textual-inversion embedding"):
        generate(
            PROMPT,
            seeds=[1],
            progress=False,
            config=with_overrides(config, embeddings=(Embedding(str(not_embedding), "<y>"),)),
        )
