"""One group analysis at N = 312: cached descriptors against recomputing them from the images.

Builds N small face images (crops, flips and brightness changes of the faces in tests/data), puts them
in a miner workspace's sim-group with their descriptors, and times:

  A. recomputing: dlib finds and describes every face again, then the analysis runs;
  B. cached: the miner's path, the group's descriptors read from the workspace database, then the analysis;
  C. the analysis alone on descriptors already in memory.

Prints the times and the ratios A/B and A/C (machines are noisy, so only the ratios mean much).

    python bench/mine_policy.py [--images 312] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from amari.faces import descriptors as face_lib
from amari.faces.descriptors import FaceSettings
from amari.faces.embeddings import FaceEncoder, content_hash
from amari.mine import policy
from amari.mine.loop import members
from amari.mine.policy import MinerState, PolicyConfig
from amari.mine.records import Commit, NewImage
from amari.mine.workspace import Workspace
from amari.storage.layout import SIM_GROUP
from amari.study.demo import SAMPLE_FACES

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
FACES = [("astronaut.png", (76, 265, 166, 175))] + [("t1.jpg", box) for box in SAMPLE_FACES]


def make_images(folder: Path, count: int, rng: np.random.Generator) -> list[Path]:
    photos = {name: Image.open(DATA / name).convert("RGB") for name, _ in FACES}
    paths = []
    for i in range(count):
        name, (top, right, bottom, left) = FACES[i % len(FACES)]
        side = (right - left) * 1.4 * rng.uniform(0.85, 1.2)
        cx, cy = (left + right) / 2 + rng.uniform(-8, 8), (top + bottom) / 2 + rng.uniform(-8, 8)
        crop = photos[name].crop((int(cx - side), int(cy - side), int(cx + side), int(cy + side)))
        crop = crop.resize((200, 200), Image.LANCZOS)
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.8, 1.2))
        path = folder / f"face_{i:04d}.png"
        crop.save(path)
        paths.append(path)
    return paths


def fill_workspace(root: Path, paths: list[Path]) -> Workspace:
    """A workspace whose sim-group holds every image that has a face, with its descriptor."""
    workspace = Workspace.open(root)
    encoder = FaceEncoder(FaceSettings())
    change = Commit(batch=0)
    for path in paths:
        found = encoder.faces(path)
        if not found:
            continue
        target = root / SIM_GROUP / path.name
        target.write_bytes(path.read_bytes())
        stat = target.stat()
        change.new_images.append(
            NewImage(
                target,
                SIM_GROUP,
                content_hash(target.read_bytes()),
                stat.st_size,
                stat.st_mtime_ns,
                len(found),
                face_lib.largest(found).descriptor,
                None,
                "source",
                op="none",
            )
        )
    workspace.commit(change)
    return workspace


def timed(function, repeat: int):
    """(median seconds, last result)."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=312)
    parser.add_argument("--repeat", type=int, default=20, help="repeats of the fast measurements")
    args = parser.parse_args()
    config = PolicyConfig()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        paths = make_images(tmp / "images", args.images, np.random.default_rng(0))
        face_lib.encode(np.zeros((64, 64, 3), np.uint8))  # load dlib's models outside the timings
        workspace = fill_workspace(tmp / "workspace", paths)
        try:
            group = members(workspace)
            print(f"group of {len(group)} images with a face (of {len(paths)})")

            def recompute():
                encoder = FaceEncoder(FaceSettings())  # no cache: every face found and described again
                descriptors = [
                    face_lib.largest(encoder.faces(p)).descriptor
                    for p in sorted((workspace.root / SIM_GROUP).iterdir())
                ]
                return policy.analyse(
                    MinerState(), policy.Faces(tuple(range(len(descriptors))), np.array(descriptors)), config
                )

            def cached():
                return policy.analyse(MinerState(), members(workspace), config)

            def in_memory():
                return policy.analyse(MinerState(), group, config)

            a, recomputed = timed(recompute, 1)
            b, from_cache = timed(cached, args.repeat)
            c, _ = timed(in_memory, args.repeat)
            assert abs(recomputed[0].avg - from_cache[0].avg) < 1e-9, "cached descriptors differ from dlib's"
        finally:
            workspace.close()

    print(f"A. recompute from images : {a * 1000:10.1f} ms")
    print(f"B. cached (workspace DB) : {b * 1000:10.2f} ms")
    print(f"C. analysis in memory    : {c * 1000:10.2f} ms")
    print(f"ratio A/B (recompute / cached)    : {a / b:8.0f}x")
    print(f"ratio A/C (recompute / in memory) : {a / c:8.0f}x")


if __name__ == "__main__":
    main()
