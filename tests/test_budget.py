"""The GPU budget's choices, exercised where no GPU is: batch sizes and gradient checkpointing from a memory
figure, torch.compile's fallback, LoRAs fused into a compiled UNet, Ray's GPU shares and the guard against
an all-black image."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from amari.execution.memory import (
    GIB,
    MINING_BATCH_CAP,
    batch_for_memory,
    generation_batch,
    needs_checkpointing,
    upscale_batch_size,
)
from amari.models.compiling import compile_in_place, is_compiled, padded, should_compile

# What torch reports free on an 80 GB H100 and a 24 GB card once Stable Diffusion 1.x is loaded.
H100_FREE, SMALL_FREE = 76 * GIB, 20 * GIB


def test_batches_and_checkpointing_follow_the_free_memory():
    assert generation_batch(H100_FREE, 512, 512) == MINING_BATCH_CAP == 16
    assert generation_batch(SMALL_FREE, 512, 512) == 7
    assert generation_batch(SMALL_FREE, 1024, 1024) == 1  # four times the pixels
    assert generation_batch(3 * GIB, 512, 512) == 1  # never less than one
    assert generation_batch(None, 512, 512, largest=5) == 5  # unknown (MPS): the caller's largest
    assert generation_batch(H100_FREE, 512, 512, largest=5) == 5  # a prompt's five commands
    assert upscale_batch_size(SMALL_FREE, 512, 512, 16) == 12 and upscale_batch_size(6 * GIB, 512, 512, 16) == 2
    assert batch_for_memory(10 * GIB, 2 * GIB, 100, reserve=0) == 5
    # Three groups of Textual Inversion at 512 px fit an H100 without gradient checkpointing; not 24 GB.
    assert not needs_checkpointing(H100_FREE, 3, 512)
    assert needs_checkpointing(SMALL_FREE, 3, 512) and not needs_checkpointing(SMALL_FREE, 1, 512)
    assert needs_checkpointing(None, 1, 512)


def test_compiling_is_on_by_default_on_cuda_only():
    assert should_compile(None, "cuda") and should_compile(None, "cuda:1")
    assert not should_compile(None, "cpu") and not should_compile(None, "mps")
    assert should_compile(True, "cpu") and not should_compile(False, "cuda")
    assert padded([1, 2], 4) == [1, 2, 2, 2] and padded([1, 2], 2) == [1, 2]


def test_a_failed_compile_says_so_once_and_runs_uncompiled():
    def no_compiler(graph, inputs):
        raise RuntimeError("no C++ compiler here")

    torch.manual_seed(0)
    module, said = torch.nn.Linear(4, 3), []
    x = torch.randn(2, 4)
    expected = module(x)
    assert compile_in_place(module, "the test network", said.append, backend=no_compiler)
    assert is_compiled(module)
    assert torch.equal(module(x), expected)  # the failure is caught at the first call, which runs eagerly
    assert said == ["the test network runs uncompiled: torch.compile failed (RuntimeError: no C++ compiler here)"]
    assert not is_compiled(module)
    assert torch.equal(module(x), expected) and len(said) == 1  # once only


def test_a_compiled_module_stays_itself():
    module, said = torch.nn.Linear(4, 3), []
    assert compile_in_place(module, "the test network", said.append, backend="eager")
    x = torch.randn(2, 4)
    assert torch.equal(module(x), torch.nn.functional.linear(x, module.weight, module.bias))
    assert is_compiled(module) and said == [] and module.out_features == 3  # attributes read as before


def test_model_actors_share_gpus_so_that_every_one_fits():
    from amari.execution.cluster import ClusterError, check_gpus, gpu_share

    assert gpu_share(2, 2) == gpu_share(4, 2) == 1.0
    assert gpu_share(2, 3) == 0.5  # two actors on one GPU, one on the other
    assert gpu_share(1, 3) == 0.3333
    # Ray counts a GPU in steps of 1/10,000: k actors of the share always fit on one GPU.
    for gpus in (1, 2, 3, 8):
        for actors in range(1, 25):
            units = round(gpu_share(gpus, actors) * 10_000)
            per_gpu = -(-actors // gpus)
            assert units * per_gpu <= 10_000 and gpus * (10_000 // units) >= actors
    assert gpu_share(0, 2) == 0.0
    # A cluster without GPUs runs model actors on CPUs only on purpose, or said plainly.
    with pytest.raises(ClusterError, match="reports no GPUs"):
        check_gpus(0, "cuda", driver_has_gpu=False)
    with pytest.raises(ClusterError, match="ray start --num-gpus"):
        check_gpus(0, "auto", driver_has_gpu=True)
    said = "the Ray cluster reports no GPUs: its model actors run on CPUs"
    assert check_gpus(0, "auto", driver_has_gpu=False) == said
    assert check_gpus(0, "cpu", driver_has_gpu=True) is None and check_gpus(2, "cuda", True) is None


@pytest.mark.slow
def test_a_compiled_unet_takes_each_lora_fused_and_gets_its_weights_back(tmp_path, tiny_sd):
    """A compiled UNet must keep its graph: its LoRAs are fused into the weights (no LoRA layers), and the
    weights go back bit for bit when the next unit (here the control group) has none."""
    from amari.generate import GenerateConfig, Lora, generate, load_model
    from test_evaluate import _tiny_lora

    _tiny_lora(tiny_sd, tmp_path / "lora", "lora", None, seed=1)
    base = GenerateConfig(model=str(tiny_sd), scheduler="ddim", steps=2, width=64, height=64, device="cpu")
    with_lora = dataclasses.replace(base, loras=(Lora(str(tmp_path / "lora" / "amari-lora.safetensors")),))
    model = load_model(base)
    plain_modules = [name for name, _ in model.pipe.unet.named_modules()]
    plain_weights = {name: value.clone() for name, value in model.pipe.unet.state_dict().items()}

    def image(config) -> np.ndarray:
        made = generate("a photo of amari woman", seeds=[3], config=config, progress=False)
        return np.asarray(made.images[0].image, dtype=np.int16)

    adapter, plain = image(with_lora), image(base)  # peft's LoRA layers, then unloaded
    model.compiled = True  # as `load_model` marks a UNet it compiled
    try:
        fused = image(with_lora)
        assert [name for name, _ in model.pipe.unet.named_modules()] == plain_modules  # the same graph
        assert np.abs(fused - adapter).max() <= 1 and np.abs(fused - plain).max() > 0
        assert np.array_equal(image(base), plain)
        weights = model.pipe.unet.state_dict()
        assert all(torch.equal(weights[name], value) for name, value in plain_weights.items())
    finally:
        model.compiled = False


def test_an_all_black_image_is_an_error_not_a_face_missing(tiny_sd):
    """NaN in half precision decodes to black; a broken VAE is made here by a decoder that puts out -100."""
    from amari.errors import ModelError
    from amari.generate import GenerateConfig, generate, load_model

    config = GenerateConfig(model=str(tiny_sd), scheduler="ddim", steps=2, width=64, height=64, device="cpu")
    conv = load_model(config).pipe.vae.decoder.conv_out
    saved = conv.bias.detach().clone()
    try:
        with torch.no_grad():
            conv.bias.fill_(-100.0)
        with pytest.raises(ModelError, match="made an all-black image \\(seed 7, float32\\)"):
            generate("a photo of a woman", seeds=[7], config=config, progress=False)
    finally:
        with torch.no_grad():
            conv.bias.copy_(saved)
    made = generate("a photo of a woman", seeds=[7], config=config, progress=False)
    assert max(high for _low, high in made.images[0].image.getextrema()) > 0
