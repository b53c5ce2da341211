"""What every model family says about itself, with Stable Diffusion's UNet behaviour as the default.

A family is one object (`Family` or a subclass) in its own module; `amari.models.families.registry`
lists them. Its parts, in the order a model meets them:

1. recognising its weights (`matches`, over `amari.models.families.evidence.Evidence`);
2. its defaults (`Defaults`: native size, sampler, steps, guidance, dtype, prompt length, enhancement);
3. loading (`pipeline_class`, `pipeline_kwargs`, `load_single_file`, `native_size`);
4. generating (`samplers`, `call_kwargs`, embeddings in and out);
5. training (text encoders, latents, the noising objective, the denoiser's call, sample images);
6. its files (LoRA key names and metadata for kohya / A1111 / ComfyUI, the embedding file's layout);
7. what it costs (`parameters`, for `amari doctor`'s memory table) and its licence.

torch and diffusers are imported inside the methods, so that reading a family's defaults stays cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from amari.errors import ModelError, UsageError

UPSCALE, RESTORE = "upscale", "restore"  # enhancement: the 2022 chain (x4 -> x2, GFPGAN), or GFPGAN alone
CLIP_MAX_TOKENS = 77


@dataclass(frozen=True)
class Defaults:
    """A family's settings where the user gives none."""

    size: int  # native image side in pixels (the loaded model's own config has the last word)
    sampler: str
    steps: int
    guidance: float
    dtype: str  # on a GPU; the CPU always computes in float32
    max_tokens: int  # longest prompt the text encoders read
    enhancement: str  # UPSCALE or RESTORE
    sample_sampler: str  # training's sample images
    sample_steps: int


@dataclass(frozen=True)
class TextEncoder:
    """One text encoder of a pipeline as training and the file formats see it."""

    encoder: str  # the pipeline's attribute (text_encoder, text_encoder_2), also the diffusers LoRA key prefix
    tokenizer: str
    embedding_key: str | None = None  # its part of a two-encoder embedding file (clip_l, clip_g)
    kohya_prefix: str | None = None  # kohya's LoRA prefix (lora_te, lora_te1, ...); None: no LoRA here (T5)
    learns_token: bool = True  # Textual Inversion trains a vector here


