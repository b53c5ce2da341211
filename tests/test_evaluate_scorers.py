"""Identity scorers on real photos: dlib's sim-score and yaw, the CNN second pass, and ArcFace (ONNX).

No ArcFace weights can be shipped here, so its tests build a small random ONNX graph of an ArcFace
model's shape (image [N,3,112,112] -> embedding [N,512]) byte by byte in the protobuf wire format; the
alignment, normalisation, session handling and scoring around it are amari's real code.
"""

import math

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from amari.errors import ModelError, UsageError
from amari.evaluate import Scorers
from amari.evaluate.scorers import ARCFACE_TEMPLATE_112, ArcFaceScorer, DlibScorer, Scorer, align_face, five_points
from amari.faces import descriptors as faces
from amari.faces.descriptors import FaceSettings
from amari.faces.embeddings import EmbeddingCache
from amari.faces.geometry import similarity_transform
from amari.storage.images import load_rgb
from amari.storage.results import CellResult

# -- a tiny ONNX model, written as protobuf ---------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, data) -> bytes:
    data = data.encode() if isinstance(data, str) else data
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, dims) -> bytes:
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in dims)
    tensor_type = _int(1, 1) + _bytes(2, shape)  # elem_type FLOAT, shape
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def _attribute_ints(name: str, values) -> bytes:
    return _bytes(1, name) + b"".join(_int(8, v) for v in values) + _int(20, 7)  # type INTS


def _attribute_int(name: str, value: int) -> bytes:
    return _bytes(1, name) + _int(3, value) + _int(20, 2)  # type INT


def _node(op: str, inputs, outputs, attributes=()) -> bytes:
    return (
        b"".join(_bytes(1, i) for i in inputs)
        + b"".join(_bytes(2, o) for o in outputs)
        + _bytes(4, op)
        + b"".join(_bytes(5, a) for a in attributes)
    )


def write_tiny_arcface(path, side: int = 112, width: int = 512, channels_last: bool = False, seed: int = 0):
    """AveragePool 8×8 -> Flatten -> MatMul(random): an ArcFace-shaped ONNX model."""
    pooled = side // 8
    weight = np.random.default_rng(seed).standard_normal((3 * pooled * pooled, width)).astype(np.float32)
    nodes = []
    source = "input"
    if channels_last:
        nodes.append(_node("Transpose", ["input"], ["nchw"], [_attribute_ints("perm", [0, 3, 1, 2])]))
        source = "nchw"
    nodes += [
        _node(
            "AveragePool",
            [source],
            ["pooled"],
            [_attribute_ints("kernel_shape", [8, 8]), _attribute_ints("strides", [8, 8])],
        ),
        _node("Flatten", ["pooled"], ["flat"], [_attribute_int("axis", 1)]),
        _node("MatMul", ["flat", "weight"], ["embedding"]),
    ]
    initializer = (
        b"".join(_int(1, d) for d in weight.shape) + _int(2, 1) + _bytes(8, "weight") + _bytes(9, weight.tobytes())
    )
    input_dims = ["batch", side, side, 3] if channels_last else ["batch", 3, side, side]
    graph = (
        b"".join(_bytes(1, n) for n in nodes)
        + _bytes(2, "tiny-arcface")
        + _bytes(5, initializer)
        + _bytes(11, _value_info("input", input_dims))
        + _bytes(12, _value_info("embedding", ["batch", width]))
    )
    model = _int(1, 8) + _bytes(2, "amari-tests") + _bytes(7, graph) + _bytes(8, _bytes(1, "") + _int(2, 13))
    path.write_bytes(model)
    return path


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def group(tmp_path_factory, t1_people):
    folder = tmp_path_factory.mktemp("group")
    with Image.open(t1_people[3]) as person:
        person = person.convert("RGB")
        person.save(folder / "a.png")
        ImageEnhance.Brightness(person).enhance(1.15).save(folder / "b.png")
        person.crop((8, 8, person.width - 6, person.height - 6)).save(folder / "c.png")
    Image.new("RGB", (60, 60), "white").save(folder / "blank.png")
    return sorted(folder.iterdir())


