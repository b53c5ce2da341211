"""Stable Diffusion pipelines for generation: loaded once per process (`amari.models.diffusion` does the
loading, from a Hugging Face id, a diffusers folder or one checkpoint file) and kept; sampler and
embeddings and LoRAs change on the loaded pipeline between calls, the weights never reload.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amari.generate.config import GenerateConfig
from amari.generate.ip_adapter import AdapterState, apply_ip_adapter
from amari.generate.lora import apply_loras
from amari.generate.textual_inversion import apply_embeddings
from amari.models.diffusion import ModelInfo, load_pipeline, model_base, model_source


@dataclass
class LoadedModel:
    """A pipeline in memory with what amari needs to know about it."""

    pipe: object
    info: ModelInfo  # its public name (never a local path) and, for a file, A1111's short hash
    device: str
    dtype: str
    base_scheduler_config: dict
    native_size: int
    embeddings: dict[str, str] = field(default_factory=dict)  # token -> resolved path
    loras: dict[str, tuple[str, float]] = field(default_factory=dict)  # adapter name -> (resolved path, weight)
    scheduler_name: str | None = None
    ip_adapter: AdapterState = field(default_factory=AdapterState)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def base(self) -> str | None:
        """The model family as InvokeAI names it (sd-1, sd-2), from the text encoder's width."""
        return model_base(self.pipe.text_encoder)

    def use(self, config: GenerateConfig) -> dict:
        """Set the sampler, embeddings, LoRAs and IP-Adapter `config` asks for (cheap; the model's weights stay
        loaded); returns what the pipeline's call needs besides (the IP-Adapter's image embeddings)."""
        from amari.generate.schedulers import make_scheduler

        if self.scheduler_name != config.scheduler:
            self.pipe.scheduler = make_scheduler(config.scheduler, self.base_scheduler_config)
            self.scheduler_name = config.scheduler
        apply_embeddings(self.pipe, self.embeddings, config.embeddings)
        apply_loras(self.pipe, self.loras, config.loras)
        return apply_ip_adapter(self.pipe, self.ip_adapter, config.ip_adapter, self.base, config.guidance_scale)


_LOADED: dict[tuple, LoadedModel] = {}


def _prepare(pipe, device: str, compile_unet: bool):
    import torch

    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        # Convolutions run fastest channels-last on tensor cores; attention already goes through
        # torch's scaled_dot_product_attention (flash / memory-efficient kernels), diffusers' default.
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if compile_unet:
        pipe.unet = torch.compile(pipe.unet)
    return pipe


def load_model(config: GenerateConfig, log=None) -> LoadedModel:
    """The pipeline for `config.model` on its device, loaded on first use and kept for the process."""
    from amari.execution.devices import resolve_device, resolve_dtype

    kind, location = model_source(config.model)
    device = resolve_device(config.device)
    torch_dtype = resolve_dtype(config.dtype, device)
    key = (
        kind,
        location,
        config.model_config,
        device,
        str(torch_dtype),
        config.safety_checker,
        config.compile,
        config.extract_ema,
    )
    if key in _LOADED:
        return _LOADED[key]
    pipe, info = load_pipeline(
        config.model, config.model_config, torch_dtype, config.safety_checker, config.extract_ema, log=log
    )
    pipe = _prepare(pipe, device, config.compile)
    native = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
    loaded = LoadedModel(
        pipe=pipe,
        info=info,
        device=device,
        dtype=str(torch_dtype).removeprefix("torch."),
        base_scheduler_config=dict(pipe.scheduler.config),
        native_size=native,
    )
    _LOADED[key] = loaded
    return loaded


def unload_all() -> None:
    """Forget every loaded pipeline (tests and benchmarks that compare loading costs)."""
    _LOADED.clear()
