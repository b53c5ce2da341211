import shutil
import sqlite3

import numpy as np

from amari.errors import ImageError
from amari.faces import descriptors as faces
from amari.faces.descriptors import FaceSettings
from amari.faces.embeddings import EmbeddingCache, FaceEncoder, content_hash, default_cache_path
from amari.faces.group import FaceGroup
from amari.storage.images import load_rgb


def test_second_look_is_a_cache_hit_with_identical_numbers(tmp_path, t1_people):
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    encoder = FaceEncoder(FaceSettings(), cache)
    first = encoder.faces(t1_people[0])
    second = encoder.faces(t1_people[0])
    assert encoder.encoded == 1 and encoder.cache_hits == 1
    assert len(first) == len(second) == 1
    assert np.array_equal(first[0].descriptor, second[0].descriptor)
    assert np.array_equal(first[0].landmarks, second[0].landmarks)
    assert first[0].box == second[0].box
    fresh = faces.encode(load_rgb(t1_people[0]))
    assert np.array_equal(second[0].descriptor, fresh[0].descriptor)


def test_cache_is_keyed_by_content_not_name(tmp_path, t1_people):
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    FaceEncoder(FaceSettings(), cache).faces(t1_people[1])
    renamed = tmp_path / "elsewhere" / "renamed.png"
    renamed.parent.mkdir()
    shutil.copy(t1_people[1], renamed)
    reopened = FaceEncoder(FaceSettings(), EmbeddingCache(tmp_path / "cache.sqlite"))
    reopened.faces(renamed)
    assert reopened.encoded == 0 and reopened.cache_hits == 1
    other_settings = FaceEncoder(FaceSettings(jitters=2), cache)
    other_settings.faces(renamed)
    assert other_settings.encoded == 1


def test_no_face_is_cached_too(tmp_path):
    from PIL import Image

    path = tmp_path / "blank.png"
    Image.new("RGB", (80, 80), "gray").save(path)
    encoder = FaceEncoder(FaceSettings(), EmbeddingCache(tmp_path / "c.sqlite"))
    assert encoder.faces(path) == [] and encoder.faces(path) == []
    assert encoder.encoded == 1


def test_faces_many_in_parallel_equals_serial_and_returns_errors(tmp_path, t1_people):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xffnot really")
    paths = [*t1_people[:4], broken]
    serial = FaceEncoder(FaceSettings(), None).faces_many(paths)
    parallel_encoder = FaceEncoder(FaceSettings(), EmbeddingCache(tmp_path / "c.sqlite"))
    seen = []
    parallel = parallel_encoder.faces_many(paths, cpus=2, on_progress=seen.append)
    assert list(parallel) == paths and sorted(seen) == sorted(paths)
    assert isinstance(parallel[broken], ImageError) and isinstance(serial[broken], ImageError)
    for path in t1_people[:4]:
        assert np.array_equal(parallel[path][0].descriptor, serial[path][0].descriptor)
    assert parallel_encoder.encoded == 4


def test_face_group_skips_unusable_members(tmp_path, t1_people):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (60, 60)).save(blank)
    group = FaceGroup.load([t1_people[0], blank, t1_people[2]], FaceEncoder())
    assert group.paths == [t1_people[0], t1_people[2]]
    assert group.descriptors.shape == (2, 128)
    assert group.skipped == [(blank, "no face found")]


def test_cache_lives_in_its_own_sqlite_file_and_migrates_once(tmp_path, monkeypatch):
    monkeypatch.setenv("AMARI_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_path() == tmp_path / "here" / "embeddings.sqlite"
    EmbeddingCache().close()
    EmbeddingCache().close()
    conn = sqlite3.connect(default_cache_path())
    assert [r[0] for r in conn.execute("SELECT name FROM _migrations")] == ["0001_face_cache", "0002_face_scores"]
    assert content_hash(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
