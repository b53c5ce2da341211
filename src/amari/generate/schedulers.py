"""Samplers by name: each maps to a diffusers scheduler class and the options that make it that sampler.

Names follow the Stable Diffusion community's (`k_lms`, `euler_a`, `dpmpp_2m`); A1111's display names
for them live in `amari.provenance.infotext.A1111_SAMPLER_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amari.errors import UsageError


@dataclass(frozen=True)
class Sampler:
    name: str
    scheduler_class: str  # attribute of the `diffusers` package
    options: dict = field(default_factory=dict)
    description: str = ""


SAMPLERS: dict[str, Sampler] = {
    s.name: s
    for s in (
        Sampler("ddim", "DDIMScheduler", {}, "DDIM (the study's mining sampler)"),
        Sampler("pndm", "PNDMScheduler", {"skip_prk_steps": True}, "PLMS, the original scripts' other sampler"),
        Sampler("k_lms", "LMSDiscreteScheduler", {}, "LMS (the study's evaluation sampler)"),
        Sampler("euler", "EulerDiscreteScheduler", {}, "Euler"),
        Sampler("euler_a", "EulerAncestralDiscreteScheduler", {}, "Euler ancestral"),
        Sampler(
            "dpmpp_2m",
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
            "DPM++ 2M with Karras sigmas (fast: good images in 20-30 steps)",
        ),
        Sampler("unipc", "UniPCMultistepScheduler", {}, "UniPC"),
        Sampler("flow_euler", "FlowMatchEulerDiscreteScheduler", {}, "flow-matching Euler, FLUX.1's own sampler"),
    )
}


def check_sampler(name: str) -> Sampler:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise UsageError(f"unknown scheduler {name!r}; choose one of {', '.join(SAMPLERS)}") from None


def make_scheduler(name: str, base_config):
    """A fresh scheduler `name` built from the model's own scheduler config (betas, offsets)."""
    import diffusers

    sampler = check_sampler(name)
    scheduler_class = getattr(diffusers, sampler.scheduler_class)
    # Options of one sampler (Karras sigmas) must never leak into another, so each is built from
    # the config the model shipped with, not from whatever scheduler ran last.
    return scheduler_class.from_config(dict(base_config), **sampler.options)
