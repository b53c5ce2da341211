"""Head pose from 68 landmarks: exact on synthetic projections, consistent on real photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from amari.faces import descriptors as faces
from amari.faces.pose import FITTED_POINTS, GENERIC_FACE_3D, HeadPose, estimate_pose, estimate_yaw, rotation_from_angles
from amari.storage.images import load_rgb
from amari.study.demo import SAMPLE_FACES

T1_BOXES = SAMPLE_FACES  # dlib's face boxes (top, right, bottom, left) in t1.jpg, the sample photo


def projected_landmarks(yaw, pitch, roll, scale=0.4, offset=(240.0, 260.0), noise=0.0, seed=0):
    """68 image points whose fitted six come from the generic model turned by the given angles."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(100, 400, size=(68, 2))  # the other 62 points must not matter
    camera = GENERIC_FACE_3D @ rotation_from_angles(yaw, pitch, roll).T
    xy = camera[:, :2] * scale * np.array([1.0, -1.0]) + np.array(offset)
    points[list(FITTED_POINTS)] = xy + rng.normal(0, noise, size=xy.shape)
    return points


@pytest.mark.parametrize("angles", [(0, 0, 0), (35, 0, 0), (-50, 12, -8), (20, -25, 30), (-10, 5, 60)])
def test_synthetic_pose_is_recovered(angles):
    pose = estimate_pose(projected_landmarks(*angles))
    assert (pose.yaw, pose.pitch, pose.roll) == pytest.approx(angles, abs=1e-6)


def test_small_landmark_noise_moves_the_angles_little():
    pose = estimate_pose(projected_landmarks(30, -10, 5, scale=0.5, noise=1.0, seed=3))
    assert pose.yaw == pytest.approx(30, abs=6)
    assert pose.pitch == pytest.approx(-10, abs=6)
    assert pose.roll == pytest.approx(5, abs=4)


def test_yaw_sign_follows_the_turn_and_mirroring_flips_it():
    right = projected_landmarks(40, 0, 0)
    mirrored = right.copy()
    mirrored[:, 0] = 500 - mirrored[:, 0]
    # Mirroring swaps the left/right landmark indices of dlib's scheme.
    mirrored[[36, 45, 48, 54]] = mirrored[[45, 36, 54, 48]]
    assert estimate_yaw(right) == pytest.approx(40, abs=1e-6)
    assert estimate_yaw(mirrored) == pytest.approx(-40, abs=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((5, 2)), np.zeros((68, 3)), np.full((68, 2), np.nan)])
def test_wrong_input_is_a_value_error(bad):
    with pytest.raises(ValueError):
        estimate_pose(bad)


def test_collapsed_landmarks_are_a_value_error():
    with pytest.raises(ValueError, match="degenerate"):
        estimate_pose(np.full((68, 2), 100.0))


# -- real photos ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t1(data_dir):
    return load_rgb(data_dir / "t1.jpg")


def crop_landmarks(image: np.ndarray) -> np.ndarray:
    boxes = faces.detect(image)
    assert boxes, "the crop was made around a face"
    return faces.landmarks(image, [max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))], 68)[0]


def face_crop(image, box, half=150):
    top, right, bottom, left = box
    cx, cy = (left + right) // 2, (top + bottom) // 2
    return np.ascontiguousarray(image[max(0, cy - half) : cy + half, max(0, cx - half) : cx + half])


@pytest.mark.parametrize("index", range(len(T1_BOXES)))
def test_mirrored_photo_has_opposite_yaw(t1, index):
    crop = face_crop(t1, T1_BOXES[index])
    yaw = estimate_yaw(crop_landmarks(crop))
    mirrored = estimate_yaw(crop_landmarks(np.ascontiguousarray(crop[:, ::-1])))
    assert abs(yaw) < 75
    assert mirrored == pytest.approx(-yaw, abs=10)


def test_faces_turned_away_and_towards_camera(t1):
    # Face 4 (top right of the photo) looks towards the image's left; face 1 (far left) faces the camera.
    turned = estimate_pose(crop_landmarks(face_crop(t1, T1_BOXES[4])))
    frontal = estimate_pose(crop_landmarks(face_crop(t1, T1_BOXES[1])))
    assert turned.yaw < -25
    assert abs(frontal.yaw) < 15
    assert abs(turned.yaw) > abs(frontal.yaw) + 20


def test_rotating_the_photo_changes_roll_by_the_angle(data_dir):
    astronaut = load_rgb(data_dir / "astronaut.png")
    face = np.ascontiguousarray(astronaut[0:300, 70:370])
    upright = estimate_pose(crop_landmarks(face))
    rotated_image = np.asarray(Image.fromarray(face).rotate(20, resample=Image.Resampling.BICUBIC))
    rotated = estimate_pose(crop_landmarks(np.ascontiguousarray(rotated_image)))
    assert isinstance(upright, HeadPose)
    assert rotated.roll - upright.roll == pytest.approx(20, abs=5)
    assert rotated.yaw == pytest.approx(upright.yaw, abs=10)
