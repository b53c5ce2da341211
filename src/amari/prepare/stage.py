"""`amari prepare`: the study's image transformer, from a folder of images to a training set.

Each image gets a random square crop whose side is drawn from [size, shortest side] (the shortest side
itself when that is at most `size`), resized to size × size and saved as PNG under a random 9-letter
name. A manifest maps every output back to its source and crop box. The source folder is only read.

With `crop="face"` the random crop must keep the whole detected face (with a margin) in frame; the
study's plain random crop can cut the face off, so either mode can measure how many outputs still
show a face (`face_found`).

An output of a synthetic source (one whose amari metadata says so) is written with amari's watermark
and metadata again, since cropping and resizing erase the source's; other images stay plain PNGs.
"""

from __future__ import annotations

import csv
import json
import os
import random
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from amari.errors import ImageError, UsageError
from amari.prepare.config import PrepareConfig
from amari.storage.images import image_files, open_image, shrink_to, to_rgb
from amari.storage.layout import FOLDER_MANIFEST, PrepareLayout

NAME_LENGTH = 9
# Lower case only, so that no two names differ by case alone (case-insensitive file systems).
NAME_LETTERS = string.ascii_lowercase
MANIFEST = FOLDER_MANIFEST
MANIFEST_FIELDS = ("file", "source", "seed", "crop", "left", "top", "right", "bottom", "side", "face_found")


@dataclass(frozen=True)
class CropBox:
    left: int
    top: int
    side: int

    @property
    def right(self) -> int:
        return self.left + self.side

    @property
    def bottom(self) -> int:
        return self.top + self.side

    def contains(self, box: tuple[int, int, int, int]) -> bool:
        """Whether a (top, right, bottom, left) box lies wholly inside the crop."""
        top, right, bottom, left = box
        return self.left <= left and right <= self.right and self.top <= top and bottom <= self.bottom


@dataclass(frozen=True)
class PreparedImage:
    file: str  # output file name inside the destination
    source: str  # source path relative to the source folder, with '/' separators
    box: CropBox
    face_found: bool | None  # None: not checked


@dataclass
class PrepareResult:
    destination: Path
    seed: int
    crop: str
    prepared: list[PreparedImage] = field(default_factory=list)
    skipped: list[ImageError] = field(default_factory=list)

    @property
    def faces_checked(self) -> int:
        return sum(p.face_found is not None for p in self.prepared)

    @property
    def face_share(self) -> float | None:
        """Share of checked outputs in which a face is still found (None: none checked)."""
        checked = [p.face_found for p in self.prepared if p.face_found is not None]
        return sum(checked) / len(checked) if checked else None


# -- pure pieces ------------------------------------------------------------------------------------


def crop_side_range(width: int, height: int, size: int) -> tuple[int, int]:
    """The allowed crop sides: [size, shortest side], or just the shortest side when it is ≤ size."""
    shortest = min(width, height)
    return (shortest, shortest) if shortest <= size else (size, shortest)


def random_crop_box(width: int, height: int, size: int, rng: random.Random) -> CropBox:
    """The study's crop: a uniformly random side in the allowed range, at a uniformly random place."""
    if width < 1 or height < 1:
        raise ValueError(f"image has no pixels ({width}x{height})")
    low, high = crop_side_range(width, height, size)
    side = rng.randint(low, high)
    return CropBox(left=rng.randint(0, width - side), top=rng.randint(0, height - side), side=side)


def face_keep_box(
    face_box: tuple[int, int, int, int], width: int, height: int, margin: float
) -> tuple[int, int, int, int]:
    """The face box grown by `margin` of its size on each side, clipped to the image: what must stay."""
    top, right, bottom, left = face_box
    grow_x, grow_y = margin * (right - left), margin * (bottom - top)
    return (
        max(0, int(np.floor(top - grow_y))),
        min(width, int(np.ceil(right + grow_x))),
        min(height, int(np.ceil(bottom + grow_y))),
        max(0, int(np.floor(left - grow_x))),
    )


def face_crop_box(width: int, height: int, size: int, keep: tuple[int, int, int, int], rng: random.Random) -> CropBox:
    """A random crop like `random_crop_box` that also holds the whole `keep` box (top, right, bottom, left).

    The side is drawn from the allowed range cut to sides large enough for the box, and the place from
    the positions that hold it. A box larger than the shortest side cannot fit: the crop is then the
    largest square, centred on the box as far as the image allows.
    """
    top, right, bottom, left = keep
    low, high = crop_side_range(width, height, size)
    needed = max(right - left, bottom - top)
    side = rng.randint(max(low, needed), high) if needed <= high else high
    return CropBox(left=_place(left, right, side, width, rng), top=_place(top, bottom, side, height, rng), side=side)


