"""Training data: images squared and resized once, prompt templates, and which sample comes when.

Every random choice of a run (which image, which template, flip or not, the diffusion timestep and
noise) is a pure function of the run's seed and the sample's global index. The step counter is
therefore the whole random state: a resumed run draws exactly what an uninterrupted run would have
drawn, and the same samples are seen whatever the number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from amari.errors import ImageError, UsageError
from amari.storage.images import image_files, load_rgb

# The ImageNet-style object templates of the original Textual Inversion trainer ("{}" is the token).
OBJECT_TEMPLATES = (
    "a photo of a {}",
    "a rendering of a {}",
    "a cropped photo of the {}",
    "the photo of a {}",
    "a photo of a clean {}",
    "a photo of a dirty {}",
    "a dark photo of the {}",
    "a photo of my {}",
    "a photo of the cool {}",
    "a close-up photo of a {}",
    "a bright photo of the {}",
    "a cropped photo of a {}",
    "a photo of the {}",
    "a good photo of the {}",
    "a photo of one {}",
    "a close-up photo of the {}",
    "a rendition of the {}",
    "a photo of the clean {}",
    "a rendition of a {}",
    "a photo of a nice {}",
    "a good photo of a {}",
    "a photo of the nice {}",
    "a photo of the small {}",
    "a photo of the weird {}",
    "a photo of the large {}",
    "a photo of a cool {}",
    "a photo of a small {}",
)


def square_resize(rgb: np.ndarray, resolution: int, center_crop: bool = True) -> np.ndarray:
    """Centre-crop to a square (unless told not to), then resize to resolution² with bicubic filtering."""
    height, width = rgb.shape[:2]
    if center_crop and height != width:
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        rgb = rgb[top : top + side, left : left + side]
    image = Image.fromarray(np.ascontiguousarray(rgb))
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return np.asarray(image)


def load_training_images(
    folder: str | Path, resolution: int, center_crop: bool = True
) -> tuple[list[Path], list[np.ndarray]]:
    """The images directly in `folder` (sorted by name), each resolution × resolution uint8 RGB.

    A file that cannot be read stops the run before any training: a silently smaller set would change
    the epoch count the study measures.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"training data folder {folder} does not exist")
    paths = image_files(folder, recursive=False)
    if not paths:
        raise UsageError(f"no images in {folder}")
    images, bad = [], []
    for path in paths:
        try:
            images.append(square_resize(load_rgb(path), resolution, center_crop))
        except ImageError as exc:
            bad.append(exc)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ImageError(bad[0].path, f"{bad[0].reason}{more}; remove or fix it before training")
    return paths, images


def to_pixels(rgb: np.ndarray, flip: bool):
    """uint8 H×W×3 -> float tensor 3×H×W in [-1, 1], mirrored left-right when `flip`."""
    import torch

    if flip:
        rgb = rgb[:, ::-1]
    array = np.ascontiguousarray(rgb, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def placeholder_prompt(template: str, tokens: list[str]) -> str:
    """The template with "{}" replaced by the placeholder's tokens, one per vector."""
    return template.replace("{}", " ".join(tokens))


def seed_for(seed: int, stream: int, index: int) -> int:
    """A well-mixed 63-bit seed for item `index` of random stream `stream` of the run seeded `seed`."""
    state = np.random.SeedSequence([seed, stream, index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


_SAMPLE_STREAM, _EPOCH_STREAM = 0, 1


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, length: int):
    import torch

    generator = torch.Generator().manual_seed(seed_for(seed, _EPOCH_STREAM, epoch))
    return torch.randperm(length, generator=generator)


@dataclass(frozen=True)
class Draw:
    """What sample number `index` of a run is made of."""

    index: int
    image: int  # index into the sorted training images
    template: int
    flip: bool
    generator_seed: int  # seeds the timestep, the latent sample and the noise of this sample


def draw(seed: int, index: int, images: int, repeats: int, templates: int, flip_p: float) -> Draw:
    """Sample `index` of the run: epochs are shuffled passes over images × repeats, as the original's
    data loader made them; template and flip are drawn per sample."""
    import torch

    length = images * repeats
    epoch, position = divmod(index, length)
    image = int(_epoch_order(seed, epoch, length)[position]) % images
    sample_seed = seed_for(seed, _SAMPLE_STREAM, index)
    generator = torch.Generator().manual_seed(sample_seed)
    template = int(torch.randint(templates, (1,), generator=generator))
    flip = bool(torch.rand(1, generator=generator) < flip_p)
    return Draw(index=index, image=image, template=template, flip=flip, generator_seed=sample_seed)


def sample_index(
    step: int, micro_step: int, process: int, slot: int, processes: int, batch_size: int, grad_accum: int
) -> int:
    """Global index of the sample in `slot` of the batch that `process` uses in `micro_step` of `step`.

    The samples of one optimizer step are consecutive, so sample n is the same whatever the number of
    processes and only its grouping into steps changes.
    """
    per_step = batch_size * processes * grad_accum
    return step * per_step + (micro_step * processes + process) * batch_size + slot
