"""Enhance: Real-ESRGAN and GFPGAN through spandrel, on random-weight models built locally."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from amari.enhance import EnhanceConfig, Enhancer, restore
from amari.enhance.upscale import resize_to, tile_spans, upscale
from amari.errors import ModelError, UsageError
from amari.faces import descriptors as faces
from amari.faces.geometry import similarity_transform
from amari.storage.images import load_rgb
from amari.testing.enhance import build_random_esrgan, build_random_gfpgan


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("enhance-models")


@pytest.fixture(scope="module")
def tiny_esrgan(model_dir):
    return build_random_esrgan(model_dir / "tiny_x4.pth", num_filters=8)


@pytest.fixture(scope="module")
def gfpgan(model_dir):
    return build_random_gfpgan(model_dir / "gfpgan_random.pth")


@pytest.fixture(scope="module")
def astronaut_face(astronaut):
    """A 200×180 crop around the astronaut's face, small enough to upscale quickly."""
    return np.ascontiguousarray(astronaut[20:220, 130:310])


# 1. Upscaling -------------------------------------------------------------------------------------


def test_tiny_x4_model_gives_exactly_twice_the_size(tiny_esrgan, astronaut):
    image = np.ascontiguousarray(astronaut[100:197, 200:283])  # odd sizes on purpose: 97×83
    enhancer = Enhancer(EnhanceConfig(upscaler=str(tiny_esrgan), face_restorer=None, scale=2.0))
    out = enhancer.enhance(image)
    assert out.shape == (194, 166, 3) and out.dtype == np.uint8
    assert enhancer.upscaler.scale == 4
    # The model carries the image through plus a random texture: close to, but not, a plain resize.
    plain = resize_to(image, 194, 166)
    difference = np.abs(out.astype(int) - plain).mean()
    assert 0 < difference < 12


def test_safetensors_and_pth_files_give_the_same_image(tiny_esrgan, model_dir, astronaut):
    as_safetensors = build_random_esrgan(model_dir / "tiny_x4.safetensors", num_filters=8)
    image = np.ascontiguousarray(astronaut[:64, :80])
    results = [
        Enhancer(EnhanceConfig(upscaler=str(path), face_restorer=None)).enhance(image)
        for path in (tiny_esrgan, as_safetensors)
    ]
    assert results[0].shape == (128, 160, 3)
    assert np.array_equal(results[0], results[1])


def test_tiles_cover_the_image_once():
    for length, tile in [(97, 32), (512, 512), (513, 512), (1000, 300), (40, 0)]:
        spans = tile_spans(length, tile)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert all(0 < stop - start <= (tile or length) for start, stop in spans)


def test_each_network_runs_in_the_16_bit_float_spandrel_allows(tiny_esrgan, gfpgan):
    from amari.enhance.loading import load_image_model, reduced_dtype

    cpu = torch.device("cpu")
    esrgan = load_image_model(str(tiny_esrgan), "SR", cpu, half=True)
    restorer = load_image_model(str(gfpgan), "FaceSR", cpu, half=True)
    assert reduced_dtype(esrgan.supports_half, esrgan.supports_bfloat16, "cuda", True) == torch.float16
    # GFPGAN: spandrel says float16 breaks it, bfloat16 does not.
    assert reduced_dtype(restorer.supports_half, restorer.supports_bfloat16, "cuda", True) == torch.bfloat16
    assert reduced_dtype(restorer.supports_half, restorer.supports_bfloat16, "cuda", False) is None
    assert esrgan.dtype == restorer.dtype == torch.float32  # on the CPU both stay float32


def test_tiled_upscaling_matches_the_whole_image(tiny_esrgan, astronaut):
    model = Enhancer(EnhanceConfig(upscaler=str(tiny_esrgan), face_restorer=None)).upscaler
    image = np.ascontiguousarray(astronaut[150:222, 60:140])
    whole = upscale(model, image, tile=0).astype(int)
    tiled = upscale(model, image, tile=40).astype(int)
    assert tiled.shape == whole.shape == (288, 320, 3)
    assert np.abs(tiled - whole).max() <= 1
    # Without the context margin the seams show: the comparison above can fail.
    seamed = upscale(model, image, tile=40, overlap=0).astype(int)
    assert np.abs(seamed - whole).max() > np.abs(tiled - whole).max()


def test_no_upscaler_resizes_only(astronaut):
    image = np.ascontiguousarray(astronaut[:50, :60])
    same = Enhancer(EnhanceConfig(upscaler=None, face_restorer=None, scale=1.0)).enhance(image)
    assert np.array_equal(same, image)
    bigger = Enhancer(EnhanceConfig(upscaler=None, face_restorer=None, scale=1.5)).enhance(image)
    assert bigger.shape == (75, 90, 3)


