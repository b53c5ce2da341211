"""Real photographs standing in for a generator: tests of early rejection, and the benchmark's simulated
accelerator (a generator that waits instead of computing, so the CPU work around it can be measured)."""

from __future__ import annotations

import time

import numpy as np


def face_photos(count: int, side: int = 512, seed: int = 0) -> list[np.ndarray]:
    """`count` different square crops around real faces (the six people of amari's sample photo),
    each resized to side², moved, scaled and mirrored a little: varied content like a generator's."""
    from PIL import Image, ImageOps

    from amari.demo import SAMPLE, SAMPLE_FACES

    rng = np.random.default_rng(seed)
    photo = Image.open(SAMPLE).convert("RGB")
    photos = []
    for i in range(count):
        top, right, bottom, left = SAMPLE_FACES[i % len(SAMPLE_FACES)]
        width = right - left
        half = width * rng.uniform(1.3, 1.8)
        cx = (left + right) / 2 + rng.uniform(-0.15, 0.15) * width
        cy = (top + bottom) / 2 + rng.uniform(-0.15, 0.15) * width
        crop = photo.crop((int(cx - half), int(cy - half), int(cx + half), int(cy + half))).resize((side, side))
        photos.append(np.asarray(ImageOps.mirror(crop) if rng.random() < 0.5 else crop))
    return photos


class PhotoGenerator:
    """A generate step (`DiffusersSource(generate_step=...)`) that hands out photographs, candidate i
    getting photo i % len(photos), after waiting `wait` seconds per batch without using a CPU."""

    def __init__(self, photos: list[np.ndarray], wait: float = 0.0, base_seed: int = 0):
        self.photos, self.wait, self.base_seed = photos, wait, base_seed

    def __call__(self, prompt: str, seeds: list[int], config) -> list:
        from PIL import Image

        from amari.generate import GeneratedImage

        if self.wait:
            time.sleep(self.wait)
        images = []
        for seed in seeds:
            rgb = self.photos[(seed - self.base_seed) % len(self.photos)]
            params = {
                "prompt": prompt,
                "negative_prompt": "",
                "seed": seed,
                "steps": config.steps,
                "sampler": config.scheduler,
                "cfg_scale": config.guidance_scale,
                "width": rgb.shape[1],
                "height": rgb.shape[0],
                "model": "photographs",
            }
            images.append(GeneratedImage(image=Image.fromarray(rgb), seed=seed, prompt=prompt, params=params))
        return images