@pytest.fixture(scope="module")
def probes(tmp_path_factory, t1_people):
    folder = tmp_path_factory.mktemp("probes")
    with Image.open(t1_people[3]) as person:
        person = person.convert("RGB")
        ImageEnhance.Contrast(person).enhance(0.9).save(folder / "same.png")
        ImageOps.mirror(person).save(folder / "mirrored.png")
    with Image.open(t1_people[1]) as other:
        other.convert("RGB").save(folder / "other.png")
    with Image.open(t1_people[5]) as tilted:
        # Tilted 40 degrees: dlib's HOG detector misses it, its CNN detector does not.
        tilted = tilted.convert("RGB").rotate(40, expand=True, fillcolor=(128, 128, 128))
        tilted.thumbnail((160, 160))
        tilted.save(folder / "tilted.png")
    Image.new("RGB", (64, 64), (90, 120, 150)).save(folder / "blank.png")
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return EmbeddingCache(tmp_path_factory.mktemp("cache") / "faces.sqlite")


@pytest.fixture(scope="module")
def dlib_scorer(group, cache):
    scorer = DlibScorer(FaceSettings(), cache)
    assert scorer.fit(group) == 3  # the blank image gives no face
    return scorer


@pytest.fixture(scope="module")
def arcface_model(tmp_path_factory):
    return write_tiny_arcface(tmp_path_factory.mktemp("onnx") / "arcface.onnx")


# -- dlib -------------------------------------------------------------------------------------------


def test_dlib_scorer_is_the_mean_distance_to_the_group(dlib_scorer, group, probes):
    members = [faces.largest(faces.encode(load_rgb(p))).descriptor for p in group if p.name != "blank.png"]
    for name in ("same.png", "other.png"):
        result = dlib_scorer.score(probes / name)
        descriptor = faces.largest(faces.encode(load_rgb(probes / name))).descriptor
        assert result.faces == 1
        assert result.score == pytest.approx(np.mean([np.linalg.norm(descriptor - m) for m in members]), abs=1e-9)
    assert dlib_scorer.score(probes / "same.png").score < 0.4 < dlib_scorer.score(probes / "other.png").score
    assert dlib_scorer.score(probes / "blank.png") == type(dlib_scorer.score(probes / "blank.png"))(faces=0)
    assert isinstance(dlib_scorer, Scorer)


def test_yaw_comes_from_68_landmarks_and_flips_with_the_image(dlib_scorer, probes):
    from amari.faces.pose import estimate_yaw

    image = load_rgb(probes / "same.png")
    face = faces.largest(faces.encode(image))
    expected = estimate_yaw(faces.landmarks(image, [face.box], points=68)[0])
    yaw = dlib_scorer.score(probes / "same.png").yaw
    mirrored = dlib_scorer.score(probes / "mirrored.png").yaw
    assert yaw == pytest.approx(expected, abs=1e-9)
    assert abs(yaw) > 3 and np.sign(mirrored) == -np.sign(yaw)
    assert abs(abs(mirrored) - abs(yaw)) < 8


def test_cnn_second_pass_finds_the_face_hog_missed(dlib_scorer, group, probes, cache):
    second = DlibScorer(FaceSettings(detector="cnn"), cache)
    second.fit(group)
    scorers = Scorers(primary=dlib_scorer, second_pass=second)
    cell = CellResult(0, "a photo of amari", "sd1", 1, "a_312", "x.png", faces=0)
    tilted = scorers.apply(cell, probes / "tilted.png")
    assert tilted.faces == 0 and tilted.sim_score is None
    assert tilted.cnn_faces == 1 and 0.4 < tilted.cnn_sim_score < 1.2 and tilted.cnn_yaw is not None
    found = scorers.apply(cell, probes / "same.png")
    assert found.faces == 1 and found.cnn_faces is None  # the second pass only looks where HOG found none
    blank = scorers.apply(cell, probes / "blank.png")
    assert (blank.faces, blank.cnn_faces, blank.cnn_sim_score) == (0, 0, None)
    assert found.scorers == "dlib+dlib-cnn"


