"""Real photographs standing in for a generator: tests of early rejection, and the benchmark's simulated
accelerator (a generator that waits instead of computing, so the CPU work around it can be measured)."""

from __future__ import annotations

import time

import numpy as np


def face_photos(count: int, side: int = 512, seed: int = 0) -> list[np.ndarray]:
    """`count` different square crops around real faces (the six people of amari's sample photo),
    each resized to side², moved, scaled and mirrored a little: varied content like a generator's."""
    from PIL import Image, ImageOps

    from amari.study.demo import SAMPLE, SAMPLE_FACES

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
    getting photo i % len(photos), after waiting `wait` seconds per batch without using a CPU.

    `photos`: the images, or (count, side, seed) for `face_photos(count, side, seed)`, made where the
    step runs (a model actor on Ray gets three numbers, not the pixels). `die_once`: a file path; the
    first call that finds no file there creates it and kills the Ray actor it runs in (restartable), as
    a GPU worker that dies in the middle of a batch.
    """

    def __init__(self, photos, wait: float = 0.0, base_seed: int = 0, die_once: str | None = None):
        self.spec = tuple(photos) if isinstance(photos, tuple) else None
        self._photos = None if self.spec else list(photos)
        self.wait, self.base_seed, self.die_once = wait, base_seed, die_once

    @property
    def photos(self) -> list[np.ndarray]:
        if self._photos is None:
            self._photos = face_photos(*self.spec)
        return self._photos

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_photos": None} if self.spec else self.__dict__

    def _die_once(self) -> None:
        import os
        import threading

        import ray

        try:
            os.close(os.open(self.die_once, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        ray.kill(ray.get_runtime_context().current_actor, no_restart=False)
        threading.Event().wait()  # until the kill lands

    def __call__(self, prompt: str, seeds: list[int], config) -> list:
        from PIL import Image

        from amari.generate import GeneratedImage

        if self.die_once:
            self._die_once()
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
