"""What other tools read from amari's images, checked with each consumer's own parsing rules.

The rules are written here from the consumers' sources (not copied from their code): AUTOMATIC1111's
`modules/infotext_utils.py` (`parse_generation_parameters`), its embedding database
(`modules/textual_inversion/textual_inversion.py`: an embedding is named after its file) and Extras tab
(`scripts/postprocessing_upscale.py`, `scripts/postprocessing_gfpgan.py`, `modules/realesrgan_model.py`);
ComfyUI's front end (`src/scripts/pnginfo.ts`: `importA1111`; `src/scripts/metadata/png.ts`: its PNG text
reader); InvokeAI's `invokeai/app/util/ti_utils.py` (prompt triggers) and its front end's metadata recall
(`invokeai/frontend/web/src/features/metadata/parsing.tsx`).
"""

from __future__ import annotations

import json
import re
import struct
import zlib

import pytest
import torch
from PIL import Image

from amari.generate import Embedding, generate, preset_config
from amari.provenance.infotext import INVOKEAI_SCHEDULERS
from amari.provenance.png import save_png
from amari.train.formats import save_embedding

# -- the consumers' rules ---------------------------------------------------------------------------

A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def a1111_parse(text: str) -> dict:
    """A1111: the last line is parameters when it holds at least 3 pairs; a `Negative prompt:` line
    switches to the negative prompt; quoted values are JSON."""
    lines = text.strip().split("\n")
    fields = {}
    if len(A1111_PARAM.findall(lines[-1])) >= 3:
        for key, value in A1111_PARAM.findall(lines.pop()):
            value = value.strip()
            if value.startswith('"') and value.endswith('"'):
                value = json.loads(value)
            fields[key.strip()] = value
    prompt, negative, target = [], [], "prompt"
    for line in (line.strip() for line in lines):
        if line.startswith("Negative prompt:") and target == "prompt":
            target, line = "negative", line[16:].strip()
        (prompt if target == "prompt" else negative).append(line)
    return {"prompt": "\n".join(prompt), "negative": "\n".join(negative), **fields}


def a1111_hashes(value: str) -> dict[str, str]:
    """`TI hashes` / `Lora hashes`: `name: hash` pairs separated by commas."""
    return dict(item.strip().split(": ", 1) for item in value.split(","))


# A1111's upscaler list: its Real-ESRGAN models by these names, any other model file by its stem.
A1111_REAL_ESRGAN = {
    "R-ESRGAN General 4xV3",
    "R-ESRGAN General WDN 4xV3",
    "R-ESRGAN AnimeVideo",
    "R-ESRGAN 4x+",
    "R-ESRGAN 4x+ Anime6B",
    "R-ESRGAN 2x+",
}
# The keys A1111's Extras tab writes for upscaling and GFPGAN.
A1111_EXTRAS_KEYS = {"Postprocess upscale by", "Postprocess upscale to", "Postprocess upscaler", "GFPGAN visibility"}


def comfyui_imports(text: str) -> dict | None:
    """ComfyUI's A1111 import: needs `\\nSteps:` and, before it, `\\nNegative prompt:`; else nothing."""
    p = text.rfind("\nSteps:")
    if p < 0:
        return None
    p2 = text.rfind("\nNegative prompt:", 0, p + 1)
    if p2 < 0:
        return None
    options = {}
    for match in re.finditer(r'\s*([^:]+:\s*([^"{].*?|".*?"|\{.*?\}))\s*(,|$)', text[p:].split("\n")[1]):
        key, _, value = match.group(1).partition(":")
        options[key.strip().lower()] = value.split(":")[0].strip()  # values holding ':' are cut there
    return {"positive": text[:p2].strip(), "negative": text[p2 + 18 : p].strip(), **options}


def comfyui_loras(prompt: str, installed: list[str]) -> tuple[str, list[tuple[str | None, float]]]:
    """ComfyUI's import turns each `<lora:NAME:WEIGHT>` into a LoRA loader of the first installed file whose
    name starts with NAME (None: no such file), and takes the tag out of the prompt."""
    loras = []

    def take(match):
        name, weight = match.group(1).split(":")[:2]
        loras.append((next((f for f in installed if f.startswith(name)), None), float(weight)))
        return ""

    return re.sub(r"<lora:([^:]+:[^>]+)>", take, prompt), loras


def comfyui_embeddings(prompt: str, installed: list[str]) -> str:
    """ComfyUI's import writes `embedding:NAME` for each installed embedding's name found as a whole word."""
    if not installed:
        return prompt
    names = "|".join(re.escape(name) for name in installed)
    return re.sub(rf"\b({names})\b", r"embedding:\1", prompt, flags=re.I)


