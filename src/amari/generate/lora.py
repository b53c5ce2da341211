"""LoRA files loaded into a pipeline by path, through diffusers (which needs peft): its own layout
(`pytorch_lora_weights.safetensors`, as `amari train --method lora` writes it) and kohya's, which A1111
and ComfyUI use.
"""

from __future__ import annotations

from pathlib import Path

from amari.errors import ModelError


def apply_loras(pipe, loaded: dict[str, tuple[str, float]], wanted, originals: dict | None = None) -> None:
    """Make `pipe` hold exactly the `wanted` Lora(path, weight) list; `loaded` maps adapter name -> (path,
    weight) and is kept up to date.

    Any change unloads every LoRA first, so a group without one (the control group) sees the plain model.
    With `originals` (a compiled UNet, whose graph must not change), each LoRA is fused into the weights
    and its layers removed; `originals` keeps the weights it changed as they were, which are put back
    exactly before the next change.
    """
    target = {
        f"lora{index}": (str(Path(lora.path).expanduser().resolve()), lora.weight) for index, lora in enumerate(wanted)
    }
    if target == loaded:
        return
    if loaded:
        if originals is None:
            pipe.unload_lora_weights()
        else:
            _restore(pipe, originals)
        loaded.clear()
    for name, (path, _weight) in target.items():
        # A file is named to diffusers as folder + weight_name: offline, diffusers 0.34 refuses to guess
        # the weight's file name even for a file given by its path.
        where = {"weight_name": Path(path).name} if Path(path).is_file() else {}
        try:
            pipe.load_lora_weights(str(Path(path).parent) if where else path, adapter_name=name, **where)
        except (ValueError, KeyError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "PEFT backend is required" in first:
                first = "loading a LoRA needs the peft package (pip install peft)"
            raise ModelError(f"{path}: cannot load as a LoRA: {first}") from None
        loaded[name] = target[name]
    if len(target) > 1 or any(weight != 1.0 for _path, weight in target.values()):
        pipe.set_adapters(list(target), adapter_weights=[weight for _path, weight in target.values()])
    if originals is not None and target:
        _fuse(pipe, list(target), originals)


# The parts of a pipeline a LoRA may change: the denoiser (FLUX.1's transformer) and the text encoders.
_LORA_PARTS = ("unet", "transformer", "text_encoder", "text_encoder_2")


def _modules(pipe) -> dict[str, object]:
    return {part: getattr(pipe, part) for part in _LORA_PARTS if getattr(pipe, part, None) is not None}


def _fuse(pipe, adapters: list[str], originals: dict) -> None:
    """Fold the loaded adapters into the weights under them and remove their layers, remembering each
    changed weight as it was."""
    for part, module in _modules(pipe).items():
        for name, layer in module.named_modules():
            base = getattr(layer, "base_layer", None)
            if base is not None and hasattr(layer, "lora_A"):
                originals[(part, f"{name}.weight")] = base.weight.detach().clone()
    pipe.fuse_lora(adapter_names=adapters)
    pipe.unload_lora_weights()


def _restore(pipe, originals: dict) -> None:
    modules = _modules(pipe)
    for (part, name), weight in originals.items():
        modules[part].get_parameter(name).data.copy_(weight)
    originals.clear()
