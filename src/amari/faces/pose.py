"""Head pose (yaw, pitch, roll) from dlib's 68 face landmarks, as pure functions over arrays.

Six landmarks with a well-known generic 3-D position (nose tip, chin, the outer eye corners and the
mouth corners) are fitted to their image positions with a scaled orthographic camera: faces in the
study fill a 512-px frame from a normal distance, where perspective adds little and the fit needs no
camera intrinsics. The least-squares affine fit is snapped to the nearest rotation, which is then read
as angles.

Conventions (degrees, all 0 for a face looking straight at the camera):
- yaw > 0: the face turns towards the image's right edge (the subject's own left);
- pitch > 0: the face looks up;
- roll > 0: the head tilts counter-clockwise as seen in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# dlib / iBUG 68-point indices of the fitted points.
NOSE_TIP, CHIN = 30, 8
OUTER_EYE_IMAGE_LEFT, OUTER_EYE_IMAGE_RIGHT = 36, 45
MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT = 48, 54
FITTED_POINTS = (NOSE_TIP, CHIN, OUTER_EYE_IMAGE_LEFT, OUTER_EYE_IMAGE_RIGHT, MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT)

# A generic adult face in arbitrary units: x towards the image's right, y up, z towards the camera.
GENERIC_FACE_3D = np.array(
    [
        (0.0, 0.0, 0.0),  # nose tip
        (0.0, -330.0, -65.0),  # chin
        (-225.0, 170.0, -135.0),  # outer corner of the eye on the image's left
        (225.0, 170.0, -135.0),  # outer corner of the eye on the image's right
        (-150.0, -150.0, -125.0),  # mouth corner on the image's left
        (150.0, -150.0, -125.0),  # mouth corner on the image's right
    ]
)


@dataclass(frozen=True)
class HeadPose:
    yaw: float
    pitch: float
    roll: float


def _check_landmarks(landmarks68) -> np.ndarray:
    points = np.asarray(landmarks68, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected dlib's 68 landmarks as a (68, 2) array, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("landmarks contain NaN or infinite values")
    return points


def rotation_from_landmarks(landmarks68) -> np.ndarray:
    """The 3×3 rotation taking the generic face model into camera axes (x right, y up, z to camera)."""
    points = _check_landmarks(landmarks68)[list(FITTED_POINTS)]
    image_xy = points * np.array([1.0, -1.0])  # image y grows downwards; the model's grows upwards
    image_xy = image_xy - image_xy.mean(axis=0)
    model = GENERIC_FACE_3D - GENERIC_FACE_3D.mean(axis=0)
    # Scaled orthographic camera: image_xy ≈ model @ affine.T, solved by least squares.
    affine_t, *_ = np.linalg.lstsq(model, image_xy, rcond=None)
    affine = affine_t.T  # (2, 3): two scaled, nearly orthonormal rows
    u, singular, vt = np.linalg.svd(affine, full_matrices=False)
    if singular[-1] <= 1e-9 * max(singular[0], 1e-12):
        raise ValueError("landmarks are degenerate (all on one point or one line): no pose")
    rows = u @ vt  # the nearest pair of orthonormal rows
    return np.vstack([rows, np.cross(rows[0], rows[1])])


def angles_from_rotation(rotation: np.ndarray) -> HeadPose:
    """Read R = R_y(yaw) · R_x(−pitch) · R_z(roll) back as angles in degrees."""
    forward = rotation[:, 2]  # where the nose points, in camera axes
    yaw = math.atan2(forward[0], forward[2])
    pitch = math.asin(float(np.clip(forward[1], -1.0, 1.0)))
    cos_y, sin_y = math.cos(yaw), math.sin(yaw)
    cos_p, sin_p = math.cos(-pitch), math.sin(-pitch)
    undo_yaw = np.array([[cos_y, 0.0, -sin_y], [0.0, 1.0, 0.0], [sin_y, 0.0, cos_y]])
    undo_pitch = np.array([[1.0, 0.0, 0.0], [0.0, cos_p, sin_p], [0.0, -sin_p, cos_p]])
    in_plane = undo_pitch @ undo_yaw @ rotation
    roll = math.atan2(in_plane[1, 0], in_plane[0, 0])
    return HeadPose(yaw=math.degrees(yaw), pitch=math.degrees(pitch), roll=math.degrees(roll))


def rotation_from_angles(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """The rotation `angles_from_rotation` reads back as (yaw, pitch, roll) degrees."""
    y, p, r = (math.radians(a) for a in (yaw, -pitch, roll))
    turn = np.array([[math.cos(y), 0.0, math.sin(y)], [0.0, 1.0, 0.0], [-math.sin(y), 0.0, math.cos(y)]])
    nod = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(p), -math.sin(p)], [0.0, math.sin(p), math.cos(p)]])
    tilt = np.array([[math.cos(r), -math.sin(r), 0.0], [math.sin(r), math.cos(r), 0.0], [0.0, 0.0, 1.0]])
    return turn @ nod @ tilt


def estimate_pose(landmarks68) -> HeadPose:
    """Yaw, pitch and roll in degrees from a (68, 2) array of dlib landmarks in image pixels."""
    return angles_from_rotation(rotation_from_landmarks(landmarks68))


def estimate_yaw(landmarks68) -> float:
    """Yaw in degrees (> 0: the face turns towards the image's right edge) from 68 landmarks."""
    return estimate_pose(landmarks68).yaw
