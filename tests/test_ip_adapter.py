"""IP-Adapter guidance on the tiny model: the layout diffusers loads, guided images that differ and say so in
their metadata, refusals, and the miner guided by its group's faces."""

from __future__ import annotations

import numpy as np
import pytest

from amari.cli import main
from amari.errors import ModelError, UsageError
from amari.generate import GenerateConfig, generate
from amari.generate.ip_adapter import IpAdapter, make_guide, resolve
from amari.provenance.infotext import parse_a1111_parameters
from amari.provenance.png import read_provenance
from amari.storage.images import image_files, load_rgb

PROMPT = "a photo of a woman"


@pytest.fixture(scope="module")
def guide(people):
    photos = people["obama"]
    return make_guide([load_rgb(path) for path in photos], [path.name for path in photos])


def test_the_files_load_with_diffusers_own_loader(tiny_sd, tiny_ip_adapter, one_thread):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None, requires_safety_checker=False)
    root = tiny_ip_adapter.parent.parent
    pipe.load_ip_adapter(str(root), subfolder="models", weight_name=tiny_ip_adapter.name)
    assert pipe.image_encoder is not None and len(pipe.unet.encoder_hid_proj.image_projection_layers) == 1


def test_guided_generation_changes_the_image_and_records_its_scale(tiny_sd, tiny_ip_adapter, guide, one_thread):
    config = GenerateConfig(model=str(tiny_sd), steps=2, batch_size=2, device="cpu", scheduler="ddim")

    def pixels(changes: dict) -> list:
        result = generate(PROMPT, seeds=[5, 6], config=config.replace(**changes), progress=False)
        return result.images

    plain = pixels({})
    guided = pixels({"ip_adapter": IpAdapter(str(tiny_ip_adapter), 0.8, guide)})
    off = pixels({"ip_adapter": IpAdapter(str(tiny_ip_adapter), 0.0, guide)})
    again = pixels({})  # the adapter is unloaded when no longer asked for
    for a, b, c, d in zip(plain, guided, off, again):
        a, b, c, d = (np.asarray(x.image, dtype=np.int16) for x in (a, b, c, d))
        assert np.abs(a - b).max() > 20 and np.abs(a - c).max() <= 1 and np.array_equal(a, d)
    recorded = guided[0].params["ip_adapter"]
    assert recorded["scale"] == 0.8 and recorded["guide"] == guide.key and recorded["images"] == 3
    assert recorded["name"] == tiny_ip_adapter.stem and "ip_adapter" not in plain[0].params


def test_refused_before_loading(tmp_path, tiny_ip_adapter, capsys):
    with pytest.raises(UsageError, match="pickled"):
        resolve(str(tmp_path / "ip-adapter.bin"), None, "sd-1")
    with pytest.raises(ModelError, match="not for this model"):
        resolve("full-face", None, "sd-2")
    lonely = tmp_path / "lonely.safetensors"
    lonely.write_bytes(tiny_ip_adapter.read_bytes())
    with pytest.raises(ModelError, match="no CLIP image encoder"):
        resolve(str(lonely), None, "sd-1")
    folder = ["--source", f"folder:{tmp_path}", "--ip-adapter", "plus-face"]
    assert main(["mine", "--workspace", str(tmp_path / "ws"), *folder]) == 2
    assert "a folder source takes images as they are" in capsys.readouterr().err


def test_the_miner_guides_generation_with_its_group(tmp_path, tiny_sd, tiny_ip_adapter, people, capsys):
    workspace = tmp_path / "ws"
    args = ["mine", "--workspace", str(workspace), "--source", "diffusers", "--model", str(tiny_sd)]
    args += ["--prompt", PROMPT, "--option", "steps=2", "--no-enhance", "--engine", "serial", "--quiet"]
    args += ["--reference", *map(str, people["obama"]), "--max-batches", "1", "--seed", "7", "--gen-batch", "4"]
    args += ["--ip-adapter", str(tiny_ip_adapter), "--ip-adapter-scale", "0.6", "--guide-from", "2"]
    assert main(args) == 0
    assert "guide " in capsys.readouterr().err
    made = image_files(workspace / "unknown-person")  # noise: the tiny model draws no face
    assert len(made) == 4
    for path in made:
        found = read_provenance(path)
        assert found.amari["ip_adapter"]["scale"] == 0.6 and found.amari["ip_adapter"]["images"] == 3
        assert found.fields == parse_a1111_parameters(found.parameters)
        fields = found.fields
        assert fields["IP-Adapter scale"] == "0.6" and fields["IP-Adapter"].startswith(tiny_ip_adapter.stem)
