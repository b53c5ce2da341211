"""Sample images at each checkpoint and how much their faces look like the identity being learned.

The samples use fixed prompts and seeds (the study's evaluation seeds by default), so checkpoints are
compared on equal terms. With a reference group, each sample's largest face gets its sim-score (mean
distance to the group's faces); a sample without a face is counted, and scores 1.0 in the checkpoint's
overall `score` so that drawing no face never looks like progress.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from amari.faces.group import FaceGroup
from amari.models.diffusion import ModelInfo
from amari.provenance.png import save_png

NO_FACE_SCORE = 1.0
SAMPLER = "ddim"


@dataclass(frozen=True)
class Sample:
    path: Path
    prompt: str
    seed: int


@dataclass(frozen=True)
class Validation:
    images: int
    faces_found: int
    faces_found_rate: float
    mean_sim_score: float | None  # over the samples with a face
    score: float  # mean with NO_FACE_SCORE for samples without a face
    per_image: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def reference_group(folder: Path, encoder) -> FaceGroup:
    """The largest face of every image of the reference group; refuses a group without faces."""
    return FaceGroup.from_folder(folder, encoder, what="reference group")


def score_samples(samples: list[Sample], encoder, reference: FaceGroup) -> Validation:
    """Sim-score of each sample's largest face against the reference group."""
    per_image, scores = [], []
    for sample in samples:
        score = reference.score_file(sample.path, encoder).score
        if score is not None:
            scores.append(score)
        per_image.append({"file": sample.path.name, "prompt": sample.prompt, "seed": sample.seed, "sim_score": score})
    images = len(samples)
    found = len(scores)
    penalised = [NO_FACE_SCORE if item["sim_score"] is None else item["sim_score"] for item in per_image]
    return Validation(
        images=images,
        faces_found=found,
        faces_found_rate=found / images if images else 0.0,
        mean_sim_score=float(np.mean(scores)) if scores else None,
        score=float(np.mean(penalised)) if penalised else NO_FACE_SCORE,
        per_image=per_image,
    )


def sample_pipeline(components, text_encoder):
    """A text-to-image pipeline over the run's own modules (nothing is copied or reloaded)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=components.vae,
        text_encoder=text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        scheduler=components.sample_scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate_samples(
    pipe, folder: Path, config, token: str, model: ModelInfo, files: dict, step: int, base: str | None = None
) -> list[Sample]:
    """One PNG per sample prompt and seed of `config`; `{}` in a prompt becomes the placeholder token (a LoRA
    run's trigger words).

    `files` holds what the image records about the checkpoint's embedding and LoRA
    (`amari.provenance.names`: its A1111 and kohya files), so that the infotext names them as A1111, ComfyUI
    and InvokeAI do and pasting a sample's parameters there with those files installed makes it again;
    `base` is the model's family as InvokeAI names it.
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for p, template in enumerate(config.sample_prompts):
        prompt = template.replace("{}", token)
        for seed in config.sample_seeds:
            # A CPU generator gives the same starting noise on every device.
            generator = torch.Generator("cpu").manual_seed(seed)
            with torch.no_grad():
                image = pipe(
                    prompt,
                    num_inference_steps=config.sample_steps,
                    guidance_scale=config.guidance_scale,
                    height=config.resolution,
                    width=config.resolution,
                    generator=generator,
                ).images[0]
            path = folder / f"p{p}-seed{seed}.png"
            params = {
                "prompt": prompt,
                "seed": seed,
                "steps": config.sample_steps,
                "sampler": SAMPLER,
                "cfg_scale": config.guidance_scale,
                "width": config.resolution,
                "height": config.resolution,
                "model": model.name,
                "model_hash": model.model_hash,
                **({"model_base": base} if base else {}),
                **files,
                "step": step,
            }
            save_png(image, path, params)
            samples.append(Sample(path=path, prompt=prompt, seed=seed))
    return samples
