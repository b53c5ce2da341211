"""How often a prepared image still shows a face: the study's random crop vs the face-aware crop.

The sources are real photos from tests/data: each face of t1.jpg framed at a few sizes and offsets,
the astronaut and Tom Hanks scaled up and padded, all larger than 512 px so that a random crop of side
[512, shortest side] can cut the face off. Both modes run on the same sources with the same seeds;
the random crop is the baseline.

    .venv/bin/python bench/crop_faces.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from amari.prepare import PrepareConfig, run  # noqa: E402
from amari.prepare.stage import find_largest_face  # noqa: E402
from amari.storage.images import load_rgb  # noqa: E402
from amari.storage.layout import PrepareLayout  # noqa: E402
from amari.study.demo import SAMPLE_FACES  # noqa: E402

DATA = ROOT / "tests" / "data"
T1_FACES = SAMPLE_FACES  # dlib's face boxes (top, right, bottom, left) in t1.jpg, the sample photo


def framed_face(
    photo: Image.Image, box, scale: float, aspect: float, shift: tuple[float, float], shortest: int
) -> Image.Image:
    """A window around one face (`scale` × its size, off-centre by `shift`), resized to `shortest`."""
    top, right, bottom, left = box
    size = max(right - left, bottom - top)
    height = size * scale
    width = height * aspect
    centre_x = (left + right) / 2 + shift[0] * width
    centre_y = (top + bottom) / 2 + shift[1] * height
    window = (
        round(centre_x - width / 2),
        round(centre_y - height / 2),
        round(centre_x + width / 2),
        round(centre_y + height / 2),
    )
    padded = ImageOps.expand(photo, border=max(photo.size), fill=(128, 128, 128))
    border = max(photo.size)
    crop = padded.crop(tuple(v + border for v in window))
    factor = shortest / min(crop.size)
    return crop.resize((round(crop.width * factor), round(crop.height * factor)), Image.Resampling.LANCZOS)


def padded_photo(
    photo: Image.Image, factor: float, canvas: tuple[int, int], offset: tuple[float, float]
) -> Image.Image:
    """The photo scaled by `factor`, pasted at a relative `offset` on a canvas of its mean colour.

    A plain fill rather than mirrored edges, which would copy the face into the padding."""
    scaled = photo.resize((round(photo.width * factor), round(photo.height * factor)), Image.Resampling.LANCZOS)
    array = np.asarray(scaled)
    pad_x, pad_y = canvas[0] - scaled.width, canvas[1] - scaled.height
    left, top = round(pad_x * offset[0]), round(pad_y * offset[1])
    canvas_image = np.empty((canvas[1], canvas[0], 3), dtype=np.uint8)
    canvas_image[:] = array.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    canvas_image[top : top + scaled.height, left : left + scaled.width] = array
    return Image.fromarray(canvas_image)


def build_sources(folder: Path) -> int:
    rng = random.Random(20240601)
    t1 = Image.open(DATA / "t1.jpg").convert("RGB")
    count = 0
    for index, box in enumerate(T1_FACES):
        for framing in range(2):
            scale = rng.uniform(3.5, 7.0)
            aspect = rng.uniform(0.75, 1.5)
            shift = (rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3))
            shortest = rng.randint(800, 1300)
            framed_face(t1, box, scale, aspect, shift, shortest).save(folder / f"t1_face{index}_{framing}.png")
            count += 1
    astronaut = Image.open(DATA / "astronaut.png").convert("RGB")
    padded_photo(astronaut, 1.6, (1400, 1000), (0.5, 0.0)).save(folder / "astronaut_a.png")
    padded_photo(astronaut, 2.0, (1300, 1300), (0.1, 0.9)).save(folder / "astronaut_b.png")
    hanks = Image.open(DATA / "Tom_Hanks_54745.png").convert("RGB")
    padded_photo(hanks, 3.0, (1000, 800), (0.1, 0.7)).save(folder / "hanks_a.png")
    padded_photo(hanks, 3.5, (1100, 900), (0.9, 0.2)).save(folder / "hanks_b.png")
    return count + 4


def source_faces(src: Path) -> dict[str, tuple[int, int, int, int] | None]:
    """Each source's largest face box, found as the face-aware crop finds it."""
    config = PrepareConfig()
    return {path.name: find_largest_face(load_rgb(path), config.detect_max_side) for path in sorted(src.iterdir())}


def run_mode(src: Path, work: Path, crop: str, seeds: list[int], faces: dict) -> dict:
    """Outputs, outputs with a face found, outputs holding the whole source face, seconds."""
    found = kept = total = 0
    started = time.perf_counter()
    for seed in seeds:
        config = PrepareConfig(seed=seed, crop=crop, check_faces=True)
        result = run(config, PrepareLayout(src, work / f"{crop}_{seed}"))
        for item in result.prepared:
            total += 1
            found += bool(item.face_found)
            face = faces[item.source]
            kept += face is not None and item.box.contains(face)
    return {"total": total, "found": found, "kept": kept, "seconds": time.perf_counter() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="runs per mode (default 3)")
    args = parser.parse_args()
    seeds = list(range(1, args.seeds + 1))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "sources"
        src.mkdir()
        n_sources = build_sources(src)
        faces = source_faces(src)
        print(
            f"{n_sources} real-photo sources (shortest side > 512, {sum(f is not None for f in faces.values())} "
            f"with a face found), {len(seeds)} seeds per mode"
        )
        baseline = run_mode(src, tmp, "random", seeds, faces)
        face_aware = run_mode(src, tmp, "face", seeds, faces)
    print(f"{'crop':<8} {'outputs':>8} {'face found':>11} {'whole face in crop':>19} {'seconds':>8}")
    for name, row in (("random", baseline), ("face", face_aware)):
        print(
            f"{name:<8} {row['total']:>8} {row['found'] / row['total']:>11.1%} "
            f"{row['kept'] / row['total']:>19.1%} {row['seconds']:>8.1f}"
        )
    for label, key in (("face found", "found"), ("whole face in crop", "kept")):
        base, aware = baseline[key] / baseline["total"], face_aware[key] / face_aware["total"]
        print(f"face-aware / random, {label}: {aware / base if base else float('inf'):.2f}x")
    print(f"face-aware / random, time: {face_aware['seconds'] / baseline['seconds']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
