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


def reference_encoder(folder: Path):
    """The face encoder of the reference group and the samples. A miner's sim-group is read with the
    faces the miner found, from its workspace's database (read-only), so dlib does not run on the group
    again; everything is cached in amari's descriptor cache besides."""
    from amari.faces.embeddings import EmbeddingCache, FaceEncoder, LayeredCache
    from amari.storage.layout import WorkspaceLayout

    own = EmbeddingCache()
    workspace = WorkspaceLayout(Path(folder).resolve().parent)
    if Path(folder).resolve() == workspace.sim_group and workspace.database.is_file():
        mined = EmbeddingCache.read_only(workspace.database)
        if mined is not None:
            return FaceEncoder(cache=LayeredCache(own, mined))
    return FaceEncoder(cache=own)


def score_samples(samples: list[Sample], encoder, reference: FaceGroup, found: dict | None = None) -> Validation:
    """Sim-score of each sample's largest face against the reference group; `found`: the samples' faces
    when they were found elsewhere (`FaceEncoder.remember`), else the encoder finds them."""
    found = found if found is not None else encoder.faces_many([sample.path for sample in samples])
    per_image, scores = [], []
    for sample in samples:
        score = reference.score_found(sample.path, found[Path(sample.path)]).score
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


def sample_pipeline(components):
    """A text-to-image pipeline of the model's family over the run's own modules (nothing copied or reloaded)."""
    return components.family.sample_pipeline(components.pipe, components.sample_scheduler)


def planned_samples(folder: Path, config, token: str) -> list[Sample]:
    """The sample images of a checkpoint, one per sample prompt and seed, in `folder`; `{}` in a prompt
    becomes the placeholder token (a LoRA run's trigger words)."""
    return [
        Sample(Path(folder) / f"p{p}-seed{seed}.png", template.replace("{}", token), seed)
        for p, template in enumerate(config.sample_prompts)
        for seed in config.sample_seeds
    ]


def generate_samples(
    pipe,
    folder: Path,
    config,
    token: str,
    model: ModelInfo,
    files: dict,
    step: int,
    family=None,
    size: int | None = None,
) -> list[Sample]:
    """One PNG per sample prompt and seed of `config`, all made in one call of the pipeline (each from its
    own seeded generator, so an image is the one a call for it alone makes).

    `files` holds what the image records about the checkpoint's embedding and LoRA
    (`amari.provenance.names`: its A1111 and kohya files), so that the infotext names them as A1111, ComfyUI
    and InvokeAI do and pasting a sample's parameters there with those files installed makes it again;
    `family` is the model's (`amari.models.families`, which names its base as InvokeAI does) and `size` the
    images' side (default: the training resolution, else the model's native size).
    """
    import torch

    from amari.models.families.registry import guess, native_size

    family = family or guess(config.model)
    steps = config.sample_steps or family.defaults.sample_steps
    guidance = family.defaults.guidance if config.guidance_scale is None else config.guidance_scale
    size = size or config.resolution or native_size(config.model)
    sampler = family.defaults.sample_sampler
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    samples = planned_samples(folder, config, token)
    # CPU generators give the same starting noise on every device.
    generators = [torch.Generator("cpu").manual_seed(sample.seed) for sample in samples]
    with torch.no_grad():
        images = pipe(
            [sample.prompt for sample in samples],
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=size,
            width=size,
            generator=generators,
            **family.call_kwargs("", len(samples), sampler, 0.0),
        ).images
    for sample, image in zip(samples, images):
        params = {
            "prompt": sample.prompt,
            "seed": sample.seed,
            "steps": steps,
            "sampler": sampler,
            "cfg_scale": guidance,
            "width": size,
            "height": size,
            "model": model.name,
            "model_hash": model.model_hash,
            "model_base": family.base,
            "family": family.name,
            **files,
            "step": step,
        }
        save_png(image, sample.path, params)
    return samples