@dataclass(frozen=True)
class Family:
    """A model family; this base class behaves as Stable Diffusion 1.x / 2.x does (one CLIP, a UNet)."""

    name: str  # amari's name: sd1, sd2, sdxl, flux-schnell, flux-dev
    label: str  # for people: "SD 1.x", "FLUX.1 [schnell]"
    base: str  # InvokeAI's base model name, which PNG metadata carries: sd-1, sd-2, sdxl, flux
    pipeline_class: str  # the diffusers pipeline
    defaults: Defaults
    hub_example: str  # a Hugging Face id of the family, for messages (e.g. a single file's --model-config)
    denoiser: str = "unet"
    text_encoders: tuple[TextEncoder, ...] = (TextEncoder("text_encoder", "tokenizer", kohya_prefix="lora_te"),)
    samplers: tuple[str, ...] | None = None  # None: every UNet sampler amari knows
    size_multiple: int = 8  # image sides are multiples of this (the VAE's scale, × 2 for FLUX.1's patches)
    no_token_training: str | None = None  # why Textual Inversion is not offered, when it is not
    loads_in_training_dtype: bool = False  # training loads the weights in its half precision (they ship so)
    biometric_licence: str | None = None  # a licence that forbids biometric processing of the outputs
    kohya_metadata: dict = field(default_factory=dict)  # ss_base_model_version and friends in kohya's LoRA files
    parameters: dict = field(default_factory=dict)  # billions of parameters per component (amari doctor)
    broken_image_hint: str = (
        "the weights may be damaged, or half precision overflowed: try dtype=float32 (--option dtype=float32)"
    )

    # 1. Recognising -------------------------------------------------------------------------------

    def matches(self, evidence) -> bool:
        raise NotImplementedError

    # 3. Loading -----------------------------------------------------------------------------------

    def pipeline_kwargs(self, safety_checker: bool) -> dict:
        return {} if safety_checker else {"safety_checker": None, "requires_safety_checker": False}

    def load_single_file(self, path: str, kwargs: dict, config_source: str | None, extract_ema: bool):
        import diffusers

        pipeline = getattr(diffusers, self.pipeline_class)
        if config_source is not None:
            kwargs = {**kwargs, "config": config_source}
        return pipeline.from_single_file(path, extract_ema=extract_ema, **kwargs)

    def native_size(self, pipe) -> int:
        return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)

    def native_size_of(self, evidence) -> int:
        """The native size from the configs, before anything loads (the family's default when unknown)."""
        samples = evidence.config(self.denoiser, "sample_size") if self.denoiser == "unet" else 128
        levels = evidence.config("vae", "block_out_channels")
        if not isinstance(samples, int) or not isinstance(levels, list):
            return self.defaults.size
        return samples * 2 ** (len(levels) - 1)

    # 4. Generating --------------------------------------------------------------------------------

    def check_sampler(self, sampler: str) -> None:
        if self.samplers is not None and sampler not in self.samplers:
            raise UsageError(
                f"{self.label} samples with {', '.join(self.samplers)}, not {sampler!r} "
                f"(set the sampler, or use the preset fast)"
            )
        if self.samplers is None and sampler.startswith("flow_"):
            raise UsageError(f"{sampler} is FLUX.1's sampler; {self.label} takes ddim, k_lms, dpmpp_2m, ...")

    def call_kwargs(self, negative_prompt: str, count: int, sampler: str, eta: float) -> dict:
        kwargs = {"negative_prompt": [negative_prompt] * count if negative_prompt else None}
        if sampler == "ddim":
            kwargs["eta"] = eta
        return kwargs

    def load_embedding(self, pipe, vectors: dict, token: str, path: str) -> None:
        """Put an embedding's vectors ({encoder key or None: [n, width]}) into the pipeline under `token`."""
        if self.no_token_training:
            raise UsageError(f"{path}: {self.label} takes no textual-inversion embeddings ({self.no_token_training})")
        for slot, tokenizer, encoder in self.encoders(pipe):
            if not slot.learns_token:
                continue
            tensor = vectors.get(slot.embedding_key)
            if tensor is None:
                raise ModelError(
                    f"{path}: {self.label} needs an embedding with {self._embedding_keys()}, found "
                    f"{', '.join(str(key) for key in vectors)}; it was trained for another base model"
                )
            width = encoder.get_input_embeddings().weight.shape[-1]
            if tensor.shape[-1] != width:
                raise ModelError(
                    f"{path}: embedding width {tensor.shape[-1]} does not fit this model's text encoder "
                    f"(width {width}); it was trained for another base model"
                )
            try:
                pipe.load_textual_inversion(tensor, token=token, tokenizer=tokenizer, text_encoder=encoder)
            except ValueError as exc:  # a token the tokenizer already has, for one
                raise UsageError(f"{path}: cannot load as {token!r}: {str(exc).splitlines()[0]}") from None

    def _embedding_keys(self) -> str:
        return " and ".join(s.embedding_key for s in self.text_encoders if s.embedding_key) or "one tensor"

    def unload_embeddings(self, pipe, tokens: list[str]) -> None:
        for slot, tokenizer, encoder in self.encoders(pipe):
            if slot.learns_token:
                # A multi-vector embedding added `token_1`, `token_2`, ... too; unloading removes only the tokens named.
                names = [name for name in tokenizer.get_vocab() if any(_of_token(name, token) for token in tokens)]
                pipe.unload_textual_inversion(names, tokenizer=tokenizer, text_encoder=encoder)

    # 5. Training ----------------------------------------------------------------------------------

    def encoders(self, pipe) -> list[tuple[TextEncoder, object, object]]:
        """(slot, tokenizer, text encoder) of each text encoder the pipeline has."""
        return [(slot, getattr(pipe, slot.tokenizer), getattr(pipe, slot.encoder)) for slot in self.text_encoders]

    def max_tokens(self, slot: TextEncoder, tokenizer, encoder) -> int:
        return min(tokenizer.model_max_length, encoder.config.max_position_embeddings)

    def training_scheduler(self, pipe):
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(pipe.scheduler.config)

    def sample_scheduler(self, pipe):
        from diffusers import DDIMScheduler

        return DDIMScheduler.from_config(pipe.scheduler.config)

    def training_vae_dtype(self, vae, dtype):
        """The dtype the VAE encodes training images in."""
        return dtype

    def scale_latents(self, vae, latents):
        return latents * vae.config.scaling_factor

    def noisy_input(self, scheduler, latents, noise, timesteps):
        """(noisy latents, the denoiser's time input, the training target) at integer `timesteps`."""
        noisy = scheduler.add_noise(latents, noise, timesteps)
        if scheduler.config.prediction_type == "v_prediction":
            return noisy, timesteps, scheduler.get_velocity(latents, noise, timesteps)
        return noisy, timesteps, noise

    def encode_text(self, encoders: list, ids: list) -> dict:
        """The denoiser's text conditioning from each encoder's token ids."""
        return {"encoder_hidden_states": encoders[0](ids[0])[0]}

    def predict(self, denoiser, noisy, time, conditioning: dict, dtype, size: int):
        """The denoiser's output for `noisy` latents of a `size`² image."""
        hidden = conditioning["encoder_hidden_states"].to(dtype)
        return denoiser(noisy.to(dtype), time, hidden).sample

    def sample_pipeline(self, pipe, scheduler):
        """A pipeline over the run's own modules (nothing copied or reloaded) for sample images."""
        import diffusers

        components = {**pipe.components, "scheduler": scheduler}
        made = getattr(diffusers, self.pipeline_class)(**components, **self._sample_extras())
        made.set_progress_bar_config(disable=True)
        return made

    def _sample_extras(self) -> dict:
        return {"requires_safety_checker": False}

    # 6. Files -------------------------------------------------------------------------------------

    def kohya_module(self, part: str, module: str) -> str | None:
        """kohya's name of a LoRA-adapted module (`part` is the diffusers key prefix); None: no kohya file."""
        if part == self.denoiser:
            return "lora_unet_" + module.replace(".", "_")
        slot = next((s for s in self.text_encoders if s.encoder == part), None)
        if slot is None or slot.kohya_prefix is None:
            return None
        return f"{slot.kohya_prefix}_" + module.replace(".", "_")

    def embedding_file(self, vectors: dict) -> dict:
        """An embedding file's tensors from each encoder's vectors, as the other tools read them: one
        encoder's under kohya's `emb_params` key (A1111, ComfyUI, InvokeAI accept it)."""
        (tensor,) = vectors.values()
        return {"emb_params": tensor}


def refuse(what: str, evidence) -> ModelError:
    return ModelError(
        f"{what}: not a model amari knows ({evidence.describe()}); amari reads SD 1.x, SD 2.x, SDXL and FLUX.1"
    )


def _of_token(name: str, token: str) -> bool:
    return name == token or re.fullmatch(re.escape(token) + r"_\d+", name) is not None
