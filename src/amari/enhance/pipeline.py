"""The enhance stage: upscale an image and restore its faces, as the study's miner did per image."""

from __future__ import annotations

import functools

import numpy as np

from amari.enhance.config import EnhanceConfig
from amari.enhance.loading import load_image_model, pick_device
from amari.enhance.paste import crop_face, face_plans, paste_faces
from amari.enhance.restore import restore_crops
from amari.enhance.upscale import output_size, resize_to, upscale_batch
from amari.errors import ModelError, UsageError
from amari.faces import descriptors as faces_lib


class Enhancer:
    """Upscales with Real-ESRGAN and restores faces with GFPGAN; models load on first use, once.

    Faces are found on the input with amari's face detector (dlib HOG upsampled once, the same
    detector the sim-score uses), aligned from dlib's 5 landmarks, restored at 512×512 and pasted
    onto the upscaled background with a feathered edge. Faces whose HOG detection score is below
    `min_face_score` (badges, patterns) are left alone.
    """

    def __init__(self, config: EnhanceConfig = EnhanceConfig()):
        self.config = config
        self._device = None
        self._upscaler = None
        self._restorer = None

    # 1. Lazily loaded pieces ----------------------------------------------------------------------

    @property
    def device(self):
        if self._device is None:
            self._device = pick_device(self.config.device)
        return self._device

    @property
    def upscaler(self):
        """The spandrel super-resolution model, or None when the config has no upscaler."""
        if self._upscaler is None and self.config.upscaler is not None:
            self._upscaler = load_image_model(self.config.upscaler, "SR", self.device, self.config.half)
        return self._upscaler

    @property
    def restorer(self):
        """The spandrel GFPGAN model, or None when the config has no face restorer."""
        if self._restorer is None and self.config.face_restorer is not None:
            model = load_image_model(self.config.face_restorer, "FaceSR", self.device, self.config.half)
            if model.architecture.id != "GFPGAN":
                raise ModelError(
                    f"{self.config.face_restorer}: face restoration supports GFPGAN "
                    f"models; this file is {model.architecture.name}"
                )
            self._restorer = model
        return self._restorer

    # 2. The stage ---------------------------------------------------------------------------------

    def enhance(self, image: np.ndarray, faces=None) -> np.ndarray:
        """RGB uint8 H×W×3 in; RGB uint8 out, `config.scale` times the size, faces restored.

        faces: the image's dlib faces when already found (the miner's raw pass); else they are found here.
        """
        image = _check_image(image)
        if faces is None and self.restores:
            boxes = faces_lib.detect_scored(image, 1)
            points = faces_lib.landmarks(image, [box for box, _ in boxes], points=5)
            faces = [(p, score) for p, (_box, score) in zip(points, boxes)]
        plans = face_plans(faces or [], self.config.min_face_score) if self.restores else []
        ((canvas, restored),) = self.enhance_batch([image], [plans])
        return paste_faces(canvas, restored, plans, image.shape[:2], self.config.restore_weight)

    @property
    def restores(self) -> bool:
        return self.config.restores

    def enhance_batch(self, images: list[np.ndarray], plans: list[list[np.ndarray]]):
        """The model work of enhancing a batch: each image upscaled to its final size, and the restored
        crops of the faces its `plans` align (pasting them back is `amari.enhance.paste_faces`, CPU work).

        One pass over the batch on a GPU, face crops of every image restored together.
        """
        canvases = self.backgrounds(images)
        crops = [crop_face(image, matrix) for image, matrices in zip(images, plans) for matrix in matrices]
        restored = restore_crops(self.restorer, crops) if crops else []
        parts, start = [], 0
        for canvas, matrices in zip(canvases, plans):
            parts.append((canvas, restored[start : start + len(matrices)]))
            start += len(matrices)
        return parts

    def backgrounds(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """The whole images at their final size: upscaled by the model, then resized to `scale`."""
        sizes = [output_size(*image.shape[:2], self.config.scale) for image in images]
        if self.upscaler is None:
            return [resize_to(image, h, w) for image, (h, w) in zip(images, sizes)]
        upscaled = upscale_batch(self.upscaler, images, tile=self.config.tile)
        return [resize_to(image, h, w) for image, (h, w) in zip(upscaled, sizes)]


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise UsageError(f"expected an RGB uint8 H×W×3 image, got {dtype} {shape}")
    if min(image.shape[:2]) < 2:
        raise UsageError(f"image of {image.shape[1]}×{image.shape[0]} pixels is too small to enhance")
    return np.ascontiguousarray(image)


@functools.lru_cache(maxsize=4)
def enhancer_for(config: EnhanceConfig) -> Enhancer:
    """The process's Enhancer for `config`: its models load once per process (a model actor's too)."""
    return Enhancer(config)


def load_enhancer(config: EnhanceConfig) -> None:
    """Load the models now, so a missing or wrong model file fails before any work."""
    enhancer = enhancer_for(config)
    _ = enhancer.upscaler, enhancer.restorer


def enhance_batch(config: EnhanceConfig, images: list[np.ndarray], plans: list[list[np.ndarray]]):
    """`Enhancer.enhance_batch` with the process's models: a model step that can run anywhere."""
    return enhancer_for(config).enhance_batch(images, plans)
