import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from amari.errors import ImageError
from amari.storage.images import image_files, iter_loaded, load_rgb, shrink_to


def _save(image, path, **kw):
    image.save(path, **kw)
    return path


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, :40] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = _save(Image.fromarray(pixels), tmp_path / "rotated.jpg", exif=exif, quality=95)
    loaded = load_rgb(path)
    assert loaded.shape == (80, 40, 3)
    assert loaded[5, 20, 0] > 200 and loaded[-5, 20, 0] < 60  # red moved to the top


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 3] = 0
    rgba[0, 0] = (10, 20, 30, 255)
    loaded = load_rgb(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    assert loaded.dtype == np.uint8 and loaded.shape == (10, 10, 3)
    assert tuple(loaded[5, 5]) == (255, 255, 255)
    assert tuple(loaded[0, 0]) == (10, 20, 30)


def test_opaque_rgba_equals_plain_rgb_conversion(tmp_path, data_dir):
    rgb = Image.open(data_dir / "astronaut.png").convert("RGB")
    rgba = rgb.convert("RGBA")
    loaded = load_rgb(_save(rgba, tmp_path / "opaque.png"))
    assert np.array_equal(loaded, np.asarray(rgb))


@pytest.mark.parametrize("mode", ["LA", "P", "CMYK", "L", "1"])
def test_other_modes_become_rgb(tmp_path, data_dir, mode):
    source = Image.open(data_dir / "astronaut.png").convert("RGB").resize((64, 64))
    converted = source.convert(mode)
    if mode == "P":
        converted.info["transparency"] = 0
    suffix = ".jpg" if mode == "CMYK" else ".png"
    loaded = load_rgb(_save(converted, tmp_path / f"img{suffix}"))
    assert loaded.shape == (64, 64, 3) and loaded.dtype == np.uint8
    if mode == "CMYK":
        assert np.abs(loaded.astype(int) - np.asarray(source).astype(int)).mean() < 20


def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path):
    values = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 257
    path = _save(Image.fromarray(values), tmp_path / "deep.png")
    loaded = load_rgb(path)
    assert loaded.shape == (16, 16, 3)
    assert loaded[0, 0, 0] == 0 and loaded[-1, -1, 0] == 255
    assert np.array_equal(loaded[..., 0], (values // 257).astype(np.uint8))


def test_truncated_file_is_a_clear_error(tmp_path, data_dir):
    path = tmp_path / "cut.jpg"
    path.write_bytes((data_dir / "t1.jpg").read_bytes()[:4000])
    with pytest.raises(ImageError, match="truncated"):
        load_rgb(path)


def test_non_image_with_image_extension(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture")
    with pytest.raises(ImageError, match="not an image"):
        load_rgb(path)


def _png_claiming(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(60000, 60000))
    with pytest.raises(ImageError, match="decompression bomb"):
        load_rgb(path)


def test_pixel_limit_is_configurable(tmp_path, data_dir):
    with pytest.raises(ImageError, match="limit of 1000"):
        load_rgb(data_dir / "astronaut.png", max_pixels=1000)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_rgb(tmp_path / "absent.jpg")
    with pytest.raises(ImageError, match="not a folder"):
        image_files(tmp_path / "absent")


def test_image_files_filters_sorts_and_skips_hidden(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ["b.JPG", "a.png", "sub/c.jpeg", "notes.txt", ".d.png", ".hidden/e.png"]:
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path)]
    assert found == ["a.png", "b.JPG", "sub/c.jpeg"]
    assert [p.name for p in image_files(tmp_path, recursive=False)] == ["a.png", "b.JPG"]


def test_iter_loaded_keeps_going_past_bad_files(tmp_path, data_dir):
    good = data_dir / "Tom_Hanks_54745.png"
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    results = dict(iter_loaded([bad, good]))
    assert isinstance(results[bad], ImageError)
    assert results[good].shape == (112, 112, 3)


def test_shrink_to_matches_face_recognition_thumbnail(data_dir):
    image = load_rgb(data_dir / "t1.jpg")
    small = shrink_to(image, 640)
    expected = Image.fromarray(image)
    expected.thumbnail((640, 640), Image.LANCZOS)
    assert np.array_equal(small, np.asarray(expected))
    assert shrink_to(image, 4000) is image


def test_load_from_bytes(data_dir):
    data = (data_dir / "Tom_Hanks_54745.png").read_bytes()
    assert np.array_equal(load_rgb(data), load_rgb(io.BytesIO(data).getvalue()))


def test_a_pipe_is_refused_not_waited_on(tmp_path):
    import os

    from amari.storage.images import read_bytes

    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)  # nobody writes to it: reading it would block for ever
    for read in (read_bytes, load_rgb):
        with pytest.raises(ImageError, match="not a regular file"):
            read(pipe)
    with pytest.raises(ImageError, match="is a folder"):
        read_bytes(tmp_path)
