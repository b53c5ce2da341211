"""Identity scorers: how much the face in an image looks like the faces of the sim-group.

A scorer is fitted once on the sim-group, then scores image files. Two are built in:

- `DlibScorer`, the study's own measure: the mean dlib descriptor distance of the image's largest face
  to every group face (0 = same face; the study's tolerance is 0.40). With `FaceSettings(detector="cnn")`
  it is also the second pass for images where the HOG detector found nothing (side profiles).
- `ArcFaceScorer`, a second opinion: an ArcFace ONNX model given by path; the face found by dlib is
  aligned to the model's 5-point template and the score is the mean cosine similarity of its embedding
  to the group's (1 = same direction; higher is more alike, unlike the dlib distance).

Anything with the `Scorer` shape can be added.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from amari.errors import ImageError, ModelError, UsageError
from amari.faces import descriptors as face_lib
from amari.faces.descriptors import Face, FaceSettings
from amari.faces.embeddings import EmbeddingCache, FaceEncoder
from amari.faces.geometry import similarity_transform
from amari.faces.group import FaceGroup
from amari.storage.images import load_rgb


@dataclass(frozen=True)
class FaceScore:
    """What a scorer found in one image."""

    faces: int
    score: float | None = None  # None: no face to score
    yaw: float | None = None  # degrees, of the scored face, when the scorer can tell


@runtime_checkable
class Scorer(Protocol):
    name: str
    higher_is_better: bool

    def fit(self, group: Sequence[Path]) -> int:
        """Learn the group's faces; returns how many images gave a face."""

    def score(self, path: Path) -> FaceScore:
        """Score one image file against the fitted group (raises `ImageError` for a bad file)."""


def _yaw(image: np.ndarray, face: Face) -> float | None:
    """Head yaw from 68 landmarks of the face's box (the 5-point model cannot tell a turn)."""
    from amari.faces.pose import estimate_yaw

    points = face_lib.landmarks(image, [face.box], points=68)[0]
    try:
        return float(estimate_yaw(points))
    except ValueError:
        return None


class DlibScorer:
    """The study's sim-score: mean dlib distance of the largest face to every group face."""

    higher_is_better = False

    def __init__(
        self, settings: FaceSettings = FaceSettings(), cache: EmbeddingCache | None = None, with_yaw: bool = True
    ):
        self.settings = settings
        self.encoder = FaceEncoder(settings, cache)
        self.with_yaw = with_yaw
        self.name = "dlib" if settings.detector == "hog" else f"dlib-{settings.detector}"
        self.group: FaceGroup | None = None

    def fit(self, group: Sequence[Path]) -> int:
        # The group is always encoded as the study encoded it (HOG, face_recognition's defaults), also
        # for the CNN second pass: only the scored images are looked at again.
        self.group = FaceGroup.load(group, FaceEncoder(FaceSettings(), self.encoder.cache))
        if not self.group:
            raise UsageError("no face found in any sim-group image: nothing to score against")
        return len(self.group)

    def score(self, path: Path) -> FaceScore:
        if self.group is None:
            raise UsageError("score before fit: the scorer has no group")
        found = self.group.score_file(path, self.encoder)
        if found.face is None:
            return FaceScore(faces=0)
        yaw = _yaw(load_rgb(path), found.face) if self.with_yaw else None
        return FaceScore(faces=found.faces, score=found.score, yaw=yaw)


# -- ArcFace ----------------------------------------------------------------------------------------

# Where ArcFace models expect the eye centres, nose tip and mouth corners in a 112×112 crop
# (image-left first), the alignment every public ArcFace model was trained with.
ARCFACE_TEMPLATE_112 = np.array(
    [(38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041)]
)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners (image-left first) from dlib's 68 landmarks."""
    points = np.asarray(landmarks68, dtype=np.float64)
    return np.array([points[36:42].mean(axis=0), points[42:48].mean(axis=0), points[30], points[48], points[54]])


