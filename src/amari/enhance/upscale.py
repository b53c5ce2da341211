"""Super-resolution on tiles, and the resize from the model's scale to the one asked for."""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

# Input pixels of context added around each tile and cut off again; enough that the seams of a
# convolutional upscaler cannot be seen (Real-ESRGAN's own tool uses 10).
TILE_OVERLAP = 16


def tile_spans(length: int, tile: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of nearly equal size, at most `tile` long, covering 0..length."""
    if tile <= 0 or length <= tile:
        return [(0, length)]
    count = math.ceil(length / tile)
    edges = [round(i * length / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 H×W×3 -> float (1, 3, H, W) in [0, 1] on the CPU."""
    # astype copies, so read-only inputs (np.asarray of a PIL image) are fine and nothing is copied twice.
    return torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None].div_(255)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] on any device -> uint8 H×W×3."""
    scaled = tensor[0].float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return scaled.permute(1, 2, 0).cpu().numpy()


@torch.inference_mode()
def upscale(model, image: np.ndarray, tile: int = 0, overlap: int = TILE_OVERLAP) -> np.ndarray:
    """Run a spandrel SR model over an RGB uint8 image, tile by tile; returns it at the model's scale.

    Each tile is cut with `overlap` pixels of context on every side that has image there, and only
    its own area of the result is kept, so every output pixel comes from exactly one tile and peak
    memory depends on the tile size, not the image size.
    """
    height, width = image.shape[:2]
    factor = model.scale
    source = to_tensor(image)
    result = np.empty((height * factor, width * factor, 3), dtype=np.uint8)
    for top, bottom in tile_spans(height, tile):
        for left, right in tile_spans(width, tile):
            y0, y1 = max(0, top - overlap), min(height, bottom + overlap)
            x0, x1 = max(0, left - overlap), min(width, right + overlap)
            patch = source[..., y0:y1, x0:x1].to(model.device, model.dtype)
            output = model(patch)
            keep = output[
                ..., (top - y0) * factor : (bottom - y0) * factor, (left - x0) * factor : (right - x0) * factor
            ]
            result[top * factor : bottom * factor, left * factor : right * factor] = to_uint8(keep)
    return result


@torch.inference_mode()
def upscale_batch(model, images: list[np.ndarray], tile: int = 0) -> list[np.ndarray]:
    """Many images through the SR model: batched passes on a GPU when they share a size and fit one tile,
    each pass as many images as the GPU's free memory holds (a small card takes a batch in several);
    one image at a time otherwise, and always on the CPU (where an image's result must not depend on
    which others share its pass)."""
    from amari.execution.memory import free_bytes, upscale_batch_size

    same = len({image.shape for image in images}) == 1
    fits = tile <= 0 or all(max(image.shape[:2]) <= tile for image in images)
    if model.device.type == "cpu" or len(images) < 2 or not (same and fits):
        return [upscale(model, image, tile=tile) for image in images]
    height, width = images[0].shape[:2]
    factor = model.scale / 4  # the allowance is a ×4 network's
    per_pass = upscale_batch_size(free_bytes(str(model.device)), width * factor, height * factor, len(images))
    upscaled = []
    for start in range(0, len(images), per_pass):
        chunk = images[start : start + per_pass]
        output = model(torch.cat([to_tensor(image) for image in chunk]).to(model.device, model.dtype))
        upscaled += [to_uint8(output[i : i + 1]) for i in range(len(chunk))]
    return upscaled


def output_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Lanczos, as Real-ESRGAN resizes to its `outscale`; area averaging when shrinking more than 2×,
    where Lanczos's fixed-size kernel would alias."""
    source_height, source_width = image.shape[:2]
    if (source_height, source_width) == (height, width):
        return image.copy()
    shrinking_a_lot = height * 2 < source_height or width * 2 < source_width
    method = cv2.INTER_AREA if shrinking_a_lot else cv2.INTER_LANCZOS4
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=method)
