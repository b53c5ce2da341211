"""The parts of an image the watermark leaves alone: every face dlib finds, and what dlib reads around it.

dlib's descriptor reacts to changes of a grey level or two: a pattern at 40 dB over a face moved the
descriptor by 0.13 on average, two and a half times what a JPEG 90 re-encode does, and even a tenth
of it moved some faces by 0.15 (the 5-point landmarks are whole pixels, and one that moves by a pixel
moves the descriptor by 0.03-0.05). So the mark is not weakened over faces but left out of them: a
zone around each face keeps its pixels exactly, and with them the face's detection box and chip. A
zone covers

- the detection box, grown by a fifth of its side upwards, a tenth sideways and a twentieth
  downwards: HOG reads the cells around its window, and the shape predictor reads pixels above the
  box, on the forehead (on 63 face photos the detector then found exactly the same boxes in every
  marked image; a landmark still moved by a pixel in one face of six, 0.07 at most);
- the rotated 150 px chip the descriptor is computed from (dlib's `get_face_chip_details` with
  padding 0.25), which a tilted face turns beyond the box, and the 3 pixels around it that an
  interpolation reads.

Where faces leave less than a fifth of the image (a face that fills the frame), the faces carry a
faint mark too (`amari.provenance.keyedtile.FACE_STRENGTH`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOX_MARGIN = (0.2, 0.1, 0.05)  # of the box's side: above, on either side, below
# For faces found with other settings than scoring's (`find_zones`): a box from another level of
# dlib's pyramid is up to a fifth larger or smaller, and elsewhere by a few pixels.
OTHER_DETECTION_MARGIN = (0.3, 0.15, 0.1)
_CHIP_SIZE, _CHIP_PADDING = 150, 0.25  # dlib's compute_face_descriptor
_READ_MARGIN = 3  # pixels an interpolation or a pyramid step reads beyond a rectangle
# Faces are looked for at this short side at most (detection time grows with the pixels; the mark is
# laid out at this size too, so a face smaller than the detector's 40 px here is smaller than its tiles).
DETECT_SIDE = 512


def zones_for(faces: Sequence, shape: tuple[int, int], scale: float = 1.0, margin=BOX_MARGIN) -> np.ndarray:
    """The pixels to leave alone (True) in an image of `shape` (height, width), for `faces` found in a
    copy of it `scale` times smaller: `amari.faces.descriptors.Face`s, or bare (top, right, bottom, left)
    boxes (then the box alone, grown, without the chip)."""
    from PIL import Image, ImageDraw

    height, width = shape
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for face in faces:
        box = getattr(face, "box", face)
        top, right, bottom, left = (float(v) for v in box)
        side = max(right - left, bottom - top)
        up, across, down = (side * m for m in margin)
        draw.rectangle(
            [(left - across) * scale, (top - up) * scale, (right + across) * scale, (bottom + down) * scale], 1
        )
        landmarks = getattr(face, "landmarks", None)
        if landmarks is not None and len(landmarks) in (5, 68):
            corners = _chip_corners(box, np.asarray(landmarks, dtype=np.float64)) * scale
            draw.polygon([tuple(point) for point in corners], fill=1)
    inside = np.asarray(canvas, dtype=bool)
    if scale > 1 and inside.any():  # each pixel of the smaller copy was resampled from scale x 3 of these
        from scipy import ndimage

        inside = ndimage.binary_dilation(inside, iterations=int(np.ceil(3 * (scale - 1))))
    return inside


def find_zones(rgb: np.ndarray) -> np.ndarray:
    """Zones for the faces dlib's HOG detector finds in a copy of DETECT_SIDE px a side (or the image
    itself, upsampled once when under 384 px), with 5-point landmarks.

    At 512 px this finds faces from about 80 px, a portrait's, in a quarter of the time that scoring's
    detection (upsampled once, faces from 40 px) takes; callers that score smaller faces (the miner,
    the evaluation grid) find them with their own settings and pass them in instead.
    """
    from PIL import Image

    from amari.faces import descriptors
    from amari.faces.settings import FaceSettings

    height, width = rgb.shape[:2]
    factor = DETECT_SIDE / min(height, width)
    small = rgb
    if factor < 1:
        size = (round(width * factor), round(height * factor))
        small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
    settings = FaceSettings(upsample=1 if min(small.shape[:2]) < 384 else 0)
    faces = descriptors.locate(np.ascontiguousarray(small), settings)
    return zones_for(faces, (height, width), height / small.shape[0], OTHER_DETECTION_MARGIN)


def weight(inside: np.ndarray, ramp: int = 4) -> np.ndarray:
    """1 where the mark goes; 0 inside the zones and the few pixels around them that interpolation
    reads, then rising over `ramp` pixels (a hard edge in the pattern would draw the zone's outline)."""
    if not inside.any():
        return np.ones(inside.shape, dtype=np.float32)
    import cv2

    distance = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_C, 3)  # chessboard pixels
    return np.clip((distance - _READ_MARGIN) / (ramp + 1), 0.0, 1.0)


def _chip_corners(box, landmarks: np.ndarray) -> np.ndarray:
    """The four corners (x, y) of the rotated rectangle dlib cuts a face's descriptor chip from."""
    import dlib

    top, right, bottom, left = (int(v) for v in box)
    shape = dlib.full_object_detection(
        dlib.rectangle(left, top, right, bottom), [dlib.point(int(x), int(y)) for x, y in landmarks]
    )
    details = dlib.get_face_chip_details(shape, _CHIP_SIZE, _CHIP_PADDING)
    rect = details.rect
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    half = np.array([rect.width() / 2, rect.height() / 2])
    turn = np.array([[np.cos(details.angle), -np.sin(details.angle)], [np.sin(details.angle), np.cos(details.angle)]])
    signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    return centre + (signs * half) @ turn.T