def comfyui_png_text(path, skips_itxt_header: bool = True) -> dict[str, str]:
    """ComfyUI's PNG text reader: tEXt and iTXt chunks (never zTXt), every one decoded as UTF-8. Its
    readers before the iTXt fix took the iTXt text from right after the keyword (`skips_itxt_header=False`),
    compression flag, method and the two empty fields' terminators included."""
    data = path.read_bytes()
    chunks, position = {}, 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if kind in (b"tEXt", b"iTXt"):
            key, _, value = body.partition(b"\0")
            if kind == b"iTXt" and skips_itxt_header:
                compressed, value = value[0], value[2:]
                _language, _, value = value.partition(b"\0")
                _translated, _, value = value.partition(b"\0")
                value = zlib.decompress(value) if compressed else value
            chunks[key.decode()] = value.decode("utf-8", errors="replace")
        position += 12 + length
    return chunks


def png_chunk_types(path) -> dict[str, bytes]:
    data = path.read_bytes()
    kinds, position = {}, 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind in (b"tEXt", b"iTXt", b"zTXt"):
            kinds[data[position + 8 : position + 8 + length].partition(b"\0")[0].decode()] = kind
        position += 12 + length
    return kinds


INVOKEAI_TRIGGER = re.compile(r"<[a-zA-Z0-9., _-]+>")  # a textual inversion's name in a prompt


def invokeai_triggers(prompt: str) -> list[str]:
    """InvokeAI loads the textual inversion named by each `<name>` in a prompt (and skips unknown ones)."""
    return [trigger[1:-1] for trigger in INVOKEAI_TRIGGER.findall(prompt)]


def invokeai_recalled_loras(meta: dict) -> list[tuple[str, str, float]]:
    """InvokeAI recalls each `loras` item by its model identifier: without a key, by `model_name` and
    `base_model` (its earlier identifier); items it cannot read are skipped."""
    found = []
    for item in meta.get("loras") or []:
        model = item.get("model") or {}
        if isinstance(model.get("model_name"), str) and isinstance(model.get("base_model"), str):
            found.append((model["model_name"], model["base_model"], float(item["weight"])))
    return found


# -- an image made with an embedding ---------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tiny_sd, tmp_path_factory, one_thread):
    from transformers import CLIPTextModel

    folder = tmp_path_factory.mktemp("infotext")
    width = CLIPTextModel.from_pretrained(tiny_sd / "text_encoder").get_input_embeddings().weight.shape[1]
    files = save_embedding(folder, torch.randn(2, width), "<amari-face>", "amari_face")
    prompt = "a photo of <amari-face>, café at dusk"
    paths = []
    for kind in ("a1111", "diffusers"):  # the file A1111 loads, then the one diffusers loads, beside it
        config = preset_config(
            model=str(tiny_sd), steps=2, negative_prompt="", embeddings=(Embedding(str(files[kind]), "<amari-face>"),)
        )
        image = generate(prompt, seeds=[4242], config=config, progress=False).images[0]
        paths.append(save_png(image.image, folder / f"{kind}.png", image.params))
    return paths[0], files, prompt, paths[1]


def test_a1111_reads_every_field_and_the_ti_hash(made):
    from amari.storage.files import file_sha256

    path, files, prompt, _ = made
    text = comfyui_png_text(path)["parameters"]
    fields = a1111_parse(text)
    # A1111 names the embedding after its file, and applies it where that name is in the prompt.
    assert fields["prompt"] == prompt.replace("<amari-face>", "amari_face") and fields["negative"] == ""
    assert (fields["Steps"], fields["Sampler"], fields["CFG scale"], fields["Seed"]) == (
        "2",
        "DPM++ 2M Karras",
        "7.5",
        "4242",
    )
    assert fields["Size"] == "64x64" and fields["Model"] == "model"  # the folder's name, never its path
    assert a1111_hashes(fields["TI hashes"]) == {"amari_face": file_sha256(files["a1111"])[:12]}
    assert re.search(r"\bamari_face\b", fields["prompt"])
    assert not any(key.startswith("TI <") for key in fields)


def test_an_image_made_with_the_diffusers_file_names_the_a1111_file_beside_it(made):
    """diffusers' `learned_embeds.safetensors` is named by no tool: the image names `amari_face.safetensors`,
    which amari wrote beside it with the same vectors, as an image made with that file does."""
    a1111_made, _, _, diffusers_made = made
    assert comfyui_png_text(diffusers_made)["parameters"] == comfyui_png_text(a1111_made)["parameters"]
    used = json.loads(Image.open(diffusers_made).info["amari"])["embeddings"]
    assert [(e["token"], e["name"], e["path"]) for e in used] == [
        ("<amari-face>", "amari_face", "amari_face.safetensors")
    ]


