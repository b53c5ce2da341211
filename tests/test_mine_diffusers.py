"""The miner's `diffusers` source: end to end offline with a tiny model, early rejection, seeds, options."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from amari.cli import main
from amari.embeddings import EmbeddingCache, FaceEncoder
from amari.errors import UsageError
from amari.faces import FaceSettings, largest
from amari.generate import DiffusersSource, GeneratedImage, preset_config
from amari.generate.source import rejects_early
from amari.images import image_files, load_rgb
from amari.mine import BatchContext, MineConfig
from amari.provenance import read_provenance
from amari.study.stages import mining_source
from amari.testing.enhance import build_random_esrgan

PROMPT = "a photo of a woman"


@pytest.fixture(scope="module")
def tiny_esrgan(tmp_path_factory):
    return build_random_esrgan(tmp_path_factory.mktemp("esrgan") / "tiny_x4.pth", num_filters=8)


def mine_config(tiny_sd, esrgan=None, **extra) -> MineConfig:
    enhance = {"upscaler": str(esrgan), "face_restorer": "none"} if esrgan else {"enhance": False}
    fields = {key: extra.pop(key) for key in ("seed", "preset") if key in extra}
    options = tuple((key, str(value)) for key, value in {"steps": 2, **enhance, **extra}.items())
    return MineConfig(prompt=PROMPT, model=str(tiny_sd), options=options, **fields)


def options(tiny_sd, esrgan=None, state_path=None, **extra) -> DiffusersSource:
    source = mining_source(mine_config(tiny_sd, esrgan, **extra))
    if state_path is not None:
        source.open(state_path)
    return source


def test_mine_runs_end_to_end_offline(tiny_sd, tiny_esrgan, data_dir, tmp_path, capsys):
    workspace = tmp_path / "ws"
    code = main(
        [
            "mine",
            "--workspace",
            str(workspace),
            "--source",
            "diffusers",
            "--model",
            str(tiny_sd),
            "--prompt",
            PROMPT,
            "--reference",
            str(data_dir / "astronaut.png"),
            "--max-batches",
            "2",
            "--seed",
            "1000",
            "--option",
            "steps=2",
            "--option",
            f"upscaler={tiny_esrgan}",
            "--option",
            "face_restorer=none",
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    generated = image_files(workspace / "unknown-person")
    assert len(generated) >= 4  # tiny random models draw no faces
    assert image_files(workspace / "sim-group")  # the reference
    assert not [p for p in (workspace / "incoming").iterdir()]  # nothing half-written left behind
    seeds = set()
    for path in generated:
        found = read_provenance(path)
        assert found.synthetic and found.watermarked  # 128×128 after ×2 enhancement
        assert (found.width, found.height) == (128, 128)
        assert found.amari["model"] == tiny_sd.name and found.amari["steps"] == 2
        assert found.amari["enhance"]["upscaler"] == tiny_esrgan.name
        assert found.fields["Seed"] == str(found.amari["seed"])
        seeds.add(found.amari["seed"])
    assert seeds == set(range(1000, 1000 + len(generated)))


def test_base_seed_carries_on_across_runs(tiny_sd, tmp_path):
    import sqlite3

    state = tmp_path / "state.sqlite"
    context = BatchContext(
        group=np.empty((0, 128)), upper_bound=0.5, almost_band=0.1, encoder=FaceEncoder(FaceSettings()), batch_number=1
    )
    first = options(tiny_sd, seed=50, state_path=state)
    written = first.next_batch(2, tmp_path / "out", context)
    first.close()
    second = options(tiny_sd, seed=50, state_path=state)
    written += second.next_batch(1, tmp_path / "out", context)
    second.close()
    assert [read_provenance(p).amari["seed"] for p in written] == [50, 51, 52]
    rows = sqlite3.connect(state).execute("SELECT file, seed, enhanced FROM diffusers_source_images").fetchall()
    assert sorted(rows) == sorted((p.name, s, 0) for p, s in zip(written, [50, 51, 52]))
    assert len({p.name for p in written}) == 3
    assert all(read_provenance(p).amari.get("enhance") is None for p in written)  # enhance=false


def test_random_seeds_are_recorded(tiny_sd, tmp_path):
    context = BatchContext(
        group=np.empty((0, 128)), upper_bound=0.5, almost_band=0.1, encoder=FaceEncoder(FaceSettings()), batch_number=3
    )
    source = options(tiny_sd)
    paths = source.next_batch(2, tmp_path, context)
    seeds = [read_provenance(p).amari["seed"] for p in paths]
    assert len(set(seeds)) == 2 and all(f"-{seed}" in p.stem for p, seed in zip(paths, seeds))
    assert source.counts["generated"] == 2 and "2 generated" in source.description


# Early rejection with real faces (photos stand in for generated images) -----------------------------


@pytest.fixture(scope="module")
def faces_of_t1(data_dir, tmp_path_factory):
    """Crops around two different people of t1.jpg, and the first one's descriptor as a group."""
    photo = load_rgb(data_dir / "t1.jpg")
    person_a = np.ascontiguousarray(photo[200:480, 0:280])
    person_b = np.ascontiguousarray(photo[200:490, 360:650])
    folder = tmp_path_factory.mktemp("faces")
    encoder = FaceEncoder(FaceSettings(), EmbeddingCache(folder / "cache.sqlite"))
    Image.fromarray(person_a).save(folder / "a.png")
    group = np.array([largest(encoder.faces(folder / "a.png")).descriptor])
    return person_a, person_b, group, encoder


