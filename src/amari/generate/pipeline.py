"""Diffusion pipelines for generation: loaded once per process (`amari.models.diffusion` does the loading,
from a Hugging Face id, a diffusers folder or one checkpoint file, as the pipeline of the model's family)
and kept; sampler and embeddings and LoRAs change on the loaded pipeline between calls, the weights never
reload.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amari.errors import UsageError
from amari.generate.config import GenerateConfig
from amari.generate.ip_adapter import AdapterState, apply_ip_adapter
from amari.generate.lora import apply_loras
from amari.generate.textual_inversion import apply_embeddings
from amari.models.diffusion import ModelInfo, load_pipeline, model_source


@dataclass
class LoadedModel:
    """A pipeline in memory with what amari needs to know about it."""

    pipe: object
    info: ModelInfo  # its public name (never a local path) and, for a file, A1111's short hash
    family: object  # its amari.models.families.base.Family
    device: str
    dtype: str
    base_scheduler_config: dict
    native_size: int
    embeddings: dict[str, str] = field(default_factory=dict)  # token -> resolved path
    loras: dict[str, tuple[str, float]] = field(default_factory=dict)  # adapter name -> (resolved path, weight)
    scheduler_name: str | None = None
    compiled: bool = False  # the denoiser runs compiled: shapes stay fixed, LoRAs are fused into it
    originals: dict = field(default_factory=dict)  # weights a fused LoRA changed, as they were before it
    ip_adapter: AdapterState = field(default_factory=AdapterState)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def base(self) -> str:
        """The model family as InvokeAI names it (sd-1, sd-2, sdxl, flux)."""
        return self.family.base

    def use(self, config: GenerateConfig) -> dict:
        """Set the sampler, embeddings, LoRAs and IP-Adapter `config` asks for (cheap; the model's weights stay
        loaded); returns what the pipeline's call needs besides (the IP-Adapter's image embeddings)."""
        from amari.generate.schedulers import make_scheduler

        self.family.check_sampler(config.scheduler)
        if self.scheduler_name != config.scheduler:
            self.pipe.scheduler = make_scheduler(config.scheduler, self.base_scheduler_config)
            self.scheduler_name = config.scheduler
        apply_embeddings(self.pipe, self.family, self.embeddings, config.embeddings)
        apply_loras(self.pipe, self.loras, config.loras, self.originals if self.compiled else None)
        return apply_ip_adapter(self.pipe, self.ip_adapter, config.ip_adapter, self.base, config.guidance_scale)


_LOADED: dict[tuple, LoadedModel] = {}


def _prepare(pipe, family, device: str, compile_model: bool | None, offload: bool) -> tuple[object, bool]:
    """The pipeline on its device, and whether its denoiser (the UNet; FLUX.1's transformer) is compiled."""
    import torch

    from amari.execution.devices import repeatable_kernels
    from amari.models.compiling import compile_in_place, should_compile

    pipe.set_progress_bar_config(disable=True)
    denoiser = getattr(pipe, family.denoiser)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        repeatable_kernels()  # a seed makes the same image in every run, a resumed miner's included
        # Convolutions run fastest channels-last on tensor cores; attention already goes through
        # torch's scaled_dot_product_attention (flash / memory-efficient kernels), diffusers' default.
        denoiser.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if offload:
        if device in ("cpu", "mps"):
            raise UsageError(f"offload moves the model's parts between the CPU and a CUDA GPU; the device is {device}")
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe = pipe.to(device)
    name = "the UNet" if family.denoiser == "unet" else f"the {family.denoiser}"
    compiled = should_compile(compile_model, device) and compile_in_place(denoiser, name)
    return pipe, compiled


def load_model(config: GenerateConfig, log=None) -> LoadedModel:
    """The pipeline for `config.model` on its device, loaded on first use and kept for the process."""
    from amari.execution.devices import resolve_device, resolve_dtype
    from amari.models.families.registry import by_name

    kind, location = model_source(config.model)
    device = resolve_device(config.device)
    key = (
        kind,
        location,
        config.model_config,
        device,
        config.dtype,
        config.safety_checker,
        config.compile,
        config.extract_ema,
        config.vae,
        config.offload,
    )
    if key in _LOADED:
        return _LOADED[key]
    from amari.models.families.registry import guess

    torch_dtype = resolve_dtype(config.dtype, device, guess(config.model).defaults.dtype)
    pipe, info = load_pipeline(
        config.model,
        config.model_config,
        torch_dtype,
        config.safety_checker,
        config.extract_ema,
        log=log,
        vae=config.vae,
    )
    family = by_name(info.family)
    pipe, compiled = _prepare(pipe, family, device, config.compile, config.offload)
    loaded = LoadedModel(
        pipe=pipe,
        compiled=compiled,
        info=info,
        family=family,
        device=device,
        dtype=str(torch_dtype).removeprefix("torch."),
        base_scheduler_config=dict(pipe.scheduler.config),
        native_size=family.native_size(pipe),
    )
    _LOADED[key] = loaded
    return loaded


def unload_all() -> None:
    """Forget every loaded pipeline (tests and benchmarks that compare loading costs)."""
    _LOADED.clear()
