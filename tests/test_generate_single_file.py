"""Single-file Stable Diffusion checkpoints (.safetensors and .ckpt in the original LDM key layout), offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amari.errors import ModelError
from amari.generate import generate, preset_config, with_overrides
from amari.testing.ldm import export_ldm

PROMPT = "a photo of a woman"


@pytest.fixture(scope="module")
def checkpoints(tiny_sd, tmp_path_factory):
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("single-file")
    state = export_ldm(tiny_sd)
    save_file(state, folder / "tiny-sd.safetensors")
    # Lightning-era checkpoints wrap the weights and carry bookkeeping beside them.
    torch.save({"state_dict": state, "global_step": 470000, "epoch": 6}, folder / "tiny-sd.ckpt")
    return folder


@pytest.fixture(scope="module")
def config(tiny_sd):
    return preset_config("fast", model=str(tiny_sd), steps=3)


@pytest.fixture(scope="module")
def reference(config):
    return np.asarray(generate(PROMPT, seeds=[21], config=config, progress=False).images[0].image)


@pytest.mark.parametrize("name", ["tiny-sd.safetensors", "tiny-sd.ckpt"])
def test_single_file_gives_the_same_images_as_the_folder(config, checkpoints, tiny_sd, reference, name):
    single = with_overrides(config, model=str(checkpoints / name), model_config=str(tiny_sd))
    result = generate(PROMPT, seeds=[21], config=single, progress=False)
    assert np.array_equal(np.asarray(result.images[0].image), reference)
    assert result.images[0].params["model"] == "tiny-sd"  # the file's name, not its path


def test_single_file_offline_without_configs_says_what_to_pass(config, checkpoints):
    lonely = with_overrides(config, model=str(checkpoints / "tiny-sd.safetensors"))
    with pytest.raises(ModelError, match="--model-config FOLDER_OR_ID"):
        generate(PROMPT, seeds=[1], config=lonely, progress=False)


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_malicious_checkpoint_is_refused_and_never_runs(config, tiny_sd, tmp_path):
    marker = tmp_path / "ran.txt"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "callbacks": _RunsCode(marker)}, evil)
    with pytest.raises(ModelError, match="refused"):
        generate(
            PROMPT, seeds=[1], progress=False, config=with_overrides(config, model=str(evil), model_config=str(tiny_sd))
        )
    assert not marker.exists()


def test_corrupt_checkpoint_is_a_model_error(config, tiny_sd, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError):
        generate(
            PROMPT,
            seeds=[1],
            progress=False,
            config=with_overrides(config, model=str(broken), model_config=str(tiny_sd)),
        )


def test_malicious_weights_in_a_diffusers_folder_are_refused(config, tiny_sd, tmp_path):
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "evil-pipeline"
    shutil.copytree(tiny_sd, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    weights.unlink()
    marker = tmp_path / "ran.txt"
    torch.save({**state, "extra": _RunsCode(marker)}, folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelError, match="refused.*diffusion_pytorch_model.bin|diffusion_pytorch_model.bin.*refused"):
        generate(PROMPT, seeds=[1], progress=False, config=with_overrides(config, model=str(folder)))
    assert not marker.exists()