def test_comfyui_imports_the_parameters_of_a_default_image(made):
    path, _, prompt, _ = made
    imported = comfyui_imports(comfyui_png_text(path)["parameters"])
    assert imported is not None  # a `Negative prompt:` line is there even for an empty negative prompt
    # "café" survives ComfyUI's UTF-8 decoding; the installed embedding becomes ComfyUI's `embedding:NAME`.
    assert comfyui_embeddings(imported["positive"], ["amari_face"]) == "a photo of embedding:amari_face, café at dusk"
    assert imported["negative"] == "" and imported["steps"] == "2" and imported["seed"] == "4242"


def test_invokeai_recalls_prompt_seed_steps_cfg_scheduler_size_and_model(made):
    path, _, prompt, _ = made
    meta = json.loads(comfyui_png_text(path)["invokeai_metadata"])
    assert isinstance(meta, dict)
    assert meta["positive_prompt"] == "a photo of <amari_face>, café at dusk" and meta["negative_prompt"] == ""
    assert invokeai_triggers(meta["positive_prompt"]) == ["amari_face"]  # the embedding, by its model name
    assert meta["seed"] == 4242 and 0 <= meta["seed"] <= 2**32 - 1
    assert (meta["steps"], meta["cfg_scale"], meta["width"], meta["height"]) == (2, 7.5, 64, 64)
    assert meta["scheduler"] == "dpmpp_2m_k" and meta["scheduler"] in set(INVOKEAI_SCHEDULERS.values())
    assert meta["model"]["model_name"] == "model" and meta["model"]["base_model"] in ("sd-1", "sd-2")
    assert "loras" not in meta and invokeai_recalled_loras(meta) == []


def test_text_chunks_decode_exactly_in_every_reader(made):
    """JSON chunks are ASCII tEXt, which every reader decodes exactly: PIL (A1111, InvokeAI) and ComfyUI's
    PNG reader, before its iTXt fix too. A `parameters` text beyond ASCII is an uncompressed iTXt chunk, as
    A1111 writes one: PIL and ComfyUI's reader decode it exactly; the earlier ComfyUI reader puts the four
    header bytes in front of the text (the limit docs/provenance.md states)."""
    path, _, _, _ = made
    kinds = png_chunk_types(path)
    assert kinds["invokeai_metadata"] == kinds["amari"] == b"tEXt" and kinds["parameters"] == b"iTXt"
    with Image.open(path) as image:
        pil = {key: value for key, value in image.info.items() if isinstance(value, str)}
    current, earlier = comfyui_png_text(path), comfyui_png_text(path, skips_itxt_header=False)
    assert pil["parameters"] == current["parameters"] and "café" in pil["parameters"]
    assert earlier["parameters"] == "\0\0\0\0" + pil["parameters"]
    for key in ("invokeai_metadata", "amari"):
        assert json.loads(earlier[key]) == json.loads(current[key]) == json.loads(pil[key])
        assert "café" in json.dumps(json.loads(pil[key]), ensure_ascii=False)


def test_every_amari_sampler_has_a_name_in_each_tool():
    from amari.generate import SAMPLERS
    from amari.provenance.infotext import A1111_SAMPLER_NAMES

    assert set(SAMPLERS) == set(A1111_SAMPLER_NAMES) == set(INVOKEAI_SCHEDULERS)


def test_upscaler_and_face_restoration_are_named_as_a1111s_extras_tab_names_them():
    from amari.provenance.infotext import a1111_parameters

    def fields(upscaler, weight=1.0):
        enhance = {"upscaler": upscaler, "face_restorer": "GFPGANv1.3", "scale": 2.0, "restore_weight": weight}
        return a1111_parse(a1111_parameters({"prompt": "p", "steps": 2, "seed": 1, "cfg_scale": 7, "enhance": enhance}))

    known = fields("/models/RealESRGAN_x4plus.pth")
    assert known["Postprocess upscaler"] == "R-ESRGAN 4x+" and known["Postprocess upscaler"] in A1111_REAL_ESRGAN
    assert known["Postprocess upscale by"] == "2.0" and known["GFPGAN visibility"] == "1.0"
    assert set(known) - {"prompt", "negative", "Steps", "Seed", "CFG scale"} <= A1111_EXTRAS_KEYS
    assert fields("RealESRGAN_x2plus")["Postprocess upscaler"] == "R-ESRGAN 2x+"
    assert fields("/models/4x-UltraSharp.safetensors")["Postprocess upscaler"] == "4x-UltraSharp"  # by its stem
    assert fields("RealESRGAN_x4plus", weight=0.5)["GFPGAN visibility"] == "0.5"
    assert "GFPGAN visibility" not in fields("RealESRGAN_x4plus", weight=0.0)
