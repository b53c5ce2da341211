"""How well each provenance mark survives what happens to images online, on real photos.

Four parts:

1. **The watermark alone** (no registry, no metadata), the checks it was built to pass: real faces
   cropped like a generator's portraits (`amari.testing.photos.face_photos`, marked and clean halves)
   and the 23 pictures below, at 512², through mirror + JPEG 75, a 3° rotation in the same frame, an
   aspect change to 0.9, a centre crop keeping 60 % of each side, a screenshot (0.6× on a 1920×1080
   page), and averaging: each marked image minus the residual averaged over 10 others, each clean
   photo plus such an average (as it comes, and scaled to a mark's energy).
2. **Faces**: the dlib descriptor's shift for every face in the photos, and the same/different
   decisions at 0.40 it flips, beside PSNR, for JPEG 90, the version 1 tile and the tile2 mark.
3. **Every mark** (watermark, fingerprint, C2PA, verdict): 23 distinct real pictures from tests/data
   (the six faces of t1.jpg framed tight and wide, six regions of it, the astronaut and three parts of
   it, and Tom Hanks), each at 512² and 1024², written with `save_png` (watermark, fingerprint in a
   fresh registry, C2PA signed with a key from `amari keygen` when c2pa-python is installed), edited,
   and checked with `amari verify`'s code. A fingerprint counts only when it names the right image.
   False positives: every unmarked photo, after every edit, against a registry of all *other* photos.
4. **Time**: to embed and to read the watermark, and to write and verify a file with every mark, with
   the version 1 tile (what amari wrote before) and with tile2, in this run.

    .venv/bin/python bench/provenance.py [--sizes 512 1024] [--photos 40] [--candidates] [--more]

--candidates also measures, at 512², the watermarks the version 1 tile was chosen over:
invisible-watermark's dwtDctSvd as amari used it before, and its RivaGAN model (needs onnxruntime; its
decoder is given the image rescaled to 512² and a 256² centre crop, as slow as it is, ~4 minutes).
--more adds harder edits beyond the checks (corner crops, larger rotations, a rescale with a corner crop).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import _watermark  # noqa: E402 - the watermark's own parts of this benchmark
from amari.study.demo import SAMPLE_FACES  # noqa: E402 - dlib's boxes of the six faces in t1.jpg

DATA = ROOT / "tests" / "data"


# The photos ---------------------------------------------------------------------------------------


def _window(photo: Image.Image, centre_x: float, centre_y: float, side: float) -> Image.Image:
    border = max(photo.size)  # grey beyond the photo's edge, never mirrored content
    padded = ImageOps.expand(photo, border=border, fill=(128, 128, 128))
    left, top = round(centre_x - side / 2) + border, round(centre_y - side / 2) + border
    return padded.crop((left, top, left + round(side), top + round(side)))


def sources() -> list[tuple[str, Image.Image]]:
    """23 distinct real pictures; none is a crop of another that keeps 80 % or more of it."""
    t1 = Image.open(DATA / "t1.jpg").convert("RGB")
    astronaut = Image.open(DATA / "astronaut.png").convert("RGB")
    found = []
    for index, (top, right, bottom, left) in enumerate(SAMPLE_FACES):
        size, centre_x, centre_y = max(right - left, bottom - top), (left + right) / 2, (top + bottom) / 2
        found.append((f"t1-face{index}-tight", _window(t1, centre_x, centre_y, 2.4 * size)))
        found.append((f"t1-face{index}-wide", _window(t1, centre_x + 0.4 * size, centre_y + 0.6 * size, 4.5 * size)))
    for name, box in (
        ("t1-topleft", (0, 0, 600, 600)),
        ("t1-topright", (680, 0, 1280, 600)),
        ("t1-bottomleft", (0, 286, 600, 886)),
        ("t1-bottomright", (680, 286, 1280, 886)),
        ("t1-centre", (197, 0, 1083, 886)),
        ("t1-middle", (340, 143, 940, 743)),
    ):
        found.append((name, t1.crop(box)))
    found += [
        ("astronaut", astronaut),
        ("astronaut-face", astronaut.crop((100, 0, 340, 240))),
        ("astronaut-flag", astronaut.crop((256, 256, 512, 512))),
        ("astronaut-lowerleft", astronaut.crop((0, 256, 256, 512))),
        ("hanks", Image.open(DATA / "Tom_Hanks_54745.png").convert("RGB")),
    ]
    return found


def photo_set(side: int) -> list[tuple[str, np.ndarray]]:
    return [(name, np.asarray(image.resize((side, side), Image.Resampling.LANCZOS))) for name, image in sources()]


# The edits ----------------------------------------------------------------------------------------


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")  # a re-save: the text and C2PA chunks do not come along
    return buffer.getvalue()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _resize(rgb: np.ndarray, factor: float) -> np.ndarray:
    height, width = rgb.shape[:2]
    size = (round(width * factor), round(height * factor))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def _crop(rgb: np.ndarray, left: float, top: float, right: float, bottom: float) -> np.ndarray:
    height, width = rgb.shape[:2]
    return rgb[round(top * height) : round((1 - bottom) * height), round(left * width) : round((1 - right) * width)]


# Each edit takes the file as written and returns the bytes of the edited file.
ATTACKS = {
    "none": lambda data: data,
    "jpeg90": lambda data: _jpeg(_decode(data), 90),
    "jpeg75": lambda data: _jpeg(_decode(data), 75),
    "jpeg50": lambda data: _jpeg(_decode(data), 50),
    "resize0.5": lambda data: _png(_resize(_decode(data), 0.5)),
    "resize0.75": lambda data: _png(_resize(_decode(data), 0.75)),
    "crop10": lambda data: _png(_crop(_decode(data), 0.05, 0.05, 0.05, 0.05)),
    "resize0.5+jpeg75": lambda data: _jpeg(_resize(_decode(data), 0.5), 75),
    "resize0.8+jpeg85": lambda data: _jpeg(_resize(_decode(data), 0.8), 85),
}
# Beyond the standard edits, to show the edges honestly.
EXTRA_ATTACKS = {
    "crop10 off-centre": lambda data: _png(_crop(_decode(data), 0.07, 0.03, 0.03, 0.07)),
    "crop to 4:5+0.75+jpeg75": lambda data: _jpeg(_resize(_crop(_decode(data), 0.1, 0, 0.1, 0), 0.75), 75),
    "mirror+jpeg75": lambda data: _jpeg(np.ascontiguousarray(_decode(data)[:, ::-1]), 75),
    "resize0.6+crop15 corner": lambda data: _jpeg(_crop(_resize(_decode(data), 0.6), 0.15, 0.15, 0, 0), 85),
}
MARKS = ("watermark", "fingerprint", "c2pa", "verdict")


# Measuring ----------------------------------------------------------------------------------------


def _nearest_other(hashes: np.ndarray, data: bytes) -> int:
    """Hamming distance from an unmarked photo (or its mirror image) to the closest crop of another."""
    from amari.provenance.fingerprint import distances, perceptual_hash

    rgb = _decode(data)
    return int(min(distances(hashes, perceptual_hash(query)).min() for query in (rgb, rgb[:, ::-1])))


def _check(verifier, path: Path, data: bytes, own: Path | None) -> dict:
    path.write_bytes(data)
    result = verifier.check(path)
    match = result.fingerprint
    # The registry records where an image lies relative to its own folder (no local paths): the names
    # of the bench's images are distinct.
    right_image = match is not None and own is not None and Path(match.path).name == own.name
    return {
        "watermark": result.provenance.watermarked,
        "fingerprint": right_image,
        "fingerprint_any": match is not None,
        "c2pa": result.amari_credentials,
        "verdict": result.made_by_amari,
        "metadata": "metadata" in result.marks,
        "z": (result.provenance.watermark.score if result.provenance.watermark else None),
        "distance": match.distance if match is not None else None,
    }


def run_size(side: int, work: Path, attacks: dict) -> dict:
    from amari.provenance.fingerprint import Registry, window_hashes
    from amari.provenance.png import save_png
    from amari.provenance.verification import Verifier

    photos = photo_set(side)
    folder = work / str(side)
    registry = folder / "provenance.sqlite"
    started = time.perf_counter()
    marked = [
        save_png(rgb, folder / f"{name}.png", {"seed": index, "prompt": name}, registries=[registry])
        for index, (name, rgb) in enumerate(photos)
    ]
    mark_seconds = (time.perf_counter() - started) / len(photos)
    psnr = [
        10 * np.log10(255**2 / np.mean((_decode(path.read_bytes()).astype(float) - rgb.astype(float)) ** 2))
        for path, (_, rgb) in zip(marked, photos)
    ]
    detected = {attack: {mark: 0 for mark in MARKS} for attack in attacks}
    z_marked, copy_distances = [], []
    started = time.perf_counter()
    with Verifier([registry], use_default=False) as verifier:
        for path in marked:
            for attack, edit in attacks.items():
                found = _check(verifier, folder / "edited.bin", edit(path.read_bytes()), path.absolute())
                for mark in MARKS:
                    detected[attack][mark] += found[mark]
                if attack in ATTACKS and found["z"] is not None:  # the margins of the standard edits
                    z_marked.append(found["z"])
                if attack in ATTACKS and found["fingerprint"]:
                    copy_distances.append(found["distance"])
    checks = len(marked) * len(attacks)
    false = {mark: 0 for mark in MARKS}
    z_unmarked, other_distances = [], []
    stored = np.stack([window_hashes(_decode(path.read_bytes())) for path in marked])
    for index, (_name, rgb) in enumerate(photos):
        others = folder / f"without-{index}.sqlite"  # every marked photo but this one
        with Registry(others) as loo:
            for other, path in enumerate(marked):
                if other != index:
                    loo.add(_decode(path.read_bytes()), path)
        with Verifier([others], use_default=False) as verifier:
            for edit in attacks.values():
                edited = edit(_png(rgb))
                found = _check(verifier, folder / "unmarked.bin", edited, None)
                other_distances.append(_nearest_other(np.delete(stored, index, axis=0), edited))
                for mark in MARKS:
                    false[mark] += found["fingerprint_any"] if mark == "fingerprint" else found[mark]
                z_unmarked.append(found["z"] if found["z"] is not None else 0.0)
        others.unlink()
    return {
        "n": len(photos),
        "detected": detected,
        "false": false,
        "checks": checks,
        "psnr": psnr,
        "mark_seconds": mark_seconds,
        "check_seconds": (time.perf_counter() - started) / (2 * checks),
        "z_marked": z_marked,
        "z_unmarked": z_unmarked,
        "copy_distances": copy_distances,
        "other_distances": other_distances,
    }


def candidates(side: int = 512) -> dict:
    """Watermark-only detection for invisible-watermark's dwtDctSvd and RivaGAN on the same photos."""
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    rng = np.random.default_rng(15)
    riva_bits = rng.integers(0, 2, 32)
    WatermarkEncoder.loadModel()  # RivaGAN's ONNX models, shipped in the wheel

    def dwt_embed(rgb):
        encoder = WatermarkEncoder()
        encoder.set_watermark("bytes", b"amari")
        return encoder.encode(np.ascontiguousarray(rgb[..., ::-1]), "dwtDctSvd")[..., ::-1]

    def dwt_read(rgb):
        bits = WatermarkDecoder("bits", 40).decode(np.ascontiguousarray(rgb[..., ::-1]), "dwtDctSvd")
        expected = np.unpackbits(np.frombuffer(b"amari", dtype=np.uint8))
        return np.mean(np.asarray(bits, dtype=np.uint8) == expected) >= 0.9

    def riva_embed(rgb):
        encoder = WatermarkEncoder()
        encoder.set_watermark("bits", [int(b) for b in riva_bits])
        return encoder.encode(np.ascontiguousarray(rgb[..., ::-1]), "rivaGan")[..., ::-1]

    def riva_read(rgb):
        height, width = rgb.shape[:2]
        if (height, width) != (side, side):
            rgb = np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.LANCZOS))
        centre = rgb[side // 2 - 128 : side // 2 + 128, side // 2 - 128 : side // 2 + 128]
        bits = WatermarkDecoder("bits", 32).decode(np.ascontiguousarray(centre[..., ::-1]), "rivaGan")
        return np.sum(np.asarray(bits, dtype=np.uint8) == riva_bits) >= 28

    photos = photo_set(side)
    results = {}
    for name, embed, read in (("dwtDctSvd", dwt_embed, dwt_read), ("RivaGAN", riva_embed, riva_read)):
        marked = [_png(np.ascontiguousarray(embed(rgb))) for _, rgb in photos]
        results[name] = {
            attack: np.mean([read(_decode(edit(data))) for data in marked]) for attack, edit in ATTACKS.items()
        }
        results[name]["false positives"] = np.mean(
            [read(_decode(edit(_png(rgb)))) for _, rgb in photos for edit in ATTACKS.values()]
        )
    return results


# Reporting ----------------------------------------------------------------------------------------


def _rate(count: int, total: int) -> str:
    return f"{100 * count / total:5.1f}%"


def report(results: dict, attacks: dict, c2pa: bool) -> None:
    sizes = list(results)
    width = max(12, 7 * len(sizes))
    print(f"{'attack':<26}" + "".join(f"| {mark:<{width}}" for mark in MARKS))
    print(f"{'':<26}" + ("| " + "".join(f"{size:>6} " for size in sizes).ljust(width)) * len(MARKS))
    for attack in attacks:
        if attack == next(iter(EXTRA_ATTACKS)):
            print("-- beyond the standard edits " + "-" * (width * 4 + 7))
        cells = []
        for mark in MARKS:
            values = [
                _rate(results[size]["detected"][attack][mark], results[size]["n"])
                if mark != "c2pa" or c2pa
                else "   n/a"
                for size in sizes
            ]
            cells.append("| " + "".join(f"{value:>6} " for value in values).ljust(width))
        print(f"{attack:<26}" + "".join(cells))
    print()
    print("false positives on unmarked photos (each photo x each edit; fingerprint against the other photos):")
    for size in sizes:
        row = results[size]
        total = row["n"] * len(attacks)
        print(f"  {size}: " + ", ".join(f"{mark} {row['false'][mark]}/{total}" for mark in MARKS))
    print()
    from amari.provenance.fingerprint import MATCH_DISTANCE
    from amari.provenance.watermark import TILE_THRESHOLD

    for size in sizes:
        row = results[size]
        print(
            f"  {size}, the standard edits: watermark z marked min {min(row['z_marked']):.1f} "
            f"(threshold {TILE_THRESHOLD}), "
            f"unmarked max {max(row['z_unmarked']):.1f}; fingerprint distance of copies max "
            f"{max(row['copy_distances'])} (threshold {MATCH_DISTANCE}), unmarked to others min "
            f"{min(row['other_distances'])}; PSNR mean {np.mean(row['psnr']):.1f} dB, "
            f"min {min(row['psnr']):.1f} dB; {row['mark_seconds']:.2f} s to write, {row['check_seconds']:.2f} s to "
            f"verify an image"
        )


def _as_version_1():
    """Write and read as amari did before tile2: the 64 px tile on every image, the faces included."""
    from amari.provenance import tilemark

    return {
        "embed_watermark": lambda rgb, faces=None, face_scale=1.0: tilemark.embed(rgb),
        "read_watermark": _watermark.version_1_read,
    }


def write_and_verify_seconds(photos: list[np.ndarray], work: Path) -> dict:
    """CPU seconds per image to write a file with every mark (`save_png`), to verify it, and to verify the
    photo as it was (a PNG without marks), with the version 1 tile and with tile2."""
    from amari.provenance import png
    from amari.provenance.verification import Verifier

    seconds = {}
    for version, replaced in (("version 1", _as_version_1()), ("tile2", {})):
        saved = {name: getattr(png, name) for name in replaced}
        for name, function in replaced.items():
            setattr(png, name, function)
        try:
            folder = work / version.replace(" ", "")
            registry = folder / "provenance.sqlite"
            png.save_png(photos[0], folder / "warm.png", {"seed": 0}, registries=[registry])
            started = time.process_time()
            paths = [
                png.save_png(rgb, folder / f"{index}.png", {"seed": index}, registries=[registry])
                for index, rgb in enumerate(photos)
            ]
            written = (time.process_time() - started) / len(photos)
            plain = []
            for index, rgb in enumerate(photos):
                plain.append(folder / f"plain{index}.png")
                plain[-1].write_bytes(_png(rgb))
            with Verifier([registry], use_default=False) as verifier:
                verifier.check(paths[0])
                started = time.process_time()
                for path in paths:
                    verifier.check(path)
                marked = (time.process_time() - started) / len(photos)
                started = time.process_time()
                for path in plain:
                    verifier.check(path)
                seconds[version] = (written, marked, (time.process_time() - started) / len(photos))
        finally:
            for name, function in saved.items():
                setattr(png, name, function)
    return seconds


def watermark_checks(count: int, more: bool) -> None:
    from amari.provenance.watermark import embed_watermark
    from amari.testing.photos import face_photos

    faces = face_photos(2 * count, side=512, seed=28)
    pictures = [rgb for _, rgb in photo_set(512)]
    marked_faces = [embed_watermark(rgb) for rgb in faces[:count]]
    marked_pictures = [embed_watermark(rgb) for rgb in pictures]
    print(
        f"\n1. The watermark alone (no registry), detection rate on the marked half and clean photos read as "
        f"marked: {count} + {count} face photos, and the 23 pictures marked and as they were (512²)"
    )
    _watermark.print_attack_table(
        {
            f"{count} face photos, 512²": _watermark.attack_table(faces[:count], marked_faces, faces[count:], more),
            "23 pictures, 512²": _watermark.attack_table(pictures, marked_pictures, pictures, more),
        }
    )
    from amari.provenance import tilemark

    print("\n2. Faces: dlib's descriptor in the original and in the copy, and PSNR")
    for label, originals, marked in (
        (f"{count} face photos, 512²", faces[:count], marked_faces),
        ("23 pictures, 512²", pictures, marked_pictures),
    ):
        versions = {
            "JPEG 90": [_decode(_jpeg(rgb, 90)) for rgb in originals],
            "version 1 tile": [tilemark.embed(rgb) for rgb in originals],
            "tile2": marked,
        }
        _watermark.print_face_shifts(label, _watermark.face_shifts(originals, versions))


def print_times(sizes: list[int], work: Path) -> None:
    print("\n4. CPU seconds per image (12 of the pictures), version 1 tile -> tile2 (ratio):")
    for side in sizes:
        photos = [rgb for _, rgb in photo_set(side)][:12]
        rows = {
            "watermark": (_watermark.timings(photos), ("embed", "read marked", "read unmarked")),
            "file with every mark": (
                write_and_verify_seconds(photos, work / f"timing{side}"),
                ("write", "verify marked", "verify unmarked"),
            ),
        }
        for label, (found, names) in rows.items():
            cells = [
                f"{name} {before:.3f} -> {after:.3f} ({after / before:.2f}x)"
                for name, before, after in zip(names, found["version 1"], found["tile2"])
            ]
            print(f"  {side}², {label}: " + "; ".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="square sizes (default 512 1024)")
    parser.add_argument("--photos", type=int, default=20, help="marked face photos, and as many clean (default 20)")
    parser.add_argument("--candidates", action="store_true", help="also measure dwtDctSvd and RivaGAN at 512²")
    parser.add_argument("--more", action="store_true", help="also harder edits beyond the checks")
    parser.add_argument("--no-extra", action="store_true", help="every mark: only the standard edits")
    args = parser.parse_args()
    if args.photos <= _watermark.OTHERS:
        parser.error(f"--photos must be more than {_watermark.OTHERS} (the averaging attack uses 10 others)")
    attacks = dict(ATTACKS) if args.no_extra else {**ATTACKS, **EXTRA_ATTACKS}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["AMARI_CACHE_DIR"] = str(work / "cache")  # never the user's registry or key
        os.environ.pop("AMARI_C2PA_KEY", None)
        watermark_checks(args.photos, args.more)
        from amari.provenance import credentials

        c2pa = credentials.is_available()
        if c2pa:
            credentials.keygen()
        print(
            f"\n3. Every mark: {len(sources())} real photos from tests/data per size, written with save_png (C2PA: "
            f"{'signed with a fresh amari keygen key' if c2pa else 'c2pa-python not installed'}); "
            f"detection rate of each mark"
        )
        results = {side: run_size(side, work, attacks) for side in args.sizes}
        report(results, attacks, c2pa)
        print_times(args.sizes, work)
    if args.candidates:
        print("\nwatermark alone at 512², the candidates (detection rate; false positives over unmarked x edits):")
        found = candidates()
        print(f"{'attack':<20}" + "".join(f"{name:>12}" for name in found))
        for attack in (*ATTACKS, "false positives"):
            print(f"{attack:<20}" + "".join(f"{100 * found[name][attack]:11.1f}%" for name in found))
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