def align_face(image: np.ndarray, points5: np.ndarray, side: int) -> np.ndarray:
    """The face warped onto the ArcFace template, as a side × side RGB uint8 array."""
    from PIL import Image

    matrix = similarity_transform(points5, ARCFACE_TEMPLATE_112 * (side / 112.0))
    inverse = np.linalg.inv(np.vstack([matrix, (0.0, 0.0, 1.0)]))[:2]  # PIL maps output -> input
    warped = Image.fromarray(image).transform(
        (side, side), Image.Transform.AFFINE, data=tuple(inverse.ravel()), resample=Image.Resampling.BILINEAR
    )
    return np.asarray(warped)


@functools.lru_cache(maxsize=4)
def _session(path: str, mtime_ns: int):
    try:
        import onnxruntime
    except ImportError:
        raise ModelError("the ArcFace scorer needs onnxruntime: pip install 'amari[arcface]'") from None
    try:
        return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a bad file
        raise ModelError(f"{path} is not an ONNX model onnxruntime can load: {str(exc).splitlines()[0]}") from None


class ArcFaceScorer:
    """Mean cosine similarity of ArcFace embeddings to the group (an ONNX model given by path)."""

    name = "arcface"
    higher_is_better = True

    def __init__(
        self, model: str | os.PathLike, detector: FaceSettings = FaceSettings(), cache: EmbeddingCache | None = None
    ):
        model = Path(model)
        if not model.is_file():
            raise UsageError(f"ArcFace model not found: {model}")
        self.model = model
        self.encoder = FaceEncoder(detector, cache)
        self.group: np.ndarray | None = None
        self._layout: tuple[str, str, int, bool] | None = None  # input name, output name, side, channels-last

    def _io(self):
        session = _session(str(self.model.resolve()), self.model.stat().st_mtime_ns)
        if self._layout is None:
            inputs, outputs = session.get_inputs(), session.get_outputs()
            shape = list(inputs[0].shape)
            if len(inputs) != 1 or len(shape) != 4:
                raise ModelError(
                    f"{self.model}: expected one image input of rank 4, got {[(i.name, i.shape) for i in inputs]}"
                )
            channels_last = shape[3] == 3 and shape[1] != 3
            side = shape[1] if channels_last else shape[2]
            side = side if isinstance(side, int) and side > 0 else 112
            self._layout = (inputs[0].name, outputs[0].name, side, channels_last)
        return session, self._layout

    def embed_face(self, image: np.ndarray, face: Face) -> np.ndarray:
        session, (input_name, output_name, side, channels_last) = self._io()
        points = face_lib.landmarks(image, [face.box], points=68)[0]
        crop = align_face(image, five_points(points), side).astype(np.float32)
        batch = ((crop - 127.5) / 127.5)[None]
        if not channels_last:
            batch = batch.transpose(0, 3, 1, 2)
        output = np.asarray(session.run([output_name], {input_name: np.ascontiguousarray(batch)})[0])
        vector = output.reshape(-1).astype(np.float64)
        if vector.size < 2:
            raise ModelError(f"{self.model}: output {output.shape} is not an embedding")
        norm = np.linalg.norm(vector)
        return vector / norm if norm > 0 else vector

    def embed(self, path: Path) -> tuple[int, np.ndarray | None]:
        """(faces found, normalised embedding of the largest face or None)."""
        found = self.encoder.faces(path)
        face = face_lib.largest(found)
        if face is None:
            return 0, None
        return len(found), self.embed_face(load_rgb(path), face)

    def fit(self, group: Sequence[Path]) -> int:
        vectors = []
        for path in group:
            try:
                _, vector = self.embed(Path(path))
            except ImageError:
                continue
            if vector is not None:
                vectors.append(vector)
        if not vectors:
            raise UsageError("no face found in any sim-group image: nothing to score against")
        self.group = np.vstack(vectors)
        return len(vectors)

    def score(self, path: Path) -> FaceScore:
        if self.group is None:
            raise UsageError("score before fit: the scorer has no group")
        faces, vector = self.embed(Path(path))
        if vector is None:
            return FaceScore(faces=0)
        if vector.shape[0] != self.group.shape[1]:
            raise ModelError(f"{self.model}: embedding size changed ({vector.shape[0]} vs {self.group.shape[1]})")
        return FaceScore(faces=faces, score=float((self.group @ vector).mean()))
