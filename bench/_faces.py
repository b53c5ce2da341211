"""Real-photo face images for benchmarks: variants (crop, flip, brightness, scale) of the test photos."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from amari.study.demo import SAMPLE_FACES

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
T1_BOXES = SAMPLE_FACES  # dlib's face boxes (top, right, bottom, left) in t1.jpg, the sample photo


def base_faces() -> list[Image.Image]:
    photo = Image.open(DATA / "t1.jpg").convert("RGB")
    crops = []
    for top, right, bottom, left in T1_BOXES:
        margin = (bottom - top) // 2 + 30
        crops.append(
            photo.crop(
                (
                    max(0, left - margin),
                    max(0, top - margin),
                    min(photo.width, right + margin),
                    min(photo.height, bottom + margin),
                )
            )
        )
    crops.append(Image.open(DATA / "astronaut.png").convert("RGB").crop((100, 0, 340, 240)))
    return crops


def variant(image: Image.Image, rng: random.Random) -> Image.Image:
    width, height = image.size
    dx, dy = rng.randint(0, width // 12), rng.randint(0, height // 12)
    image = image.crop((dx, dy, width - rng.randint(0, width // 12), height - rng.randint(0, height // 12)))
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    scale = rng.uniform(1.0, 1.6)
    return image.resize((int(image.width * scale), int(image.height * scale)), Image.LANCZOS)


def write_variants(folder: Path, count: int, seed: int, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    faces = base_faces()
    paths = []
    for index in range(count):
        path = folder / f"{prefix}{index:04d}.png"
        variant(faces[index % len(faces)], rng).save(path)
        paths.append(path)
    return paths
