"""Prompt + seeds -> images, one `torch.Generator` per seed so any image can be made again alone."""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from amari.errors import ModelError, UsageError
from amari.generate.config import GenerateConfig, with_family_defaults

MAX_SEED = 2**32  # A1111's seed range; the study's seeds fit it


@dataclass(frozen=True)
class GeneratedImage:
    image: object  # PIL.Image.Image, RGB
    seed: int
    prompt: str
    params: dict  # everything that made it, ready for amari.provenance.png.save_png


@dataclass(frozen=True)
class GenerationResult:
    images: list[GeneratedImage]
    seconds: float  # wall time of the denoising and decoding, model loading excluded

    @property
    def seeds(self) -> list[int]:
        return [image.seed for image in self.images]


def random_seeds(count: int) -> list[int]:
    return [secrets.randbelow(MAX_SEED) for _ in range(count)]


def _check_request(prompt, seeds) -> list[str]:
    prompts = [prompt] * len(seeds) if isinstance(prompt, str) else list(prompt)
    if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise UsageError("a prompt must be non-empty text")
    if len(prompts) != len(seeds):
        raise UsageError(f"{len(prompts)} prompts for {len(seeds)} seeds; give one prompt or one per seed")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise UsageError(f"a seed must be an integer in [0, 2^64), got {seed!r}")
    return prompts


def _file_params(config: GenerateConfig) -> dict:
    """What every image of a request records about its embeddings and LoRAs: the files other tools load,
    by the names they give them (`amari.provenance.names`), never a local folder."""
    from amari.provenance.names import embedding_entry, lora_entry

    params: dict = {}
    if config.embeddings:
        params["embeddings"] = [embedding_entry(e.path, e.token) for e in config.embeddings]
    if config.loras:
        params["loras"] = [lora_entry(lora.path, lora.weight) for lora in config.loras]
    return params


def _image_params(prompt: str, seed: int, config: GenerateConfig, model, width: int, height: int, files: dict) -> dict:
    params = {
        "prompt": prompt,
        "negative_prompt": config.negative_prompt,
        "seed": seed,
        "steps": config.steps,
        "sampler": config.scheduler,
        "cfg_scale": config.guidance_scale,
        "width": width,
        "height": height,
        "model": model.info.name,
    }
    if model.info.model_hash:
        params["model_hash"] = model.info.model_hash
    if model.info.vae:
        params["vae"] = model.info.vae
        if model.info.vae_hash:
            params["vae_hash"] = model.info.vae_hash
    if config.scheduler == "ddim" and config.eta:
        params["eta"] = config.eta
    params["model_base"] = model.base
    params["family"] = model.family.name
    return {**params, **files}


