"""`amari evaluate` on a tiny random-weight Stable Diffusion: the grid, its provenance, and resuming.

The tiny model makes no faces, so every cell is "no face found" here; the scorers themselves are tested
on real photos in test_evaluate_scorers.py.
"""

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from safetensors.torch import save_file

from amari.cli import main
from amari.errors import UsageError, WorkspaceError
from amari.evaluate import group_token, plan_cells, prompt_for, run
from amari.provenance.png import read_provenance
from amari.storage.results import read_manifest, read_results
from amari.study.config import replace, study_from_dict


def evaluate(config, **options):
    return run(config.evaluate, config.layout, **options)


PROMPTS = ["a photo of amari", "a side profile image of amari"]
SEEDS = {"sd1": 335728730, "sd2": 691007764}


@pytest.fixture(scope="module")
def sim_group(tmp_path_factory, t1_people):
    folder = tmp_path_factory.mktemp("sim-group")
    with Image.open(t1_people[3]) as person:
        person = person.convert("RGB")
        person.save(folder / "a.png")
        ImageOps.mirror(person).save(folder / "b.png")
        ImageEnhance.Brightness(person).enhance(1.1).save(folder / "c.png")
    return folder


@pytest.fixture(scope="module")
def embedding(tmp_path_factory):
    # A diffusers-layout embedding for the tiny model's 32-wide text encoder.
    path = tmp_path_factory.mktemp("embedding") / "learned_embeds.safetensors"
    save_file({"*": torch.randn(1, 32, generator=torch.Generator().manual_seed(5))}, str(path))
    return path


