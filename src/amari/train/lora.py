"""LoRA adapters to train (through peft): on the denoiser's attention (the UNet's, FLUX.1's transformer's), and
optionally on the CLIP text encoders' (SDXL: both).

A LoRA adds `B·A·x · alpha/rank` to a frozen linear layer's output, A `[rank, in]` and B `[out, rank]`;
B starts at zero, so a fresh adapter leaves the model unchanged. The adapters' weights are drawn from a
generator seeded by the run's seed (not torch's global one), so a fresh run starts from the same LoRA
whatever ran before it in the process, and they are kept in float32 whatever precision the frozen model
is stored in (half-precision weights would not survive AdamW's small updates).

A LoRA's state is a flat dict keyed as diffusers' LoRA files are: `unet.<module>.lora_A.weight`,
`unet.<module>.lora_B.weight` (FLUX.1: `transformer.…`), `text_encoder.text_model.<module>.lora_A.weight`,
`text_encoder_2.…` (SDXL), ... (`amari.train.exports` writes the files from it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from amari.errors import UsageError
from amari.train.config import TEXT_ENCODER_ATTENTION, TrainConfig
from amari.train.data import seed_for

ADAPTER = "default"  # peft's adapter name, which its parameter names carry
UNET, TEXT_ENCODER = "unet", "text_encoder"  # the key prefixes of SD's parts in diffusers' LoRA files
# The text encoder's modules are written under CLIPTextModel's classic path (`text_model.encoder...`), which
# published LoRA files use and every loader maps, whether the installed transformers nests the model so.
_TEXT_MODEL = "text_model."
_INIT_STREAM = 3  # the random stream of the adapters' starting weights (see amari.train.data.seed_for)


@dataclass(frozen=True)
class LoraSpec:
    """What a run's LoRA is: rank, alpha and the modules it adapts (none on the text encoder: `()`)."""

    rank: int
    alpha: float
    unet_targets: tuple[str, ...]  # the denoiser's (a UNet's, or FLUX.1's transformer's)
    text_encoder_targets: tuple[str, ...] = ()
    denoiser: str = UNET  # the denoiser's attribute and key prefix
    text_encoders: tuple[str, ...] = (TEXT_ENCODER,)  # the text encoders a text-encoder LoRA goes on

    @classmethod
    def of(cls, config: TrainConfig, family=None) -> LoraSpec:
        """The run's LoRA; on `family`'s denoiser and the text encoders kohya's files can name (CLIP, not T5)."""
        encoders = (
            (TEXT_ENCODER,) if family is None else tuple(s.encoder for s in family.text_encoders if s.kohya_prefix)
        )
        return cls(
            rank=config.lora_rank,
            alpha=config.alpha,
            unet_targets=tuple(config.lora_targets),
            text_encoder_targets=TEXT_ENCODER_ATTENTION if config.text_encoder_lora else (),
            denoiser=UNET if family is None else family.denoiser,
            text_encoders=encoders,
        )

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def peft_config(self, targets: tuple[str, ...]):
        from peft import LoraConfig

        # Gaussian A (std 1/rank) and zero B, as diffusers' pivotal-tuning script starts; no dropout, so a
        # step is a pure function of the weights and the sample.
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            target_modules=list(targets),
            init_lora_weights="gaussian",
            lora_dropout=0.0,
        )

    def parts(self, components) -> list[tuple[str, torch.nn.Module, tuple[str, ...]]]:
        """(file prefix, module, targets) of each adapted model."""
        found = [(self.denoiser, components.denoiser, self.unet_targets)]
        if self.text_encoder_targets:
            for slot, _tokenizer, encoder in components.encoders():
                if slot.encoder in self.text_encoders:
                    found.append((slot.encoder, encoder, self.text_encoder_targets))
        return found

    def adapter_metadata(self) -> dict[str, dict]:
        """Each part's peft LoraConfig as a dict (what diffusers' files keep as `lora_adapter_metadata`)."""
        result = {}
        parts = [(self.denoiser, self.unet_targets)] + [
            (name, self.text_encoder_targets) for name in self.text_encoders
        ]
        for prefix, targets in parts:
            if targets:
                values = self.peft_config(targets).to_dict()
                result[prefix] = {k: sorted(v) if isinstance(v, set) else v for k, v in values.items()}
        return result


def add_lora(components, spec: LoraSpec, seed: int) -> list[torch.nn.Parameter]:
    """Put the adapters into the (frozen) models; returns their parameters, the only trainable ones.

    Call before the placeholder is spliced in: peft freezes every parameter it did not create.
    """
    from peft import inject_adapter_in_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(seed, _INIT_STREAM, 0))
        for prefix, module, targets in spec.parts(components):
            try:
                inject_adapter_in_model(spec.peft_config(targets), module, adapter_name=ADAPTER)
            except ValueError as exc:
                raise UsageError(f"cannot put a LoRA on the {prefix}'s {', '.join(targets)}: {exc}") from None
    parameters = list(_named_lora(components, spec).values())
    for parameter in parameters:
        parameter.data = parameter.data.float()
        parameter.requires_grad_(True)
    return parameters


def _file_key(prefix: str, name: str, text: bool) -> str:
    """A peft parameter name (`...to_q.lora_A.default.weight`) as its key in a LoRA file."""
    key = name.replace(f".{ADAPTER}.", ".")
    if text and not key.startswith(_TEXT_MODEL):
        key = _TEXT_MODEL + key
    return f"{prefix}.{key}"


def _named_lora(components, spec: LoraSpec) -> dict[str, torch.nn.Parameter]:
    return {
        _file_key(prefix, name, prefix != spec.denoiser): parameter
        for prefix, module, _targets in spec.parts(components)
        for name, parameter in module.named_parameters()
        if ".lora_A." in name or ".lora_B." in name
    }


def lora_state(components, spec: LoraSpec) -> dict[str, torch.Tensor]:
    """The adapters' weights, float32 on the CPU, keyed as in diffusers' LoRA files."""
    return {key: p.detach().float().cpu().clone() for key, p in _named_lora(components, spec).items()}


def load_lora_state(components, spec: LoraSpec, state: dict[str, torch.Tensor]) -> None:
    """Set the adapters' weights from `lora_state`'s dict (a checkpoint); refuses one of another shape."""
    named = _named_lora(components, spec)
    if set(named) != set(state):
        missing, extra = sorted(set(named) - set(state)), sorted(set(state) - set(named))
        raise UsageError(f"the checkpoint's LoRA does not fit this run's (missing {missing[:2]}, extra {extra[:2]})")
    with torch.no_grad():
        for key, parameter in named.items():
            if parameter.shape != state[key].shape:
                raise UsageError(f"the checkpoint's LoRA has {key} {tuple(state[key].shape)}, not {parameter.shape}")
            parameter.copy_(state[key].to(parameter.device, parameter.dtype))
