"""LoRA adapters to train (through peft): on the UNet's attention, and optionally on the text encoder's.

A LoRA adds `B·A·x · alpha/rank` to a frozen linear layer's output, A `[rank, in]` and B `[out, rank]`;
B starts at zero, so a fresh adapter leaves the model unchanged. The adapters' weights are drawn from a
generator seeded by the run's seed (not torch's global one), so a fresh run starts from the same LoRA
whatever ran before it in the process, and they are kept in float32 whatever precision the frozen model
is stored in (half-precision weights would not survive AdamW's small updates).

A LoRA's state is a flat dict keyed as diffusers' LoRA files are: `unet.<module>.lora_A.weight`,
`unet.<module>.lora_B.weight`, `text_encoder.text_model.<module>.lora_A.weight`, ... (`amari.train.exports`
writes the files from it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from amari.errors import UsageError
from amari.train.config import TEXT_ENCODER_ATTENTION, TrainConfig
from amari.train.data import seed_for

ADAPTER = "default"  # peft's adapter name, which its parameter names carry
UNET, TEXT_ENCODER = "unet", "text_encoder"  # the key prefixes of diffusers' LoRA files
# The text encoder's modules are written under CLIPTextModel's classic path (`text_model.encoder...`), which
# published LoRA files use and every loader maps, whether the installed transformers nests the model so.
_TEXT_MODEL = "text_model."
_INIT_STREAM = 3  # the random stream of the adapters' starting weights (see amari.train.data.seed_for)


@dataclass(frozen=True)
class LoraSpec:
    """What a run's LoRA is: rank, alpha and the modules it adapts (none on the text encoder: `()`)."""

    rank: int
    alpha: float
    unet_targets: tuple[str, ...]
    text_encoder_targets: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: TrainConfig) -> LoraSpec:
        return cls(
            rank=config.lora_rank,
            alpha=config.alpha,
            unet_targets=tuple(config.lora_targets),
            text_encoder_targets=TEXT_ENCODER_ATTENTION if config.text_encoder_lora else (),
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
        found = [(UNET, components.unet, self.unet_targets)]
        if self.text_encoder_targets:
            found.append((TEXT_ENCODER, components.text_encoder, self.text_encoder_targets))
        return found

    def adapter_metadata(self) -> dict[str, dict]:
        """Each part's peft LoraConfig as a dict (what diffusers' files keep as `lora_adapter_metadata`)."""
        result = {}
        for prefix, targets in ((UNET, self.unet_targets), (TEXT_ENCODER, self.text_encoder_targets)):
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


def _file_key(prefix: str, name: str) -> str:
    """A peft parameter name (`...to_q.lora_A.default.weight`) as its key in a LoRA file."""
    key = name.replace(f".{ADAPTER}.", ".")
    if prefix == TEXT_ENCODER and not key.startswith(_TEXT_MODEL):
        key = _TEXT_MODEL + key
    return f"{prefix}.{key}"


def _named_lora(components, spec: LoraSpec) -> dict[str, torch.nn.Parameter]:
    return {
        _file_key(prefix, name): parameter
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
