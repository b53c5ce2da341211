"""What other tools read from an image amari writes: A1111's `parameters` text and InvokeAI's metadata.

Written to what the consumers' own readers accept (their rules, not their code):

- AUTOMATIC1111 (`parse_generation_parameters`) splits the text into the prompt, a line starting
  `Negative prompt:`, and a last line of at least three `Key: value` pairs whose keys are word
  characters, spaces, `-` and `/` (so `TI hashes`, never `TI <*>`); a value holding `,`, `:` or a
  line break is JSON-quoted. `Model` is the checkpoint's file name without suffix, `Model hash` the
  first 10 hex digits of its SHA-256, `VAE` (its file name) and `VAE hash` (10 hex digits) a replacement
  VAE's. A1111 names an embedding after its file and applies it where that
  name is in the prompt, so the prompt holds each embedding's name (`amari.provenance.names`) where the
  pipeline got its token, and `TI hashes` lists `"name: <first 12 hex digits of the file's SHA-256>"`;
  a LoRA is called from the prompt as `<lora:NAME:weight>` with NAME its kohya file's, and `Lora hashes`
  lists `"name: <12 hex digits>"` (A1111's LoRA hash is the SHA-256 of a safetensors file's tensor data,
  after its header). Upscaling and face restoration are written as its Extras tab writes them:
  `Postprocess upscale by`, `Postprocess upscaler` (the upscaler's name in A1111's list, `R-ESRGAN 4x+`,
  else the file's stem) and `GFPGAN visibility`.
- ComfyUI imports a `parameters` chunk only when it holds a `Negative prompt:` line before the line that
  starts with `Steps:`, so both are always written (an empty negative prompt too); it turns `<lora:NAME:w>`
  into a LoRA loader of the installed file whose name starts with NAME, and an installed embedding's name
  in the prompt into `embedding:NAME`.
- InvokeAI reads `invokeai_metadata` (JSON) for "recall parameters": positive_prompt, negative_prompt,
  seed (0..2^32-1), steps, cfg_scale, scheduler (its own names), width, height, model, whose `base` names
  the model family as InvokeAI does (`sd-1`, `sd-2`, `sdxl`, `flux`), and `loras`
  (`[{"model": {...}, "weight": w}]`, each model found by name and base when it has no InvokeAI key).
  Its prompts call an embedding as `<name>` (and never hold `<lora:...>`, which is A1111's syntax).
- Text chunks: every JSON chunk is ASCII (non-ASCII characters escaped as JSON allows), so it is a
  tEXt chunk that every reader decodes exactly. `parameters` is plain text: tEXt while it is ASCII,
  else an uncompressed iTXt chunk (UTF-8), as A1111 writes text that tEXt's Latin-1 cannot hold; a
  Latin-1 tEXt would not do either, since ComfyUI decodes every text chunk as UTF-8.
"""

from __future__ import annotations

import contextlib
import json
import re

PARAMETERS_KEY = "parameters"
INVOKEAI_KEY = "invokeai_metadata"

# amari scheduler names as A1111 writes them in its `Sampler:` field.
A1111_SAMPLER_NAMES = {
    "ddim": "DDIM",
    "pndm": "PLMS",
    "k_lms": "LMS",
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M Karras",
    "unipc": "UniPC",
    "flow_euler": "Euler",  # FLUX.1's flow-matching Euler, as Forge names it
}
# ... and as InvokeAI names them (`_k`: Karras sigmas).
INVOKEAI_SCHEDULERS = {
    "ddim": "ddim",
    "pndm": "pndm",
    "k_lms": "lms",
    "euler": "euler",
    "euler_a": "euler_a",
    "dpmpp_2m": "dpmpp_2m_k",
    "unipc": "unipc",
    "flow_euler": "euler",
}
INVOKEAI_MAX_SEED = 2**32 - 1
# Upscaler files by stem, as A1111 lists them (its Real-ESRGAN upscalers); any other file is listed by stem.
A1111_UPSCALERS = {
    "RealESRGAN_x4plus": "R-ESRGAN 4x+",
    "RealESRGAN_x4plus_anime_6B": "R-ESRGAN 4x+ Anime6B",
    "RealESRGAN_x2plus": "R-ESRGAN 2x+",
    "realesr-general-x4v3": "R-ESRGAN General 4xV3",
    "realesr-general-wdn-x4v3": "R-ESRGAN General WDN 4xV3",
    "realesr-animevideov3": "R-ESRGAN AnimeVideo",
}


