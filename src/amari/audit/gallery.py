"""The gallery: real people's faces, as descriptors and names relative to the gallery folder.

A gallery folder is embedded with the same face pipeline as the miner (every face of every photo, not
only the largest: each is a real person), through the descriptor cache, so a second audit of the same
photos runs dlib on none of them. The photos themselves are never copied: a gallery keeps descriptors,
the photo's name relative to the gallery folder, which face of the photo it is, its box and the photo's
size (for the audit page, which shows the face by linking to the photo where it lies).

An index file (`amari audit --build-index DIR --out INDEX`) is a NumPy `.npz` of those arrays (read
without pickle) and, for a gallery above the exact-search limit, the serialized approximate index, so a
large gallery is embedded and indexed once.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amari.audit.search import ExactSearch, FaissSearch, faiss_available
from amari.errors import ImageError, UsageError
from amari.faces.descriptors import DESCRIPTOR_SIZE
from amari.faces.embeddings import EmbeddingCache, FaceEncoder
from amari.faces.settings import FaceSettings
from amari.progress import progress_bar, warn
from amari.storage.files import atomic_path
from amari.storage.images import images_in

INDEX_FORMAT = "amari-gallery-1"
INDEX_SUFFIX = ".npz"


@dataclass
class Gallery:
    descriptors: np.ndarray  # (N, 128) float32: dlib computes in float32, so nothing is lost
    names: list[str]  # each face's photo, relative to the gallery folder (POSIX separators)
    face_numbers: np.ndarray  # which face of its photo (0: the first the detector reports)
    boxes: np.ndarray  # (N, 4) top, right, bottom, left
    sizes: np.ndarray  # (N, 2) the photo's width, height as decoded
    settings_key: str
    root: Path | None = None  # the gallery folder, where known (to link the page to its photos)
    photos: int = 0  # photos embedded, faces or not
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    search: object | None = None  # ExactSearch or FaissSearch

    def __len__(self) -> int:
        return len(self.names)

    def searcher(self, exact_limit: int, recall: float):
        """Exact search up to `exact_limit` faces; above it the approximate index (built once), unless
        reaching `recall` makes it look into so many cells that exact search is as fast."""
        if self.search is None:
            if len(self) > exact_limit and faiss_available():
                index = FaissSearch.build(self.descriptors, recall)
                if index.pays:
                    self.search = index
                else:
                    warn(
                        f"the index needs {index.index.nprobe} of its {index.index.nlist} cells for recall {recall}: "
                        "these faces have too little structure for it, so they are searched exactly"
                    )
            elif len(self) > exact_limit:
                warn(f"{len(self)} gallery faces are searched exactly: pip install 'amari[audit]' for an index")
            if self.search is None:
                self.search = ExactSearch(self.descriptors)
        return self.search


def embed_folder(folder: Path, settings: FaceSettings, cpus: int = 1, use_cache: bool = True) -> Gallery:
    """Every face of every photo under `folder`; unreadable photos are warned about and skipped."""
    folder = Path(folder)
    paths = images_in(folder, "gallery")
    cache = EmbeddingCache() if use_cache else None
    try:
        with progress_bar(len(paths), "embedding the gallery") as advance:
            found = FaceEncoder(settings, cache).faces_many(paths, cpus=cpus, on_progress=lambda _: advance())
    finally:
        if cache is not None:
            cache.close()
    rows, skipped = [], []
    for path, faces in found.items():
        name = path.relative_to(folder).as_posix()
        if isinstance(faces, ImageError):
            warn(f"cannot read gallery photo {name}: {faces.reason}. Skipped.")
            skipped.append((name, faces.reason))
            continue
        if not faces:
            skipped.append((name, "no face found"))
        size = _photo_size(path)
        rows += [(name, number, face, size) for number, face in enumerate(faces)]
    if not rows:
        raise UsageError(f"no face found in any photo of the gallery {folder}")
    return Gallery(
        np.array([face.descriptor for _, _, face, _ in rows], dtype=np.float32).reshape(-1, DESCRIPTOR_SIZE),
        [name for name, _, _, _ in rows],
        np.array([number for _, number, _, _ in rows], dtype=np.int32),
        np.array([face.box for _, _, face, _ in rows], dtype=np.int32).reshape(-1, 4),
        np.array([size for _, _, _, size in rows], dtype=np.int32).reshape(-1, 2),
        settings.key,
        root=folder,
        photos=len(paths),
        skipped=skipped,
    )


def _photo_size(path: Path) -> tuple[int, int]:
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).size


def save_index(gallery: Gallery, out: Path, exact_limit: int, recall: float) -> Path:
    """Write an index file (descriptors, names, boxes; the approximate index when the gallery is above
    `exact_limit` and faiss is installed); the gallery folder is recorded relative to the file."""
    out = Path(out)
    if out.suffix != INDEX_SUFFIX:
        raise UsageError(f"an index file's name ends in {INDEX_SUFFIX}: {out}")
    search = gallery.searcher(exact_limit, recall)
    meta = {
        "format": INDEX_FORMAT,
        "face_settings": gallery.settings_key,
        "faces": len(gallery),
        "photos": gallery.photos,
        "root": os.path.relpath(gallery.root.resolve(), out.parent.resolve()) if gallery.root else None,
        "search": search.kind,
        "nprobe": int(search.index.nprobe) if isinstance(search, FaissSearch) else None,
    }
    arrays = dict(
        meta=np.array(json.dumps(meta)),
        descriptors=gallery.descriptors,
        names=np.array(gallery.names, dtype=str),
        face_numbers=gallery.face_numbers,
        boxes=gallery.boxes,
        sizes=gallery.sizes,
    )
    if isinstance(search, FaissSearch):
        arrays["index"] = search.to_bytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as temporary, open(temporary, "xb") as handle:
        np.savez(handle, **arrays)
    return out


def load_index(path: Path, settings: FaceSettings) -> Gallery:
    """An index file, checked: its format, its arrays, and that its faces were found as these settings find them."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != INDEX_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}")
            arrays = {key: data[key] for key in ("descriptors", "names", "face_numbers", "boxes", "sizes")}
            index = data["index"] if "index" in data.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path} is not a gallery index amari wrote ({exc})") from None
    count = len(arrays["names"])
    if arrays["descriptors"].shape != (count, DESCRIPTOR_SIZE) or not np.isfinite(arrays["descriptors"]).all():
        raise UsageError(f"{path} is damaged: its descriptors do not match its {count} faces")
    if meta["face_settings"] != settings.key:
        raise UsageError(
            f"{path} was built with face settings {meta['face_settings']}, not {settings.key}: build it again "
            "with the settings of the audit"
        )
    root = (path.parent / meta["root"]).resolve() if meta.get("root") else None
    gallery = Gallery(
        arrays["descriptors"].astype(np.float32),
        [str(name) for name in arrays["names"]],
        arrays["face_numbers"],
        arrays["boxes"],
        arrays["sizes"],
        meta["face_settings"],
        root=root if root is not None and root.is_dir() else None,
        photos=int(meta.get("photos", 0)),
    )
    if index is not None:
        gallery.search = FaissSearch.from_bytes(index, gallery.descriptors, int(meta["nprobe"]))
    return gallery


def open_gallery(source: Path, settings: FaceSettings, cpus: int = 1, use_cache: bool = True) -> Gallery:
    """A gallery folder (embedded now) or an index file."""
    source = Path(source)
    if source.is_dir():
        return embed_folder(source, settings, cpus, use_cache)
    if source.is_file():
        return load_index(source, settings)
    raise UsageError(f"gallery not found: {source} (a folder of photos, or an index file)")
