"""GFPGAN on aligned face crops, one at a time or a whole batch's faces at once (torch)."""

from __future__ import annotations

import numpy as np
import torch

from amari.enhance.paste import (  # noqa: F401 - the face geometry, named here as before
    CROP_FILL,
    DLIB_TEMPLATE_512,
    FACE_SIZE,
    FFHQ_TEMPLATE_512,
    alignment_matrix,
    crop_face,
    crop_to_output,
    dlib_anchor_points,
    face_plans,
    feathered_mask,
    paste_face,
    paste_faces,
)
from amari.enhance.upscale import to_tensor, to_uint8


@torch.inference_mode()
def restore_crop(model, crop: np.ndarray) -> np.ndarray:
    """Run GFPGAN on one aligned uint8 crop: input scaled to [-1, 1], output back to uint8.

    The stored noise maps are used instead of fresh random noise, so the same face always restores
    the same way.
    """
    tensor = to_tensor(crop).to(model.device, model.dtype).mul_(2).sub_(1)
    output = model.model(tensor, return_rgb=False, randomize_noise=False)[0]
    return to_uint8(output.add(1).div(2))


@torch.inference_mode()
def restore_crops(model, crops: list) -> list:
    """GFPGAN over many aligned crops: one forward pass per `batch` crops on a GPU, one per crop on the
    CPU (where a crop's result must not depend on which other crops share its pass)."""
    if not crops:
        return []
    if model.device.type == "cpu":
        return [restore_crop(model, crop) for crop in crops]
    restored = []
    for start in range(0, len(crops), RESTORE_BATCH):
        chunk = crops[start : start + RESTORE_BATCH]
        tensor = torch.cat([to_tensor(c) for c in chunk]).to(model.device, model.dtype).mul_(2).sub_(1)
        output = model.model(tensor, return_rgb=False, randomize_noise=False)[0].add(1).div(2)
        restored += [to_uint8(output[i : i + 1]) for i in range(len(chunk))]
    return restored


RESTORE_BATCH = 16  # 512×512 crops per GFPGAN pass on a GPU