def generate(
    prompt: str | Sequence[str],
    seeds: Sequence[int] | None = None,
    count: int | None = None,
    config: GenerateConfig = GenerateConfig(),
    progress: bool = True,
    on_batch: Callable[[list[GeneratedImage]], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> GenerationResult:
    """Images for `prompt` (one text, or one per seed), one per seed; random seeds when none given.

    The model loads on first use and stays loaded; passes hold `config.batch_size` images each.
    `on_batch` receives each pass's images as soon as they exist (to save them while the next runs);
    `on_step(step)` hears the end of every denoising step (`amari doctor` times steps with it).
    """
    import torch

    from amari.generate.pipeline import load_model
    from amari.progress import progress_bar

    # 1. Check the request up front.
    if seeds is None:
        if count is None or count < 1:
            raise UsageError("give seeds, or a count of images to make with random seeds")
        seeds = random_seeds(count)
    seeds = list(seeds)
    prompts = _check_request(prompt, seeds)

    # 2. The model, with its family's defaults where the config has none, and this request's sampler,
    #    embeddings and LoRAs.
    model = load_model(config)
    config = with_family_defaults(config, model.family)
    guided = model.use(config)  # the IP-Adapter's image embeddings, when one guides
    width = config.width or model.native_size
    height = config.height or model.native_size
    noise_device = "cpu" if config.rng == "cpu" else model.device
    files = _file_params(config)
    if config.ip_adapter is not None:
        from amari.generate.ip_adapter import adapter_params

        files["ip_adapter"] = adapter_params(config.ip_adapter, model.base)  # recorded with every image it guides

    # 3. Denoise pass by pass, one generator per image.
    images: list[GeneratedImage] = []
    started = time.perf_counter()
    show = progress_bar(len(seeds) * config.steps, "generating") if progress else _silent()
    with show as advance, torch.inference_mode():
        for start in range(0, len(seeds), config.batch_size):
            batch_seeds = seeds[start : start + config.batch_size]
            batch_prompts = prompts[start : start + config.batch_size]
            generators = [torch.Generator(device=noise_device).manual_seed(s) for s in batch_seeds]

            def step_done(pipe, step, timestep, tensors, size=len(batch_seeds)):
                advance(size)
                if on_step is not None:
                    on_step(step)
                return tensors

            with warnings.catch_warnings():  # diffusers' notes on its own deprecations, every call
                warnings.simplefilter("ignore", FutureWarning)
                output = model.pipe(
                    prompt=batch_prompts,
                    num_inference_steps=config.steps,
                    guidance_scale=config.guidance_scale,
                    width=width,
                    height=height,
                    generator=generators,
                    output_type="np",
                    callback_on_step_end=step_done,
                    **model.family.call_kwargs(config.negative_prompt, len(batch_seeds), config.scheduler, config.eta),
                    **guided,
                )
            batch = [
                GeneratedImage(
                    image=to_image(pixels, seed, model, getattr(output, "nsfw_content_detected", None), index),
                    seed=seed,
                    prompt=text,
                    params=_image_params(text, seed, config, model, width, height, files),
                )
                for index, (pixels, seed, text) in enumerate(zip(output.images, batch_seeds, batch_prompts))
            ]
            images.extend(batch)
            if on_batch is not None:
                on_batch(batch)
    return GenerationResult(images=images, seconds=time.perf_counter() - started)


def to_image(pixels, seed: int, model, flagged=None, index: int = 0):
    """An RGB image from the pipeline's [0, 1] floats (rounded as diffusers rounds them); NaN or all-black
    output is an error, never a silent "no face" (a safety checker's deliberate black is not one)."""
    import numpy as np
    from PIL import Image

    if flagged is not None and flagged[index]:
        return Image.fromarray(np.zeros(pixels.shape, np.uint8))
    broken = (
        "NaN values" if not np.isfinite(pixels).all() else "an all-black image" if pixels.max() < 0.5 / 255 else None
    )
    if broken is not None:
        raise ModelError(f"{model.name} made {broken} (seed {seed}, {model.dtype}): {model.family.broken_image_hint}")
    return Image.fromarray((pixels * 255).round().astype("uint8")).convert("RGB")


def pass_size(config: GenerateConfig, largest: int, gpu_only: bool = False) -> tuple[int, bool]:
    """How many images of `config` one pass can hold in the device's free memory (at most `largest`;
    with `gpu_only`, `config.batch_size` off a CUDA GPU), and whether its denoiser is compiled (then every pass
    must keep one shape): a model step, measured where the model runs, once it is loaded."""
    from amari.execution.memory import free_bytes, generation_batch
    from amari.generate.pipeline import load_model

    model = load_model(config)
    if gpu_only and not model.device.startswith("cuda"):
        return config.batch_size, model.compiled
    width, height = config.width or model.native_size, config.height or model.native_size
    return generation_batch(free_bytes(model.device), width, height, largest), model.compiled


def generate_images(prompt: str | Sequence[str], seeds: Sequence[int], config: GenerateConfig) -> list[GeneratedImage]:
    """`generate`'s images, quietly: a model step that can run anywhere (a thread, a model actor)."""
    return generate(prompt, seeds=seeds, config=config, progress=False).images


class _silent:
    def __enter__(self):
        return lambda n=1: None

    def __exit__(self, *exc):
        return False
