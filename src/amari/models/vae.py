"""A replacement VAE (`--vae`): SDXL's fp16-fix VAE, SD 1.x's ft-mse one, any other AutoencoderKL.

Given as a folder (a VAE folder with its config.json, or a whole diffusers pipeline whose `vae/` is
taken), a Hugging Face id, or one `.safetensors`/`.ckpt` file, which takes its config from the model it
goes with (or, offline, fails with what to pass). Outputs name it as A1111 does: the file or folder's
name, and a file's short hash.
"""

from __future__ import annotations

from pathlib import Path

from amari.errors import ModelError

_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")


def _folder_kwargs(folder: Path) -> dict | None:
    if (folder / "vae" / "config.json").is_file():
        return {"subfolder": "vae"}
    if (folder / "config.json").is_file():
        return {}
    return None


def load_vae(spec: str, torch_dtype, config_source: str | None = None):
    """(AutoencoderKL, public name, short hash or None); `config_source` is the model it goes with."""
    from diffusers import AutoencoderKL

    from amari.models.diffusion import dtype_kwargs, first_line, model_source, short_hash
    from amari.models.files import is_offline

    path = Path(spec).expanduser()
    dtype = dtype_kwargs(torch_dtype)
    try:
        if path.is_dir():
            kwargs = _folder_kwargs(path)
            if kwargs is None:
                raise ModelError(f"--vae {path.name}: a VAE folder needs a config.json (or a pipeline's vae/)")
            return AutoencoderKL.from_pretrained(path, local_files_only=True, **kwargs, **dtype), path.name, None
        if path.is_file():
            if path.suffix.lower() not in _SUFFIXES:
                raise ModelError(f"--vae {path.name}: a VAE file ends in {', '.join(_SUFFIXES)}")
            config = {}
            if config_source is not None:
                kind, location = model_source(config_source)
                config = {"config": location, "subfolder": "vae"} if kind != "file" else {}
            vae = AutoencoderKL.from_single_file(str(path), local_files_only=is_offline(), **config, **dtype)
            return vae, path.name, short_hash(path)
        if path.suffix.lower() in _SUFFIXES or "/" not in spec:
            raise ModelError(f"--vae {spec}: not found (give a VAE folder, a Hugging Face id or a .safetensors file)")
        offline = {"local_files_only": is_offline()}
        try:
            vae = AutoencoderKL.from_pretrained(spec, **offline, **dtype)
        except (OSError, ValueError):
            vae = AutoencoderKL.from_pretrained(spec, subfolder="vae", **offline, **dtype)
        return vae, spec, None
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - diffusers, hub and file errors all end the same way
        raise ModelError(f"--vae {spec}: cannot load it as a VAE ({first_line(exc)})") from None