def generated_from(rgb, seed):
    params = {
        "prompt": PROMPT,
        "seed": seed,
        "steps": 2,
        "sampler": "dpmpp_2m",
        "cfg_scale": 7.5,
        "width": rgb.shape[1],
        "height": rgb.shape[0],
        "model": "photo",
    }
    return GeneratedImage(image=Image.fromarray(rgb), seed=seed, prompt=PROMPT, params=params)


def test_far_faces_skip_enhancement_and_near_ones_get_it(tiny_sd, tiny_esrgan, faces_of_t1, tmp_path):
    person_a, person_b, group, encoder = faces_of_t1
    source = options(tiny_sd, tiny_esrgan, reject_margin=0.1)
    context = BatchContext(group=group, upper_bound=0.3, almost_band=0.1, encoder=encoder, batch_number=7)

    far = source.finish(generated_from(person_b, 1), tmp_path, context)
    near = source.finish(generated_from(np.ascontiguousarray(person_a[:, ::-1]), 2), tmp_path, context)

    far_found, near_found = read_provenance(far), read_provenance(near)
    assert (far_found.width, far_found.height) == (person_b.shape[1], person_b.shape[0])  # not enhanced
    assert far_found.watermarked and "enhance" not in far_found.amari
    assert (near_found.width, near_found.height) == (2 * person_a.shape[1], 2 * person_a.shape[0])
    assert near_found.amari["enhance"]["scale"] == 2.0
    assert source.counts == {"generated": 2, "rejected_early": 1, "enhanced": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([far.name, near.name])
    # The rejected file is the one that was scored: the miner finds its faces in the cache.
    hits = encoder.cache_hits
    encoder.faces(far)
    assert encoder.cache_hits == hits + 1


def test_nothing_is_rejected_early_without_a_group_or_when_switched_off(tiny_sd, tiny_esrgan, faces_of_t1, tmp_path):
    person_a, person_b, group, encoder = faces_of_t1
    empty = BatchContext(group=np.empty((0, 128)), upper_bound=0.3, almost_band=0.1, encoder=encoder, batch_number=1)
    source = options(tiny_sd, tiny_esrgan)
    assert read_provenance(source.finish(generated_from(person_b, 1), tmp_path, empty)).width == 2 * person_b.shape[1]
    off = options(tiny_sd, tiny_esrgan, early_reject=False)
    full = BatchContext(group=group, upper_bound=0.3, almost_band=0.1, encoder=encoder, batch_number=1)
    assert read_provenance(off.finish(generated_from(person_b, 2), tmp_path, full)).width == 2 * person_b.shape[1]
    assert source.counts["rejected_early"] == off.counts["rejected_early"] == 0


def test_rejection_rule():
    assert rejects_early(0.71, upper_bound=0.4, almost_band=0.1, margin=0.2)
    assert not rejects_early(0.7, upper_bound=0.4, almost_band=0.1, margin=0.2)
    assert not rejects_early(None, upper_bound=0.4, almost_band=0.1, margin=0.0)  # no face: enhance it


# Options ----------------------------------------------------------------------------------------


def test_options_choose_preset_and_overrides(tiny_sd):
    config = mine_config(tiny_sd, preset="study", scheduler="unipc", guidance="6.5", compile="false")
    generate = config.generate_config()
    assert (generate.scheduler, generate.steps, generate.guidance_scale) == ("unipc", 2, 6.5)
    assert generate.batch_size == 4 and config.preset == "study"
    assert config.enhance_config() is None


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"stepz": 3}, "unknown source option"),
        ({"steps": "many"}, "expects int"),
        ({"compile": "maybe"}, "true or false"),
        ({"reject_margin": -1}, "reject_margin"),
        ({"scheduler": "nope"}, "unknown scheduler"),
        ({"scale": 0}, "scale"),
    ],
)
def test_bad_options_are_usage_errors(tiny_sd, extra, message):
    with pytest.raises(UsageError, match=message):
        MineConfig(prompt=PROMPT, model=str(tiny_sd), options=tuple((k, str(v)) for k, v in extra.items()))


def test_prompt_is_required(tiny_sd):
    with pytest.raises(UsageError, match="prompt"):
        DiffusersSource("", preset_config(model=str(tiny_sd)))
    with pytest.raises(UsageError, match="prompt"):
        MineConfig(prompt="", model=str(tiny_sd))