def make_config(tmp_path, tiny_sd, sim_group, embedding, **evaluate):
    settings = {
        "prompts": PROMPTS,
        "sampler": "k_lms",
        "steps": 2,
        "width": 64,
        "height": 64,
        "commands": [{"name": n, "seed": s} for n, s in SEEDS.items()],
        "sim_group": str(sim_group),
        "embeddings": {"a_3": str(embedding)},
    }
    settings.update(evaluate)
    return study_from_dict(
        {
            "study": {"name": "tiny", "out": str(tmp_path / "study"), "model": str(tiny_sd), "device": "cpu"},
            "select": {"groups": [{"name": "a_3", "images": 3}]},
            "evaluate": settings,
        },
        base=tmp_path,
    )


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_sd, sim_group, embedding, one_thread):
    # One thread, as the grids it is compared with: a batched pass's sums split by thread count.
    tmp_path = tmp_path_factory.mktemp("evaluated")
    config = make_config(tmp_path, tiny_sd, sim_group, embedding)
    seen = []
    result = evaluate(config, on_progress=lambda what, cell: seen.append((what, cell.key)))
    return config, result, seen


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pixels(path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def test_prompts_put_the_token_or_the_init_word_in_place_of_the_subject():
    assert (
        prompt_for("a photo of amari, amari's friend", "amari", "<amari-a>")
        == "a photo of <amari-a>, <amari-a>'s friend"
    )
    assert prompt_for("a photo of amarillo", "amari", "woman") == "a photo of amarillo"
    assert group_token("amari", "A_312") == "<amari-a_312>"


def test_the_grid_runs_in_passes_of_one_prompts_images(evaluated):
    """With no batch size set, a pass holds as many of a prompt's commands as the free memory holds (here
    both): one unit's images of one prompt, generated together, then scored."""
    _, _, seen = evaluated
    passes = [seen[start : start + 4] for start in range(0, len(seen), 4)]
    assert len(passes) == len(PROMPTS) * 2  # 2 prompts × (a_3, ctrl)
    for chunk in passes:
        assert [what for what, _ in chunk] == ["generate", "generate", "score", "score"]
        (prompt, _, method, group), (prompt2, _, method2, group2) = (key for _, key in chunk[:2])
        assert (prompt, method, group) == (prompt2, method2, group2)


def test_one_row_per_cell_with_images_that_carry_their_provenance(evaluated):
    config, result, seen = evaluated
    rows = list(csv.DictReader(open(result.csv, newline="")))
    assert len(rows) == len(PROMPTS) * len(SEEDS) * 2 == result.generated == result.scored
    assert [(int(r["prompt_index"]), r["command"], r["method"], r["group"]) for r in rows] == [
        c.key for c in plan_cells(config.evaluate)
    ]
    assert {(r["method"], r["group"]) for r in rows} == {("ti", "a_3"), ("", "ctrl")}
    assert sorted(what for what, _ in seen) == ["generate"] * 8 + ["score"] * 8
    for row in rows:
        assert row["face_found"] == "false" and row["faces"] == "0" and row["sim_score"] == ""
        assert row["cnn_faces"] == "0"  # the CNN second pass looked, and found nothing either
        assert int(row["seed"]) == SEEDS[row["command"]]
        if row["group"] == "ctrl":
            assert row["prompt_sent"] == row["prompt"].replace("amari", "woman") and row["embedding"] == ""
        else:
            assert row["prompt_sent"] == row["prompt"].replace("amari", "<amari-a_3>")
        image = result.results_dir / row["image"]
        provenance = read_provenance(image)
        assert (provenance.width, provenance.height) == (64, 64) and provenance.watermarked
        assert provenance.amari["synthetic"] is True
        assert provenance.amari["study"]["fingerprint"] == row["fingerprint"]
        assert provenance.fields["Seed"] == row["seed"] and provenance.fields["Sampler"] == "LMS"
        assert provenance.amari["prompt"] == row["prompt_sent"]
        # A1111 reads the embedding's name (the given file's stem) where the pipeline got its token.
        assert provenance.fields["prompt"] == row["prompt_sent"].replace("<amari-a_3>", "learned_embeds")
        tokens = [e["token"] for e in provenance.amari.get("embeddings", [])]
        assert tokens == ([] if row["group"] == "ctrl" else ["<amari-a_3>"])
    digests = {digest(result.results_dir / r["image"]) for r in rows}
    assert len(digests) == 8  # every prompt, seed and group makes its own picture


def test_manifest_describes_the_study(evaluated):
    config, result, _ = evaluated
    manifest = read_manifest(result.results_dir)
    assert manifest.prompts == tuple(PROMPTS) and manifest.groups == ("a_3", "ctrl")
    assert manifest.commands == tuple(SEEDS.items()) and manifest.sampler == "k_lms"
    assert manifest.sim_group_faces == 3 and manifest.scorers == ("dlib", "dlib-cnn")


def test_a_finished_grid_is_not_generated_again(evaluated, tmp_path):
    config, first, _ = evaluated
    results = tmp_path / "results"
    shutil.copytree(first.results_dir, results)
    config = replace(config, "evaluate", results=results)
    cells = read_results(results / "results.csv")
    before = {c.image: digest(results / c.image) for c in cells}

    again = evaluate(config)
    assert (again.generated, again.scored, again.kept) == (0, 0, 8)

    # A lost image is made again, identical: each cell has its own seeded generator.
    lost = results / cells[5].image
    lost.unlink()
    redo = evaluate(config)
    assert (redo.generated, redo.scored, redo.kept) == (1, 1, 7)
    assert digest(lost) == before[cells[5].image]

    # A lost row (the run stopped between image and CSV) is scored again, not regenerated.
    with open(results / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(results / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=rows[0].keys())
        writer.writeheader()
        writer.writerows(rows[:2] + rows[3:])
    rescored = evaluate(config)
    assert (rescored.generated, rescored.scored, rescored.kept) == (0, 1, 7)
    assert {c.image: digest(results / c.image) for c in rescored.cells} == before

    # An image cut short (and its row lost) is made again rather than scored or trusted.
    cut = results / cells[2].image
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    with open(results / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(results / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=rows[0].keys())
        writer.writeheader()
        writer.writerows(row for row in rows if row["image"] != cells[2].image)
    repaired = evaluate(config)
    assert (repaired.generated, repaired.kept) == (1, 7)
    assert digest(cut) == before[cells[2].image]


def test_changed_generation_settings_regenerate_and_a_new_scorer_rescores(
    evaluated, tmp_path, tiny_sd, sim_group, embedding
):
    config, first, _ = evaluated
    results = tmp_path / "results"
    shutil.copytree(first.results_dir, results)
    # One prompt and one command of the grid: rows of cells no longer in the study are dropped.
    smaller = replace(config, "evaluate", results=results, prompts=(PROMPTS[0],), commands=config.evaluate.commands[:1])
    same = evaluate(smaller)
    assert (same.generated, same.scored, same.kept) == (0, 0, 2)
    assert len(read_results(results / "results.csv")) == 2

    more_steps = replace(smaller, "evaluate", steps=3)
    changed = evaluate(more_steps)
    assert (changed.generated, changed.kept) == (2, 0)
    assert all(digest(results / c.image) != digest(first.results_dir / c.image) for c in changed.cells)

    without_cnn = evaluate(replace(more_steps, "evaluate", cnn_second_pass=False))
    assert (without_cnn.generated, without_cnn.scored) == (0, 2)
    assert all(c.cnn_faces is None and c.scorers == "dlib" for c in without_cnn.cells)


def test_missing_inputs_fail_before_any_model_loads(tmp_path, tiny_sd, sim_group, embedding, capsys):
    no_embedding = make_config(tmp_path, tiny_sd, sim_group, tmp_path / "missing.safetensors")
    with pytest.raises(UsageError, match="no embedding for group a_3"):
        evaluate(no_embedding)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WorkspaceError, match="holds no images"):
        evaluate(make_config(tmp_path, tiny_sd, empty, embedding))
    assert not (tmp_path / "study" / "results").exists()

    study = tmp_path / "study.toml"
    study.write_text(
        f'[study]\nmodel = "{tiny_sd}"\nout = "{tmp_path / "out"}"\n'
        f'[evaluate]\nprompts = ["a photo of amari"]\n'
        f'[[evaluate.commands]]\nname = "sd1"\nseed = 1\n'
    )
    assert main(["evaluate", "--config", str(study)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sim-group folder not found" in err[0]


def test_cli_evaluates_with_overrides(tmp_path, tiny_sd, sim_group, embedding, capsys):
    study = tmp_path / "study.toml"
    study.write_text(
        f'[study]\nname = "cli"\nmodel = "{tiny_sd}"\nout = "{tmp_path / "out"}"\ndevice = "cpu"\n'
        f'[[select.groups]]\nname = "a_3"\nimages = 3\n'
        f'[evaluate]\nprompts = ["a photo of amari"]\nsteps = 2\nwidth = 64\nheight = 64\ncontrol = false\n'
        f'[evaluate.embeddings]\na_3 = "{embedding}"\n'
        f'[[evaluate.commands]]\nname = "sd1"\nseed = 7\n'
    )
    results = tmp_path / "elsewhere"
    assert (
        main(["evaluate", "--config", str(study), "--results", str(results), "--sim-group", str(sim_group), "--no-cnn"])
        == 0
    )
    assert "1 cells" in capsys.readouterr().out
    (cell,) = read_results(results / "results.csv")
    assert cell.group == "a_3" and cell.cnn_faces is None
    recorded = json.loads((results / "manifest.json").read_text())["sim_group"]
    assert not Path(recorded).is_absolute() and (results / recorded).resolve() == sim_group.resolve()


# Methods: LoRA and pivotal groups beside Textual Inversion's ----------------------------------------


def _tiny_lora(tiny_sd, folder: Path, method: str, token: str | None, seed: int) -> None:
    """A trained-looking LoRA run's final files (random weights): both LoRA files and lora.json (and for
    pivotal the embedding), as `amari train --method` leaves them."""
    from diffusers import UNet2DConditionModel

    from amari.train.exports import lora_record, save_lora, write_record
    from amari.train.formats import save_embedding
    from amari.train.lora import LoraSpec

    unet = UNet2DConditionModel.from_pretrained(tiny_sd / "unet")
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in unet.named_modules():
        if name.endswith((".to_q", ".to_v")):
            state[f"unet.{name}.lora_A.weight"] = torch.randn(2, module.in_features, generator=generator)
            state[f"unet.{name}.lora_B.weight"] = torch.randn(module.out_features, 2, generator=generator) * 0.3
    spec = LoraSpec(rank=2, alpha=1.0, unet_targets=("to_q", "to_v"))
    files = {}
    if token is not None:
        files = save_embedding(folder, torch.randn(1, 32, generator=generator), token, "amari")
    files.update(save_lora(folder, state, spec, "amari"))
    trigger = token or "amari woman"
    write_record(folder, lora_record(method, "amari", 4, trigger, token, files, spec))
    (folder / "metrics.csv").write_text("step,epoch,loss,lr,images_per_s\n1,0.01,0.1,0.0001,3.0\n")


@pytest.fixture(scope="module")
def three_methods(tmp_path_factory, tiny_sd, sim_group, embedding, one_thread):
    tmp_path = tmp_path_factory.mktemp("methods")
    config = make_config(tmp_path, tiny_sd, sim_group, embedding)
    config = replace(config, "evaluate", methods=("ti", "lora", "pivotal"))
    layout = config.layout
    _tiny_lora(tiny_sd, layout.train("a_3", "lora").out, "lora", None, seed=1)
    _tiny_lora(tiny_sd, layout.train("a_3", "pivotal").out, "pivotal", "amari", seed=2)
    prepared = layout.prepared("a_3")
    prepared.mkdir(parents=True)
    for index in range(3):
        Image.new("RGB", (8, 8)).save(prepared / f"{index}.png")
    return config, evaluate(config)


def test_each_method_of_a_group_is_a_column_of_the_grid(three_methods, evaluated):
    config, result = three_methods
    rows = list(csv.DictReader(open(result.csv, newline="")))
    assert len(rows) == len(PROMPTS) * len(SEEDS) * 4 == result.generated
    units = [(r["method"], r["group"]) for r in rows[:4]]
    assert units == [("ti", "a_3"), ("lora", "a_3"), ("pivotal", "a_3"), ("", "ctrl")]
    by_unit = {(r["method"], r["group"], r["prompt"], r["command"]): r for r in rows}
    lora = by_unit[("lora", "a_3", PROMPTS[0], "sd1")]
    pivotal = by_unit[("pivotal", "a_3", PROMPTS[0], "sd1")]
    assert lora["prompt_sent"] == "a photo of amari woman"  # the trigger words the LoRA was trained with
    assert lora["embedding"] == "pytorch_lora_weights.safetensors"
    assert lora["image"].startswith("images/lora/a_3/")
    assert pivotal["prompt_sent"] == "a photo of <amari-pivotal-a_3>"
    assert pivotal["embedding"] == "learned_embeds.safetensors+pytorch_lora_weights.safetensors"
    provenance = read_provenance(result.results_dir / pivotal["image"])
    assert [e["token"] for e in provenance.amari["embeddings"]] == ["<amari-pivotal-a_3>"]
    assert provenance.amari["study"]["method"] == "pivotal"
    # The LoRA changes the picture; the control group, generated after it, sees the plain model.
    ti = by_unit[("ti", "a_3", PROMPTS[0], "sd1")]
    ctrl = by_unit[("", "ctrl", PROMPTS[0], "sd1")]
    assert len({digest(result.results_dir / r["image"]) for r in (ti, lora, pivotal, ctrl)}) == 4
    _, plain, _ = evaluated  # the grid without LoRAs: its control group's image is the same
    assert pixels(result.results_dir / ctrl["image"]) == pixels(plain.results_dir / ctrl["image"])
    manifest = read_manifest(result.results_dir)
    assert manifest.methods == ("ti", "lora", "pivotal") and dict(manifest.group_sizes) == {"a_3": 3}
    assert set(dict(manifest.training_metrics)) == {"lora/a_3", "pivotal/a_3"}  # ti's embedding was given


def test_grid_images_name_the_files_other_tools_load(three_methods):
    """The pivotal group was made with diffusers' files (`learned_embeds`, `pytorch_lora_weights`), which no
    other tool names; its images name the A1111 and kohya files beside them, by the tools' own rules:
    A1111 (`textual_inversion.py`: an embedding is its file's stem, applied where that name is in the
    prompt; `<lora:NAME:w>` and `Lora hashes` by the kohya file's name and tensor-data hash), ComfyUI
    (`pnginfo.ts`, `importA1111`: the installed LoRA file whose name starts with NAME, `embedding:NAME`
    for an installed embedding's name) and InvokeAI (`ti_utils.py`: `<name>` triggers; `parsing.tsx`:
    `loras[].model` by name and base)."""
    from amari.storage.files import file_sha256, safetensors_data_sha256
    from test_infotext import (
        a1111_hashes,
        a1111_parse,
        comfyui_embeddings,
        comfyui_imports,
        comfyui_loras,
        comfyui_png_text,
        invokeai_recalled_loras,
        invokeai_triggers,
    )

    config, result = three_methods
    rows = list(csv.DictReader(open(result.csv, newline="")))
    pivotal = next(r for r in rows if r["method"] == "pivotal" and r["prompt"] == PROMPTS[1])
    folder = config.layout.train("a_3", "pivotal").out
    chunks = comfyui_png_text(result.results_dir / pivotal["image"])
    fields = a1111_parse(chunks["parameters"])
    assert fields["prompt"] == "a side profile image of amari <lora:amari-lora:1>"
    assert a1111_hashes(fields["TI hashes"]) == {"amari": file_sha256(folder / "amari.safetensors")[:12]}
    kohya_hash = safetensors_data_sha256(folder / "amari-lora.safetensors")[:12]
    assert a1111_hashes(fields["Lora hashes"]) == {"amari-lora": kohya_hash}
    installed = sorted(path.name for path in folder.glob("*.safetensors"))  # every file of the run installed
    positive, loras = comfyui_loras(comfyui_imports(chunks["parameters"])["positive"], installed)
    assert loras == [("amari-lora.safetensors", 1.0)]
    assert comfyui_embeddings(positive, ["amari"]).strip() == "a side profile image of embedding:amari"
    meta = json.loads(chunks["invokeai_metadata"])
    assert meta["positive_prompt"] == "a side profile image of <amari>" and "<lora:" not in meta["positive_prompt"]
    assert invokeai_triggers(meta["positive_prompt"]) == ["amari"]
    assert invokeai_recalled_loras(meta) == [("amari-lora", meta["model"]["base_model"], 1.0)]
    lora = next(r for r in rows if r["method"] == "lora" and r["prompt"] == PROMPTS[1])
    lora_fields = a1111_parse(comfyui_png_text(result.results_dir / lora["image"])["parameters"])
    assert lora_fields["prompt"] == "a side profile image of amari woman <lora:amari-lora:1>"
    assert "TI hashes" not in lora_fields


def test_results_without_a_method_column_read_as_textual_inversion(three_methods, tmp_path):
    config, first = three_methods
    results = tmp_path / "results"
    shutil.copytree(first.results_dir, results)
    rows = list(csv.DictReader(open(results / "results.csv", newline="")))
    old = [{k: v for k, v in row.items() if k != "method"} for row in rows if row["method"] in ("ti", "")]
    with open(results / "results.csv", "w", newline="") as handle:  # what evaluate wrote before methods
        writer = csv.DictWriter(handle, fieldnames=list(old[0]))
        writer.writeheader()
        writer.writerows(old)
    cells = read_results(results / "results.csv")
    assert {(c.method, c.group) for c in cells} == {("ti", "a_3"), ("", "ctrl")}
    ti_only = replace(config, "evaluate", results=results, methods=("ti",))
    again = evaluate(ti_only)
    assert (again.generated, again.scored, again.kept) == (0, 0, 8)  # the grid of before, nothing remade


def test_a_method_without_its_training_is_refused(tmp_path, tiny_sd, sim_group, embedding):
    config = replace(make_config(tmp_path, tiny_sd, sim_group, embedding), "evaluate", methods=("ti", "lora"))
    with pytest.raises(UsageError, match="no lora training for group a_3"):
        evaluate(config)
    with pytest.raises(UsageError, match="names a training method"):
        study_from_dict(
            {
                "select": {"groups": [{"name": "lora", "images": 3}]},
                "evaluate": {"prompts": ["amari"], "commands": [{"name": "sd1", "seed": 1}]},
            }
        )
