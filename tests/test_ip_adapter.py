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


def test_a_study_compares_ip_adapter_without_training_it(tmp_path, tiny_ip_adapter):
    from amari.study.config import study_from_dict
    from amari.study.stages import STAGES, stage_units

    data = {
        "evaluate": {"prompts": ["a photo of amari"], "commands": [{"name": "sd1", "seed": 1}]},
        "train": {"methods": ["ti", "ip-adapter"]},
        "select": {"groups": [{"name": "g_3", "images": 3}]},
    }
    with pytest.raises(UsageError, match="needs \\[evaluate\\] ip_adapter"):
        study_from_dict(data, base=tmp_path)
    data["evaluate"]["ip_adapter"] = str(tiny_ip_adapter)
    config = study_from_dict(data, base=tmp_path)
    assert config.train.study_methods() == ("ti",) and config.evaluate.methods == ("ti", "ip-adapter")
    train = next(stage for stage in STAGES if stage.name == "train")
    assert [unit for _marker, unit in stage_units(train, config)] == [("ti", "g_3")]


def test_the_ip_adapter_cells_are_conditioned_on_each_groups_images(tmp_path, tiny_sd, tiny_ip_adapter, people):
    import shutil

    from amari import evaluate
    from amari.evaluate import Command, EvaluateConfig
    from amari.storage.layout import StudyLayout

    layout = StudyLayout(tmp_path / "study")
    for folder, photos in (
        (layout.workspace.sim_group, people["obama"][:2]),
        (layout.prepared("g_3"), people["obama"]),
    ):
        folder.mkdir(parents=True)
        for photo in photos:
            shutil.copy(photo, folder)
    config = EvaluateConfig(
        prompts=("a photo of amari",),
        commands=(Command("sd1", 1),),
        sampler="ddim",
        steps=2,
        width=64,
        height=64,
        methods=("ip-adapter",),
        training_groups=("g_3",),
        ip_adapter=str(tiny_ip_adapter),
        model=str(tiny_sd),
        device="cpu",
        cnn_second_pass=False,
    )
    result = evaluate.run(config, layout)
    guided, control = (next(c for c in result.cells if c.method == m) for m in ("ip-adapter", ""))
    assert guided.prompt_sent == control.prompt_sent == "a photo of woman"  # the subject is the init word
    images = [layout.results.root / cell.image for cell in (guided, control)]
    assert images[0].parent.parent.name == "ip-adapter"
    adapter = read_provenance(images[0]).amari["ip_adapter"]
    assert adapter["images"] == len(people["obama"]) and adapter["scale"] == 0.6
    assert "ip_adapter" not in read_provenance(images[1]).amari
    assert not np.array_equal(load_rgb(images[0]), load_rgb(images[1]))  # same seed and prompt; the adapter differs
    assert evaluate.run(config, layout).kept == 2  # nothing changed: both kept