def _quote(value) -> str:
    # A1111 writes a value as JSON only when a plain one would break its `key: value, ` list.
    text = str(value)
    if any(char in text for char in ',:\n"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def model_label(spec) -> str | None:
    """A model named by a known name keeps it (GFPGANv1.4); a file is named without its suffix."""
    if spec is None:
        return None
    from amari.models.files import MODEL_SUFFIXES, known_model

    text = str(spec).replace("\\", "/").rsplit("/", 1)[-1]
    known = known_model(text)
    if known is not None:
        return known.name
    stem, dot, suffix = text.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in MODEL_SUFFIXES else text


def prompt_for_tool(text: str, params: dict, call) -> str:
    """`text` as a tool is to read it: each embedding's token, as the pipeline got it, replaced by
    `call(name)`, the way that tool calls the embedding's file."""
    for embedding in params.get("embeddings") or ():
        token, name = embedding.get("token"), embedding.get("name")
        if token and name and token != name:
            text = text.replace(token, call(name))
    return text


def upscaler_label(spec) -> str | None:
    """An upscaler as A1111's Extras tab names it: its Real-ESRGAN models by their list names, others by stem."""
    label = model_label(spec)
    return A1111_UPSCALERS.get(label, label) if label else label


def a1111_parameters(params: dict) -> str:
    """The `parameters` text A1111 writes: prompt, `Negative prompt:` line, then `Key: value, ...`."""
    fields: dict[str, object] = {}
    if params.get("steps") is not None:
        fields["Steps"] = params["steps"]
    if params.get("sampler"):
        fields["Sampler"] = A1111_SAMPLER_NAMES.get(params["sampler"], params["sampler"])
    if params.get("cfg_scale") is not None:
        fields["CFG scale"] = params["cfg_scale"]
    if params.get("seed") is not None:
        fields["Seed"] = params["seed"]
    if params.get("width") and params.get("height"):
        fields["Size"] = f"{params['width']}x{params['height']}"
    if params.get("model_hash"):
        fields["Model hash"] = params["model_hash"]
    if params.get("model"):
        fields["Model"] = params["model"]
    if params.get("vae_hash"):  # a replacement VAE, as A1111 names the one it loaded
        fields["VAE hash"] = params["vae_hash"]
    if params.get("vae"):
        fields["VAE"] = params["vae"]
    if params.get("eta"):
        fields["Eta"] = params["eta"]
    hashes = [f"{e['name']}: {e['hash']}" for e in params.get("embeddings") or () if e.get("name") and e.get("hash")]
    if hashes:
        fields["TI hashes"] = ", ".join(hashes)
    lora_hashes = [f"{e['name']}: {e['hash']}" for e in params.get("loras") or () if e.get("name") and e.get("hash")]
    if lora_hashes:
        fields["Lora hashes"] = ", ".join(lora_hashes)
    adapter = params.get("ip_adapter") or {}
    if adapter.get("name"):  # not a field A1111 acts on: "PNG info" shows it, a pasted prompt ignores it
        fields["IP-Adapter"] = f"{adapter['name']} [{adapter.get('hash', '')}]"
        fields["IP-Adapter scale"] = adapter.get("scale")
    enhance = params.get("enhance") or {}
    if enhance.get("scale") and enhance.get("upscaler"):
        fields["Postprocess upscale by"] = enhance["scale"]
        fields["Postprocess upscaler"] = upscaler_label(enhance["upscaler"])
    if enhance.get("face_restorer") and enhance.get("restore_weight", 1.0):
        fields["GFPGAN visibility"] = round(float(enhance.get("restore_weight", 1.0)), 3)
    prompt = prompt_for_tool(str(params.get("prompt", "")), params, str)
    for lora in params.get("loras") or ():  # A1111 calls a LoRA from the prompt
        tag = f"<lora:{lora.get('name')}:"
        if lora.get("name") and tag not in prompt:
            prompt += f" {tag}{float(lora.get('weight', 1.0)):g}>"
    negative = prompt_for_tool(str(params.get("negative_prompt") or ""), params, str)
    lines = [prompt, f"Negative prompt: {negative}"]
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in fields.items()))
    return "\n".join(lines)