# 2. Face alignment and paste-back (no model needed) -----------------------------------------------


def test_similarity_fit_recovers_a_known_transform():
    angle, scale, shift = 0.3, 2.5, np.array([40.0, -12.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = np.array([[10.0, 20.0], [50.0, 22.0], [31.0, 60.0]])
    target = source @ rotation.T + shift
    matrix = similarity_transform(source, target)
    assert np.allclose(matrix[:, :2], rotation) and np.allclose(matrix[:, 2], shift)


def test_real_faces_land_on_the_template(data_dir, astronaut):
    t1 = load_rgb(data_dir / "t1.jpg")
    crops = [(astronaut, (76, 265, 166, 175)), (t1[250:420, 30:220], (33, 145, 140, 37))]
    for image, box in crops:
        points = faces.landmarks(np.ascontiguousarray(image), [box], points=5)[0]
        matrix = restore.alignment_matrix(points)
        eyes = restore.dlib_anchor_points(points)[:2]
        placed = eyes @ matrix[:, :2].T + matrix[:, 2]
        # Eyes within a few pixels of the template's, and level.
        assert np.abs(placed - restore.FFHQ_TEMPLATE_512[:2]).max() < 12
        crop = restore.crop_face(np.ascontiguousarray(image), matrix)
        assert crop.shape == (512, 512, 3)
        # The aligned crop still holds a face that dlib finds near the template's centre.
        found = faces.detect(crop, "hog", 0)
        assert found, "no face in the aligned crop"
        top, right, bottom, left = found[0]
        assert abs((left + right) / 2 - 256) < 40 and abs((top + bottom) / 2 - 300) < 60


def test_paste_replaces_the_face_and_feathers_into_the_background():
    canvas = np.full((300, 400, 3), 50, np.uint8)
    face = np.full((512, 512, 3), 250, np.uint8)
    # The crop covers input pixels x 40..104, y 30..94 of a 200×150 input; the output is twice that.
    matrix = np.array([[8.0, 0.0, -8.0 * 40], [0.0, 8.0, -8.0 * 30]])
    restore.paste_face(canvas, face, matrix, input_size=(150, 200), weight=1.0)
    assert (canvas[124, 144] == 250).all()
    untouched = np.ones(canvas.shape[:2], bool)
    untouched[58:190, 78:210] = False
    assert (canvas[untouched] == 50).all()
    row = canvas[124, 70:145, 0].astype(int)
    assert row[0] == 50 and row[-1] == 250 and (np.diff(row) >= 0).all()
    assert ((row > 50) & (row < 250)).sum() >= 3  # a soft edge, not a hard one
    half = np.full((300, 400, 3), 50, np.uint8)
    restore.paste_face(half, face, matrix, input_size=(150, 200), weight=0.5)
    assert (half[124, 144] == 150).all()


def test_crop_and_output_frames_agree():
    matrix = similarity_transform([[10, 10], [30, 12], [20, 30]], restore.DLIB_TEMPLATE_512)
    to_output = restore.crop_to_output(matrix, 2.0, 2.0)
    point = np.array([17.0, 21.0])
    in_crop = matrix[:, :2] @ point + matrix[:, 2]
    assert np.allclose(to_output[:, :2] @ in_crop + to_output[:, 2], 2 * point + 0.5)


# 3. GFPGAN, full architecture with random weights, on real photos ---------------------------------


def near_faces(boxes, shape, factor=1):
    """Pixels within 1.5 face sizes of a face box centre (an upright aligned crop reaches about 1.1),
    in an output `factor` times the input."""
    mask = np.zeros(shape[:2], bool)
    for top, right, bottom, left in boxes:
        reach = 3 * max(bottom - top, right - left) // 2
        cy, cx = (top + bottom) // 2, (left + right) // 2
        rows = slice(max(0, cy - reach) * factor, (cy + reach) * factor)
        columns = slice(max(0, cx - reach) * factor, (cx + reach) * factor)
        mask[rows, columns] = True
    return mask


@pytest.mark.slow
def test_face_restoration_changes_only_the_face(gfpgan, astronaut):
    image = np.ascontiguousarray(astronaut[:300, 60:380])  # one face: each costs a GFPGAN run
    out = Enhancer(EnhanceConfig(upscaler=None, face_restorer=str(gfpgan), scale=2.0)).enhance(image)
    background = resize_to(image, 600, 640)  # what upscaler=None gives before faces are pasted
    assert out.shape == background.shape == (600, 640, 3)
    changed = np.abs(out.astype(int) - background).max(axis=2) > 0
    boxes = faces.detect(image, "hog", 1)
    assert len(boxes) == 1
    top, right, bottom, left = boxes[0]
    assert changed[2 * top : 2 * bottom, 2 * left : 2 * right].mean() > 0.9  # random weights redraw it
    far = ~near_faces(boxes, out.shape, factor=2)
    assert far.mean() > 0.25 and not changed[far].any()


@pytest.mark.slow
def test_hog_false_faces_are_not_restored(gfpgan, astronaut):
    enhancer = Enhancer(EnhanceConfig(upscaler=None, face_restorer=str(gfpgan), scale=1.0))
    from amari.enhance import face_plans

    image = np.ascontiguousarray(astronaut)
    assert len(faces.detect(image, "hog", 1)) == 2  # the face and a badge on the suit
    assert len(face_plans(faces.encode(image), enhancer.config.min_face_score)) == 1
    canvas = enhancer.enhance(image)
    assert not np.array_equal(canvas, image)  # the real face was restored
    badge_top, badge_right, badge_bottom, badge_left = faces.detect(image, "hog", 1)[1]
    assert np.array_equal(
        canvas[badge_top:badge_bottom, badge_left:badge_right], image[badge_top:badge_bottom, badge_left:badge_right]
    )


# 4. Bad model files -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_face_model_given_as_upscaler_is_refused(gfpgan, astronaut_face):
    enhancer = Enhancer(EnhanceConfig(upscaler=str(gfpgan), face_restorer=None))
    with pytest.raises(ModelError, match="expected a super-resolution model") as error:
        enhancer.enhance(astronaut_face)
    assert "GFPGAN" in str(error.value) and "FaceSR" in str(error.value)


def test_an_upscaler_given_as_face_restorer_is_refused(tiny_esrgan, astronaut_face):
    enhancer = Enhancer(EnhanceConfig(upscaler=None, face_restorer=str(tiny_esrgan)))
    with pytest.raises(ModelError, match="expected a face restoration model") as error:
        enhancer.enhance(astronaut_face)
    assert "ESRGAN" in str(error.value)


def test_missing_known_model_offline_names_the_file(astronaut_face):
    enhancer = Enhancer(EnhanceConfig())  # loads nothing yet
    with pytest.raises(ModelError, match="RealESRGAN_x4plus.pth"):
        enhancer.enhance(astronaut_face)
    with pytest.raises(ModelError, match="GFPGANv1.4.pth"):
        Enhancer(EnhanceConfig(upscaler=None)).enhance(astronaut_face)


def test_truncated_model_file(tiny_esrgan, tmp_path, astronaut_face):
    broken = tmp_path / "broken.pth"
    data = tiny_esrgan.read_bytes()
    broken.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ModelError, match="truncated or corrupt"):
        Enhancer(EnhanceConfig(upscaler=str(broken), face_restorer=None)).enhance(astronaut_face)


def test_malicious_model_file_does_not_run(tmp_path, astronaut_face):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

    evil = tmp_path / "RealESRGAN_x4plus.pth"
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(1)}, "extra": Payload()}, evil)
    with pytest.raises(ModelError, match="refused to load"):
        Enhancer(EnhanceConfig(upscaler=str(evil), face_restorer=None)).enhance(astronaut_face)
    assert not marker.exists()


