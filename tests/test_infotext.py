"""What other tools read from amari's images, checked with each consumer's own parsing rules.

The rules are written here from the consumers' documented behaviour (not copied from their code):
AUTOMATIC1111's `parse_generation_parameters`, ComfyUI's import of A1111 PNG info (and its PNG text
reader), InvokeAI's `invokeai_metadata` recall, and diffusers' `load_textual_inversion`.
"""

from __future__ import annotations

import json
import re
import struct
import zlib

import pytest
import torch

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


def png_text_chunks_as_utf8(path) -> dict[str, str]:
    """ComfyUI's PNG reader: tEXt and uncompressed iTXt chunks, every one decoded as UTF-8."""
    data = path.read_bytes()
    chunks, position = {}, 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            chunks[key.decode()] = value.decode("utf-8", errors="replace")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _language, _, rest = rest.partition(b"\0")
            _translated, _, value = rest.partition(b"\0")
            chunks[key.decode()] = (zlib.decompress(value) if compressed else value).decode("utf-8", errors="replace")
        position += 12 + length
    return chunks


# -- an image made with an embedding ---------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tiny_sd, tmp_path_factory, one_thread):
    from transformers import CLIPTextModel

    folder = tmp_path_factory.mktemp("infotext")
    width = CLIPTextModel.from_pretrained(tiny_sd / "text_encoder").get_input_embeddings().weight.shape[1]
    files = save_embedding(folder, torch.randn(2, width), "<amari-face>", "amari_face")
    config = preset_config(
        model=str(tiny_sd), steps=2, negative_prompt="", embeddings=(Embedding(str(files["a1111"]), "<amari-face>"),)
    )
    prompt = "a photo of <amari-face>, café at dusk"
    image = generate(prompt, seeds=[4242], config=config, progress=False).images[0]
    path = save_png(image.image, folder / "out.png", image.params)
    return path, files, prompt


def test_a1111_reads_every_field_and_the_ti_hash(made):
    from amari.storage.files import file_sha256

    path, files, prompt = made
    text = png_text_chunks_as_utf8(path)["parameters"]
    fields = a1111_parse(text)
    assert fields["prompt"] == prompt and fields["negative"] == ""
    assert (fields["Steps"], fields["Sampler"], fields["CFG scale"], fields["Seed"]) == (
        "2",
        "DPM++ 2M Karras",
        "7.5",
        "4242",
    )
    assert fields["Size"] == "64x64" and fields["Model"] == "model"  # the folder's name, never its path
    assert fields["TI hashes"] == f"amari_face: {file_sha256(files['a1111'])[:12]}"
    assert not any(key.startswith("TI <") for key in fields)


def test_comfyui_imports_the_parameters_of_a_default_image(made):
    path, _, prompt = made
    imported = comfyui_imports(png_text_chunks_as_utf8(path)["parameters"])
    assert imported is not None  # a `Negative prompt:` line is there even for an empty negative prompt
    assert imported["positive"] == prompt  # "café" survives ComfyUI's UTF-8 decoding
    assert imported["negative"] == "" and imported["steps"] == "2" and imported["seed"] == "4242"


def test_invokeai_recalls_prompt_seed_steps_cfg_scheduler_size_and_model(made):
    path, _, prompt = made
    meta = json.loads(png_text_chunks_as_utf8(path)["invokeai_metadata"])
    assert isinstance(meta, dict)
    assert meta["positive_prompt"] == prompt and meta["negative_prompt"] == ""
    assert meta["seed"] == 4242 and 0 <= meta["seed"] <= 2**32 - 1
    assert (meta["steps"], meta["cfg_scale"], meta["width"], meta["height"]) == (2, 7.5, 64, 64)
    assert meta["scheduler"] == "dpmpp_2m_k" and meta["scheduler"] in set(INVOKEAI_SCHEDULERS.values())
    assert meta["model"]["model_name"] == "model" and meta["model"]["base_model"] in ("sd-1", "sd-2")


def test_every_amari_sampler_has_a_name_in_each_tool():
    from amari.generate import SAMPLERS
    from amari.provenance.infotext import A1111_SAMPLER_NAMES

    assert set(SAMPLERS) == set(A1111_SAMPLER_NAMES) == set(INVOKEAI_SCHEDULERS)


def test_face_restorer_and_upscaler_keep_their_version():
    from amari.provenance.infotext import a1111_parameters

    text = a1111_parameters(
        {
            "prompt": "p",
            "steps": 2,
            "seed": 1,
            "cfg_scale": 7,
            "enhance": {"upscaler": "/models/RealESRGAN_x4plus.pth", "face_restorer": "GFPGANv1.3", "scale": 2.0},
        }
    )
    fields = a1111_parse(text)
    assert fields["Postprocess face restoration"] == "GFPGANv1.3"
    assert fields["Postprocess upscaler"] == "RealESRGAN_x4plus"
