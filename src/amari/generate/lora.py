"""LoRA files loaded into a pipeline by path, through diffusers (which needs peft): its own layout
(`pytorch_lora_weights.safetensors`, as `amari train --method lora` writes it) and kohya's, which A1111
and ComfyUI use.
"""

from __future__ import annotations

from pathlib import Path

from amari.errors import ModelError


def apply_loras(pipe, loaded: dict[str, tuple[str, float]], wanted) -> None:
    """Make `pipe` hold exactly the `wanted` Lora(path, weight) list; `loaded` maps adapter name -> (path,
    weight) and is kept up to date.

    Any change unloads every LoRA first, so a group without one (the control group) sees the plain model.
    """
    target = {
        f"lora{index}": (str(Path(lora.path).expanduser().resolve()), lora.weight) for index, lora in enumerate(wanted)
    }
    if target == loaded:
        return
    if loaded:
        pipe.unload_lora_weights()
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