def test_scoring_before_fitting_or_against_no_face_is_refused(tmp_path, probes, cache):
    with pytest.raises(UsageError, match="before fit"):
        DlibScorer(cache=cache).score(probes / "same.png")
    with pytest.raises(UsageError, match="no face found in any sim-group image"):
        DlibScorer(cache=cache).fit([probes / "blank.png"])


# -- ArcFace ----------------------------------------------------------------------------------------


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 200, (5, 2))
    angle, scale, shift = math.radians(23), 0.7, np.array([12.0, -4.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = points @ (scale * rotation).T + shift
    matrix = similarity_transform(points, moved)
    assert np.allclose(matrix[:, :2], scale * rotation, atol=1e-9) and np.allclose(matrix[:, 2], shift, atol=1e-9)


def test_alignment_puts_the_landmarks_on_the_template():
    # A picture with a bright dot at each of five points; after alignment each dot sits on its template point.
    points = np.array([(60.0, 80.0), (130.0, 70.0), (98.0, 120.0), (70.0, 160.0), (125.0, 152.0)])
    image = np.zeros((220, 200, 3), np.uint8)
    for x, y in points:
        image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255
    aligned = align_face(image, points, 112)
    assert aligned.shape == (112, 112, 3)
    matrix = similarity_transform(points, ARCFACE_TEMPLATE_112)
    for x, y in points:
        tx, ty = matrix @ (x, y, 1.0)
        patch = aligned[round(ty) - 3 : round(ty) + 4, round(tx) - 3 : round(tx) + 4]
        assert patch.max() > 100
    landmarks = np.zeros((68, 2))
    landmarks[36:42] = (10, 20)
    landmarks[42:48] = (30, 20)
    landmarks[30], landmarks[48], landmarks[54] = (20, 30), (12, 40), (28, 40)
    assert five_points(landmarks).tolist() == [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]]


def test_arcface_scores_cosine_similarity_to_the_group(arcface_model, group, probes, cache):
    scorer = ArcFaceScorer(arcface_model, cache=cache)
    assert scorer.fit(group) == 3 and scorer.group.shape == (3, 512)
    assert np.allclose(np.linalg.norm(scorer.group, axis=1), 1.0)
    same, other, blank = (scorer.score(probes / n) for n in ("same.png", "other.png", "blank.png"))
    assert same.faces == 1 and -1 <= same.score <= 1 and -1 <= other.score <= 1
    assert blank.faces == 0 and blank.score is None
    # A group member scores its mean cosine with every member, itself (1.0) included.
    member = scorer.score(group[0])
    _, vector = scorer.embed(group[0])
    assert member.score == pytest.approx(float(np.mean(scorer.group @ vector)), abs=1e-9)
    assert scorer.higher_is_better and isinstance(scorer, Scorer)


def test_arcface_accepts_channels_last_models(tmp_path, group, probes, cache):
    model = write_tiny_arcface(tmp_path / "nhwc.onnx", channels_last=True)
    scorer = ArcFaceScorer(model, cache=cache)
    assert scorer.fit(group) == 3
    assert scorer.score(probes / "same.png").score is not None


def test_arcface_model_errors_are_clear(tmp_path, group, cache):
    with pytest.raises(UsageError, match="ArcFace model not found"):
        ArcFaceScorer(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="not an ONNX model"):
        ArcFaceScorer(junk, cache=cache).fit(group)


def test_all_scorers_fill_their_columns(dlib_scorer, arcface_model, group, probes, cache):
    arcface = ArcFaceScorer(arcface_model, cache=cache)
    scorers = Scorers(primary=dlib_scorer, extra={"arcface_similarity": arcface})
    scorers.fit(group)
    cell = scorers.apply(CellResult(0, "p amari", "sd1", 1, "g", "x.png", faces=0), probes / "other.png")
    assert cell.faces == 1 and cell.sim_score > 0.4 and cell.yaw is not None
    assert cell.arcface_similarity == pytest.approx(arcface.score(probes / "other.png").score)
    assert cell.scorers == "dlib+arcface" and scorers.group_faces == 3
