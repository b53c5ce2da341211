"""The enhance stage: upscale an image and restore its faces, as the study's miner did per image."""

from __future__ import annotations

import numpy as np

from amari import faces
from amari.enhance import restore
from amari.enhance.config import EnhanceConfig
from amari.enhance.loading import load_image_model, pick_device
from amari.enhance.upscale import output_size, resize_to, upscale
from amari.errors import ModelError, UsageError


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
            model = load_image_model(self.config.face_restorer, "FaceSR", self.device, half=False)
            if model.architecture.id != "GFPGAN":
                raise ModelError(
                    f"{self.config.face_restorer}: face restoration supports GFPGAN "
                    f"models; this file is {model.architecture.name}"
                )
            self._restorer = model
        return self._restorer

    # 2. The stage ---------------------------------------------------------------------------------

    def enhance(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 H×W×3 in; RGB uint8 out, `config.scale` times the size, faces restored."""
        image = _check_image(image)
        canvas = self.background(image)
        if self.config.face_restorer is not None and self.config.restore_weight > 0:
            self.restore_faces(image, canvas)
        return canvas

    def background(self, image: np.ndarray) -> np.ndarray:
        """The whole image at its final size: upscaled by the model, then resized to `scale`."""
        height, width = output_size(*image.shape[:2], self.config.scale)
        if self.upscaler is None:
            return resize_to(image, height, width)
        upscaled = upscale(self.upscaler, image, tile=self.config.tile)
        return resize_to(upscaled, height, width)

    def restore_faces(self, image: np.ndarray, canvas: np.ndarray) -> int:
        """Restore every face found in `image` (HOG score >= `min_face_score`) and paste it onto `canvas`, in
        place (`canvas` is `image` resized); returns how many faces were restored."""
        model = self.restorer
        boxes = [box for box, score in faces.detect_scored(image, 1) if score >= self.config.min_face_score]
        for points in faces.landmarks(image, boxes, points=5):
            matrix = restore.alignment_matrix(points)
            restored = restore.restore_crop(model, restore.crop_face(image, matrix))
            restore.paste_face(canvas, restored, matrix, image.shape[:2], self.config.restore_weight)
        return len(boxes)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise UsageError(f"expected an RGB uint8 H×W×3 image, got {dtype} {shape}")
    if min(image.shape[:2]) < 2:
        raise UsageError(f"image of {image.shape[1]}×{image.shape[0]} pixels is too small to enhance")
    return np.ascontiguousarray(image)
