"""Face restoration's image geometry on dlib's landmarks: align a crop, paste the restored face back with a
soft edge. numpy and OpenCV only, so the miner's CPU workers run it without loading torch; the GFPGAN
network itself runs in `amari.enhance.restore`.

GFPGAN restores 512×512 crops aligned to the FFHQ five-point template (eye centres, nose tip, mouth
corners). dlib's 5-point model gives each eye's two corners and the base of the nose instead, so the
crop is fitted on three points: the two eye centres (mean of each eye's corners) onto the template's
eyes, and the nose base onto a point of the template's vertical midline, below the nose tip. That
point's height is where dlib's nose base lands, on average, when faces are aligned to all five
template points with dlib's 68-point landmarks (eye centres, nose tip, mouth corners): 341 px, about
half way from the template's nose tip (314) to its mouth line (371). Mouth corners are not guessed.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from amari.faces.geometry import similarity_transform

FACE_SIZE = 512

# The five FFHQ points of a 512×512 aligned face used by GFPGAN: image-left eye, image-right eye,
# nose tip, image-left and image-right mouth corners.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ]
)

# dlib's three usable points in the same frame: the template's eyes, and the nose base (see above).
DLIB_TEMPLATE_512 = np.array([FFHQ_TEMPLATE_512[0], FFHQ_TEMPLATE_512[1], [256.0, 341.3]])

# Grey that fills the crop where it reaches past the image, as GFPGAN's own face helper does.
CROP_FILL = (135, 133, 132)


def dlib_anchor_points(landmarks5: np.ndarray) -> np.ndarray:
    """dlib 5-point landmarks -> (image-left eye centre, image-right eye centre, nose base)."""
    points = np.asarray(landmarks5, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"expected dlib's 5 landmark points, got an array of shape {points.shape}")
    # dlib orders them: 0-1 the image-right eye's corners, 2-3 the image-left eye's, 4 the nose base.
    return np.array([points[2:4].mean(axis=0), points[0:2].mean(axis=0), points[4]])


def alignment_matrix(landmarks5: np.ndarray) -> np.ndarray:
    """2×3 affine taking image coordinates to the 512×512 aligned face crop."""
    return similarity_transform(dlib_anchor_points(landmarks5), DLIB_TEMPLATE_512)


def crop_face(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(
        image,
        matrix,
        (FACE_SIZE, FACE_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=CROP_FILL,
    )


def crop_to_output(matrix: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """2×3 affine from crop coordinates to the output image, which is the input scaled by
    (scale_x, scale_y) with pixel centres kept aligned."""
    to_input = cv2.invertAffineTransform(matrix)
    scaling = np.array([[scale_x, 0.0, (scale_x - 1) / 2], [0.0, scale_y, (scale_y - 1) / 2], [0, 0, 1]])
    return (scaling @ np.vstack([to_input, [0, 0, 1]]))[:2]


def feathered_mask(coverage: np.ndarray, scale: float) -> np.ndarray:
    """Blend weights from the warped crop's coverage: shrink away the resampled rim, then shrink by a
    band proportional to the face's size and blur, so the restored face fades into the background."""
    rim = max(1, round(2 * scale))
    core = cv2.erode(coverage, np.ones((rim, rim), np.uint8))
    band = max(1, int(math.sqrt(float(core.sum()))) // 20)
    inner = cv2.erode(core, np.ones((2 * band, 2 * band), np.uint8))
    return cv2.GaussianBlur(inner, (2 * band + 1, 2 * band + 1), 0)


def paste_face(
    canvas: np.ndarray, face: np.ndarray, matrix: np.ndarray, input_size: tuple[int, int], weight: float = 1.0
) -> None:
    """Blend a restored 512×512 crop back into `canvas`, in place.

    `canvas` is the input image (of `input_size` = (height, width)) resized to its final size;
    `matrix` is the input -> crop alignment; `weight` scales the blend (0 keeps the canvas).
    """
    # 1. Where the crop lands in the output; only that box is touched.
    input_height, input_width = input_size
    scale_x = canvas.shape[1] / input_width
    scale_y = canvas.shape[0] / input_height
    transform = crop_to_output(matrix, scale_x, scale_y)
    corners = np.array(
        [[-0.5, -0.5], [FACE_SIZE - 0.5, -0.5], [-0.5, FACE_SIZE - 0.5], [FACE_SIZE - 0.5, FACE_SIZE - 0.5]]
    )
    mapped = corners @ transform[:, :2].T + transform[:, 2]
    left = max(0, math.floor(mapped[:, 0].min()) - 1)
    top = max(0, math.floor(mapped[:, 1].min()) - 1)
    right = min(canvas.shape[1], math.ceil(mapped[:, 0].max()) + 2)
    bottom = min(canvas.shape[0], math.ceil(mapped[:, 1].max()) + 2)
    if right <= left or bottom <= top:
        return
    # 2. Warp the face and its coverage into that box, and feather the coverage into blend weights.
    shifted = transform.copy()
    shifted[:, 2] -= (left, top)
    size = (right - left, bottom - top)
    warped = cv2.warpAffine(face, shifted, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    coverage = cv2.warpAffine(
        np.ones((FACE_SIZE, FACE_SIZE), np.float32),
        shifted,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
    alpha = feathered_mask(coverage, (scale_x + scale_y) / 2)[..., None] * np.float32(weight)
    # 3. Blend; where alpha is 0 the canvas keeps its exact values.
    region = canvas[top:bottom, left:right].astype(np.float32)
    blended = region + alpha * (warped.astype(np.float32) - region)
    canvas[top:bottom, left:right] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def face_plans(faces, min_score: float) -> list[np.ndarray]:
    """The alignment of each face worth restoring: (landmarks5, score) pairs or dlib `Face`s whose
    detection score is at least `min_score` (HOG also "finds" badges and patterns, scoring near 0.1)."""
    plans = []
    for face in faces:
        points, score = (face.landmarks, face.score) if hasattr(face, "landmarks") else face
        if score is None or score >= min_score:
            plans.append(alignment_matrix(points))
    return plans


def paste_faces(
    canvas: np.ndarray,
    restored: list[np.ndarray],
    plans: list[np.ndarray],
    input_size: tuple[int, int],
    weight: float = 1.0,
) -> np.ndarray:
    """Paste every restored face onto `canvas` (in place, and returned)."""
    for face, matrix in zip(restored, plans):
        paste_face(canvas, face, matrix, input_size, weight)
    return canvas