def _place(start: int, end: int, side: int, extent: int, rng: random.Random) -> int:
    """A random start of a `side`-long window in [0, extent) that covers [start, end) if it can."""
    lowest, highest = max(0, end - side), min(start, extent - side)
    if lowest > highest:  # the span is longer than the window: centre the window on it
        return int(min(max(0, (start + end - side) // 2), extent - side))
    return rng.randint(lowest, highest)


def random_name(rng: random.Random, taken: set[str], length: int = NAME_LENGTH) -> str:
    """A random lower-case name not in `taken` (compared lower-case); the name is added to `taken`."""
    while True:
        name = "".join(rng.choice(NAME_LETTERS) for _ in range(length))
        if name not in taken:
            taken.add(name)
            return name


def image_rng(seed: int, source: str) -> random.Random:
    """One generator per source image, so an image's crop and name do not depend on the others."""
    return random.Random(f"amari-prepare:{seed}:{source}")


def crop_and_resize(image: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    pil = Image.fromarray(image)
    resized = pil.resize((size, size), Image.Resampling.LANCZOS, box=(box.left, box.top, box.right, box.bottom))
    return np.asarray(resized)


# -- faces ------------------------------------------------------------------------------------------


def find_largest_face(image: np.ndarray, max_side: int) -> tuple[int, int, int, int] | None:
    """The largest HOG face box (top, right, bottom, left) in full-image pixels, clipped to it, or None."""
    from amari.faces import descriptors as faces

    small = shrink_to(image, max_side)
    scale = image.shape[1] / small.shape[1]
    boxes = faces.detect(small, "hog", 1)
    if not boxes:
        return None
    top, right, bottom, left = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
    height, width = image.shape[:2]
    # dlib's boxes may reach past the edges for a face cut by the frame.
    return (
        max(0, round(top * scale)),
        min(width, round(right * scale)),
        min(height, round(bottom * scale)),
        max(0, round(left * scale)),
    )


def has_face(image: np.ndarray) -> bool:
    """Whether dlib's HOG detector, upsampled once as the study scores, finds any face."""
    from amari.faces import descriptors as faces

    return bool(faces.detect(image, "hog", 1))


# -- files ------------------------------------------------------------------------------------------


def source_images(src: str | os.PathLike) -> list[Path]:
    """The image files under `src`, recursively, sorted."""
    src = Path(src)
    if not src.is_dir():
        raise UsageError(f"source folder not found: {src}")
    return image_files(src)


def check_folders(src: Path, dst: Path, force: bool) -> None:
    """Refuse what could damage the source or mix outputs into unrelated files."""
    if not src.is_dir():
        raise UsageError(f"source folder not found: {src}")
    src_real, dst_real = src.resolve(), dst.resolve()
    if dst_real == src_real or src_real in dst_real.parents:
        raise UsageError(f"destination {dst} is inside the source folder {src}; choose a folder outside it")
    if dst.exists() and not dst.is_dir():
        raise UsageError(f"destination {dst} exists and is not a folder")
    if dst.is_dir() and any(dst.iterdir()) and not force:
        raise UsageError(f"destination {dst} is not empty; use --force to add to it (nothing is overwritten)")


def taken_names(dst: Path) -> set[str]:
    """Lower-case stems of everything already in the destination, so new names never clash."""
    if not dst.is_dir():
        return set()
    return {entry.name.split(".")[0].lower() for entry in dst.iterdir()}


def synthetic_params(info: dict) -> dict | None:
    """The generation parameters of an image whose amari metadata says it is synthetic, else None."""
    text = info.get("amari")
    if not isinstance(text, str):
        return None
    try:
        meta = json.loads(text)
    except ValueError:
        return None
    if not isinstance(meta, dict) or meta.get("synthetic") is not True:
        return None
    return {k: v for k, v in meta.items() if k not in ("synthetic", "generator", "watermark")}


def write_staged(dst: Path, image: np.ndarray, provenance_params: dict | None) -> Path:
    """Write the PNG under a hidden name; a synthetic source's output gets the watermark and metadata
    again, because cropping and resizing erase the watermark the source carried."""
    staging = dst / f".prepare-{secrets.token_hex(6)}.png"  # hidden: folder scans skip it
    if provenance_params is None:
        with open(staging, "xb") as handle:
            Image.fromarray(image).save(handle, format="PNG")
    else:
        from amari.provenance.png import save_png

        save_png(image, staging, provenance_params)
    return staging


def link_new_name(dst: Path, staging: Path, rng: random.Random, taken: set[str]) -> str:
    """Give the staged file a fresh random name, never replacing a file; returns the file name.

    The link fails rather than replace a file that appeared meanwhile, and an interrupted run leaves
    no half-written image under an image name.
    """
    try:
        while True:
            name = f"{random_name(rng, taken)}.png"
            try:
                os.link(staging, dst / name)
                return name
            except FileExistsError:
                continue
            except OSError:  # a file system without hard links: check, then move
                if (dst / name).exists():
                    continue
                os.replace(staging, dst / name)
                return name
    finally:
        staging.unlink(missing_ok=True)


class ManifestWriter:
    """Appends one row per output and flushes it, so an interrupted run still maps what it wrote."""

    def __init__(self, path: Path):
        if path.exists():
            with open(path, newline="", encoding="utf-8") as handle:
                header = next(csv.reader(handle), None)
            if header is not None and tuple(header) != MANIFEST_FIELDS:
                raise UsageError(f"{path} exists and is not a prepare manifest; move it away first")
            is_new = header is None
        else:
            is_new = True
        self.handle = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.handle)
        if is_new:
            self.writer.writerow(MANIFEST_FIELDS)
            self.handle.flush()

    def add(self, item: PreparedImage, seed: int, crop: str) -> None:
        box = item.box
        face = "" if item.face_found is None else str(item.face_found).lower()
        self.writer.writerow(
            (item.file, item.source, seed, crop, box.left, box.top, box.right, box.bottom, box.side, face)
        )
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def read_manifest(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- the stage --------------------------------------------------------------------------------------


def choose_box(image: np.ndarray, config: PrepareConfig, rng: random.Random) -> CropBox:
    height, width = image.shape[:2]
    if config.crop == "face":
        face = find_largest_face(image, config.detect_max_side)
        if face is not None:
            keep = face_keep_box(face, width, height, config.face_margin)
            return face_crop_box(width, height, config.size, keep, rng)
    return random_crop_box(width, height, config.size, rng)


def prepare_one(
    image: np.ndarray,
    source: str,
    dst: Path,
    config: PrepareConfig,
    seed: int,
    taken: set[str],
    source_params: dict | None = None,
) -> PreparedImage:
    rng = image_rng(seed, source)
    box = choose_box(image, config, rng)
    output = crop_and_resize(image, box, config.size)
    face_found = has_face(output) if config.finds_faces else None
    params = None
    if source_params is not None:
        params = {
            **source_params,
            "width": config.size,
            "height": config.size,
            "prepared": {"source": source, "crop": [box.left, box.top, box.right, box.bottom], "size": config.size},
        }
    name = link_new_name(dst, write_staged(dst, output, params), rng, taken)
    return PreparedImage(file=name, source=source, box=box, face_found=face_found)


def run(
    config: PrepareConfig, layout: PrepareLayout, on_progress: Callable[[Path], None] | None = None
) -> PrepareResult:
    """Transform every image under `layout.source` into `layout.destination`; broken images are skipped
    and listed."""
    src, dst = layout.source, layout.destination
    # 1. Check the folders before anything is written.
    check_folders(src, dst, config.force)
    sources = source_images(src)
    if not sources:
        raise UsageError(f"no images found in {src}")
    seed = config.seed if config.seed is not None else secrets.randbelow(2**32)
    result = PrepareResult(destination=dst, seed=seed, crop=config.crop)
    # 2. Collect the names already present, then write image by image, manifest row by row.
    dst.mkdir(parents=True, exist_ok=True)
    taken = taken_names(dst)
    manifest = ManifestWriter(dst / MANIFEST)
    try:
        for path in sources:
            source = path.relative_to(src).as_posix()
            try:
                opened = open_image(path)
                image = to_rgb(opened)
            except ImageError as exc:
                result.skipped.append(exc)
            else:
                item = prepare_one(image, source, dst, config, seed, taken, synthetic_params(opened.info))
                manifest.add(item, seed, config.crop)
                result.prepared.append(item)
            if on_progress:
                on_progress(path)
    finally:
        manifest.close()
    return result
