"""PNG compression level for the images amari writes: size against time, on real photo content.

Encodes watermarked face photographs (tests/data, cropped and resized to 512² and 1024², as generated
and as enhanced images are) at each zlib level and prints, per level, the mean encode time and file
size relative to Pillow's default level 6, measured in the same run. The miner encodes every image
on the CPU while the generator may wait, so time counts more than a few percent of disk.

    python bench/png_level.py [--images 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

from PIL import Image

from amari.provenance.png import PNG_COMPRESS_LEVEL, embed_watermark
from amari.testing.photos import face_photos

LEVELS = (0, 1, 2, 3, 4, 6, 9)


def encode(image: Image.Image, level: int) -> tuple[float, int]:
    buffer = io.BytesIO()
    began = time.perf_counter()
    image.save(buffer, format="PNG", compress_level=level)
    return time.perf_counter() - began, buffer.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="photos per size")
    parser.add_argument("--repeat", type=int, default=3, help="encodes per photo and level (best is kept)")
    args = parser.parse_args()
    for side in (512, 1024):
        images = [Image.fromarray(embed_watermark(rgb)) for rgb in face_photos(args.images, side=side)]
        rows = {}
        for level in LEVELS:
            times, sizes = [], []
            for image in images:
                best = min(encode(image, level) for _ in range(args.repeat))
                times.append(best[0])
                sizes.append(best[1])
            rows[level] = (statistics.mean(times), statistics.mean(sizes))
        base_time, base_size = rows[6]
        print(f"{side}² ({args.images} photos): level, ms per image, KiB, time vs 6, size vs 6")
        for level, (seconds, size) in rows.items():
            mark = "  <- amari" if level == PNG_COMPRESS_LEVEL else ""
            print(
                f"  {level}: {seconds * 1000:7.1f} ms {size / 1024:8.0f} KiB "
                f"{seconds / base_time:6.2f}× {size / base_size:6.2f}×{mark}"
            )


if __name__ == "__main__":
    main()