_FIELD = re.compile(r'\s*([\w][\w \-/+()]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _parse_fields(line: str) -> dict[str, str]:
    fields = {}
    for key, value in _FIELD.findall(line):
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        fields[key.strip()] = value
    return fields


def parse_a1111_parameters(text: str) -> dict:
    """Prompt, negative prompt and the `Key: value` fields of an A1111 `parameters` text.

    Field values are strings as written (`"Seed": "123"`); `Size` also gives `width` and `height`.
    """
    lines = text.strip("\n").split("\n")
    fields: dict[str, object] = {}
    if lines and len(_FIELD.findall(lines[-1])) >= 3:
        fields = _parse_fields(lines.pop())
    prompt_lines, negative_lines = [], []
    target = prompt_lines
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:") :].lstrip()
        target.append(line)
    result: dict[str, object] = {
        "prompt": "\n".join(prompt_lines),
        "negative_prompt": "\n".join(negative_lines),
        **fields,
    }
    size = re.fullmatch(r"(\d+)x(\d+)", str(fields.get("Size", "")))
    if size:
        result["width"], result["height"] = int(size.group(1)), int(size.group(2))
    return result


def invokeai_metadata(params: dict) -> dict:
    """InvokeAI's image metadata for "recall parameters", from amari's generation parameters."""

    def call(name: str) -> str:
        return f"<{name}>"

    meta: dict[str, object] = {
        "generation_mode": "txt2img",
        "positive_prompt": prompt_for_tool(str(params.get("prompt", "")), params, call),
        "negative_prompt": prompt_for_tool(str(params.get("negative_prompt") or ""), params, call),
    }
    for key, name in (("steps", "steps"), ("cfg_scale", "cfg_scale"), ("width", "width"), ("height", "height")):
        if params.get(key) is not None:
            meta[name] = params[key]
    seed = params.get("seed")
    if isinstance(seed, int) and 0 <= seed <= INVOKEAI_MAX_SEED:
        meta["seed"] = seed
    scheduler = INVOKEAI_SCHEDULERS.get(params.get("sampler"))
    if scheduler:
        meta["scheduler"] = scheduler
    base = params.get("model_base") or "sd-1"
    if params.get("model"):
        meta["model"] = _invokeai_model(params["model"], base, "main")
    loras = [lora for lora in params.get("loras") or () if lora.get("name")]
    if loras:
        meta["loras"] = [
            {"model": _invokeai_model(lora["name"], base, "lora"), "weight": float(lora.get("weight", 1.0))}
            for lora in loras
        ]
    return meta


def _invokeai_model(name: str, base: str, kind: str) -> dict:
    # Without InvokeAI's own key and hash, recall finds the model by name and base (`model_name`,
    # `base_model`: the identifier it falls back to).
    return {"name": name, "base": base, "type": kind, "model_name": name, "base_model": base}


def add_text_chunk(info, key: str, text: str) -> None:
    """A PNG text chunk readers decode right: tEXt for ASCII, uncompressed iTXt (UTF-8) for the rest (JSON
    is written ASCII, so it is always tEXt)."""
    if text.isascii():
        info.add_text(key, text)
    else:
        info.add_itxt(key, text, zip=False)