def test_unknown_architecture_and_mismatched_weights(tmp_path, tiny_esrgan, astronaut_face):
    unknown = tmp_path / "unknown.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(4, 4)}, str(unknown))
    with pytest.raises(ModelError, match="not a model architecture"):
        Enhancer(EnhanceConfig(upscaler=str(unknown), face_restorer=None)).enhance(astronaut_face)
    from amari.models.files import safe_torch_load

    state = safe_torch_load(tiny_esrgan)["params_ema"]
    state["conv_hr.weight"] = torch.zeros(3, 3, 3, 3)
    mismatched = tmp_path / "mismatched.safetensors"
    save_file(state, str(mismatched))
    with pytest.raises(ModelError, match="do not fit"):
        Enhancer(EnhanceConfig(upscaler=str(mismatched), face_restorer=None)).enhance(astronaut_face)


# 5. Settings and inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [{"scale": 0}, {"scale": -2}, {"tile": 8}, {"device": "gpu"}, {"restore_weight": 1.5}, {"upscaler": " "}],
)
def test_bad_settings_are_usage_errors(settings):
    with pytest.raises(UsageError):
        EnhanceConfig(**settings)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((1, 10, 3), np.uint8),
    ],
)
def test_bad_images_are_usage_errors(image):
    with pytest.raises(UsageError):
        Enhancer(EnhanceConfig(upscaler=None, face_restorer=None)).enhance(image)
