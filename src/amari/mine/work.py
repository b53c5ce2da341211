"""The miner's per-image CPU work, as plain functions a worker process runs (no torch, no models).

Each takes pixels or a file and returns what the single writer needs: the PNG file's bytes with amari's
provenance (watermark, metadata, C2PA credentials when the run has a signing key), their content hash,
the image's fingerprint for the registries, and the faces dlib finds in exactly those pixels. An image
made in memory is never written and read back to be scored, and dlib runs once per image and face
settings: the raw image's faces also say where enhancement restores faces (`plans`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amari.errors import ImageError
from amari.faces import descriptors as face_lib
from amari.faces.descriptors import Face
from amari.faces.embeddings import content_hash, encode_bytes
from amari.faces.settings import FaceSettings
from amari.provenance.fingerprint import Fingerprint
from amari.storage.images import DEFAULT_MAX_PIXELS, shrink_to


@dataclass
class Inspected:
    """One image's file and faces, as the writer receives them."""

    png: bytes | None  # None: the file already exists (a folder source's copy, a leftover)
    digest: str
    faces: list[Face] | None  # None: unreadable
    size: tuple[int, int]  # (width, height) as decoded
    error: str | None = None
    marked: np.ndarray | None = None  # the watermarked pixels, kept where they are enhanced next
    plans: list[np.ndarray] = field(default_factory=list)  # alignments of the faces enhancement restores
    params: dict = field(default_factory=dict)  # what made the image (its provenance), for the next step
    fingerprint: Fingerprint | None = None  # with `png`: computed here, recorded by the writer


def _plans(pixels: np.ndarray, found: list[Face], settings: FaceSettings, restore_score: float) -> list[np.ndarray]:
    """Alignments of the faces enhancement restores, in the pixels' own coordinates."""
    from amari.enhance import face_plans

    scale = max(pixels.shape[:2]) / max(shrink_to(pixels, settings.max_side).shape[:2]) if settings.max_side else 1.0
    return face_plans([(f.landmarks * scale, f.score) for f in found], restore_score)


def _shrunk(pixels: np.ndarray, settings: FaceSettings) -> np.ndarray:
    return shrink_to(pixels, settings.max_side) if settings.max_side else pixels


def inspect_generated(
    image, params: dict, settings: FaceSettings, restore_score: float | None = None, name: str | None = None, key=None
) -> Inspected:
    """A generated image: every mark (`amari.provenance.png.marked_png`; C2PA signed with `key`, titled
    `name`), its PNG, its fingerprint and its faces; with `restore_score`, also the alignments of the
    faces enhancement will restore and the pixels it will enhance.

    The faces are scored in the pixels written, as `amari score` reads the file: they are found before
    the watermark goes in (which leaves them and what the detector reads around them as they were, so
    the detector finds the same boxes in the written pixels) and described in the marked pixels. dlib
    finds faces once per image.
    """
    from amari.provenance.png import check_rgb, fingerprint_of, marked_png

    rgb = check_rgb(image)
    shrunk = _shrunk(rgb, settings)
    located = face_lib.locate(shrunk, settings)
    marked, png = marked_png(rgb, params, title=name, key=key, faces=located, face_scale=rgb.shape[0] / shrunk.shape[0])
    found = face_lib.describe(_shrunk(marked, settings), located, settings)
    inspected = Inspected(
        png,
        content_hash(png),
        found,
        (marked.shape[1], marked.shape[0]),
        params=params,
        fingerprint=fingerprint_of(marked, png, params),
    )
    if restore_score is not None:
        inspected.plans = _plans(marked, found, settings, restore_score)
        inspected.marked = marked
    return inspected


def inspect_enhanced(
    canvas: np.ndarray,
    restored: list[np.ndarray],
    plans: list[np.ndarray],
    input_size: tuple[int, int],
    weight: float,
    params: dict,
    settings: FaceSettings,
    name: str | None = None,
    key=None,
) -> Inspected:
    """An enhanced image: restored faces pasted on the upscaled canvas, then every mark, PNG, faces."""
    from amari.enhance import paste_faces

    canvas = paste_faces(np.array(canvas), restored, plans, input_size, weight)
    return inspect_generated(canvas, params, settings, name=name, key=key)


def unreadable(exc: ImageError) -> Inspected:
    return Inspected(None, "", None, (0, 0), error=exc.reason)


def inspect_file(
    path: str | Path,
    data: bytes,
    settings: FaceSettings,
    restore_score: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Inspected:
    """A file's bytes (a folder source's copy, a user's drop, a raw image a killed run left; the miner
    reads them, so a worker on another machine needs no shared disk): its faces, or why it is unreadable;
    with `restore_score`, also its pixels and enhancement plans."""
    digest = content_hash(data)
    try:
        found, size = encode_bytes(data, settings, path, max_pixels)
    except ImageError as exc:
        return Inspected(None, digest, None, (0, 0), error=exc.reason)
    inspected = Inspected(None, digest, found, size)
    if restore_score is not None:
        from amari.provenance.png import AMARI_KEY
        from amari.storage.images import open_image, to_rgb

        image = open_image(data, path=path, max_pixels=max_pixels)
        inspected.marked = to_rgb(image)
        inspected.plans = _plans(inspected.marked, found, settings, restore_score)
        amari = json.loads(image.info.get(AMARI_KEY) or "{}")
        inspected.params = {k: v for k, v in amari.items() if k not in ("synthetic", "generator", "watermark")}
    return inspected
