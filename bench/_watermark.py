"""The watermark alone, on real photos: the geometric and averaging attacks, the face descriptor's shift
and PSNR, and the time to mark and to verify against the version 1 tile (bench/provenance.py prints them)."""

from __future__ import annotations

import time

import numpy as np

from amari.testing import edits

# The required checks: the watermark alone, no registry, marked and clean halves.
GEOMETRY = {
    "none": lambda rgb: rgb,
    "mirror+jpeg75": lambda rgb: edits.jpeg(edits.mirror(rgb), 75),
    "rotate3 (frame kept)": lambda rgb: edits.rotate(rgb, 3),
    "aspect0.9": lambda rgb: edits.resize(rgb, 0.9, 1.0),
    "crop60 (centre)": lambda rgb: edits.centre_crop(rgb, 0.6),
    "screenshot0.6 (1920x1080)": edits.screenshot,
}
# Beyond them, to show the edges honestly.
MORE_GEOMETRY = {
    "crop50 (corner)": lambda rgb: edits.crop(rgb, 0.5, 0.5, 0, 0),
    "rotate8+jpeg75": lambda rgb: edits.jpeg(edits.rotate(rgb, 8), 75),
    "resize0.6+crop15 corner+jpeg85": lambda rgb: edits.jpeg(edits.crop(edits.resize(rgb, 0.6), 0.15, 0.15, 0, 0), 85),
    "rotate90+mirror": lambda rgb: np.ascontiguousarray(np.rot90(edits.mirror(rgb))),
    "aspect0.8+crop80+jpeg75": lambda rgb: edits.jpeg(edits.centre_crop(edits.resize(rgb, 1.0, 0.8), 0.8), 75),
    "screenshot0.45+jpeg80": lambda rgb: edits.jpeg(edits.screenshot(rgb, 0.45), 80),
}
OTHERS = 10  # marked images whose averaged residual is the attacker's estimate


def attack_table(originals: list[np.ndarray], marked: list[np.ndarray], clean: list[np.ndarray], more: bool) -> dict:
    """Detection on the marked half and false positives on the clean half, per edit; then averaging:
    each marked image minus the residual averaged over 10 others, and each clean photo plus it (as it
    comes, and scaled to a mark's energy)."""
    from amari.provenance.watermark import read_watermark

    table = {}
    for name, edit in {**GEOMETRY, **(MORE_GEOMETRY if more else {})}.items():
        found = [read_watermark(edit(image)) for image in marked]
        false = [read_watermark(edit(image)) for image in clean]
        table[name] = (found, false)
    mark_rms = np.sqrt(np.mean([(m.astype(float) - o) ** 2 for m, o in zip(marked, originals)]))
    removed, forged, forged_matched = [], [], []
    for index, image in enumerate(marked):
        estimate = edits.averaged_residual([marked[(index + 1 + k) % len(marked)] for k in range(OTHERS)])
        removed.append(read_watermark(edits.add(image, estimate, -1.0)))
        target = clean[index % len(clean)]
        forged.append(read_watermark(edits.add(target, estimate, 1.0)))
        forged_matched.append(read_watermark(edits.add(target, estimate, mark_rms / np.sqrt(np.mean(estimate**2)))))
    table["minus 10 others' averaged residual"] = (removed, [])
    table["clean + 10 marked images' average"] = ([], forged)
    table["clean + it, scaled to a mark's energy"] = ([], forged_matched)
    return table


def print_attack_table(tables: dict[str, dict]) -> None:
    from amari.provenance.watermark import TILE_THRESHOLD

    print(f"{'edit':<40}" + "".join(f"| {name:<34}" for name in tables))
    print(f"{'':<40}" + "| found     z min  | clean read as marked " * len(tables))
    for edit in next(iter(tables.values())):
        if edit == next(iter(MORE_GEOMETRY)):
            print("-- beyond the standard edits " + "-" * 80)
        cells = []
        for table in tables.values():
            found, false = table.get(edit, ([], []))
            rate = f"{100 * np.mean([r.found for r in found]):5.1f}%" if found else "     -"
            low = f"{min(r.score for r in found):5.1f}" if found else "    -"
            wrong = f"{sum(r.found for r in false)}/{len(false)}" if false else "-"
            cells.append(f"| {rate}  {low:>8}  | {wrong:>8}           ")
        print(f"{edit:<40}" + "".join(cells))
    forgeries = ("clean + 10 marked images' average", "clean + it, scaled to a mark's energy")
    clean = [r.score for t in tables.values() for e, (_, false) in t.items() if e not in forgeries for r in false]
    forged = [r for t in tables.values() for e in forgeries for r in t[e][1]]
    refused = [r for r in forged if r.score >= TILE_THRESHOLD and not r.found]
    print(
        f"  clean photos: z at most {max(clean):.1f} (threshold {TILE_THRESHOLD}); forged: z up to "
        f"{max(r.score for r in forged):.1f}, {len(refused)} of {len(forged)} above the threshold and refused as "
        f"copies at several shifts (second peak at least {min((r.second for r in refused), default=0):.1f})"
    )


def face_shifts(originals: list[np.ndarray], versions: dict[str, list[np.ndarray]]) -> dict:
    """For each version of the photos: the descriptor shift of every face dlib finds in the original
    (matched to the nearest box found in the version), PSNR, and same/different decisions at 0.40 that
    the change flips between the faces."""
    from amari.faces import descriptors

    before = [descriptors.encode(image) for image in originals]
    reference = np.array([face.descriptor for faces in before for face in faces])
    results = {}
    for name, images in versions.items():
        shifts, after = [], []
        for faces, image in zip(before, images):
            found = descriptors.encode(image)
            for face in faces:
                near = min(found, key=lambda other: _box_distance(face.box, other.box), default=None)
                if near is None or _box_distance(face.box, near.box) > 0.3 * (face.box[1] - face.box[3]):
                    shifts.append(np.nan)  # the face is no longer found
                    after.append(np.full(descriptors.DESCRIPTOR_SIZE, np.nan))
                else:
                    shifts.append(float(np.linalg.norm(face.descriptor - near.descriptor)))
                    after.append(near.descriptor)
        moved = np.array(after)
        same_before = descriptors.distance_matrix(reference) <= 0.40
        same_after = descriptors.distance_matrix(np.nan_to_num(moved, nan=1e3)) <= 0.40
        upper = np.triu_indices(len(reference), 1)
        psnr = [
            10 * np.log10(255**2 / max(np.mean((i.astype(float) - o) ** 2), 1e-9)) for i, o in zip(images, originals)
        ]
        results[name] = {
            "shifts": np.array(shifts),
            "flips": int((same_before != same_after)[upper].sum()),
            "pairs": len(upper[0]),
            "psnr": np.array(psnr),
        }
    return results


def _box_distance(a, b) -> float:
    return float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2))


def print_face_shifts(label: str, results: dict) -> None:
    print(f"{label}: {len(next(iter(results.values()))['shifts'])} faces found by dlib in the originals")
    print(f"  {'':<28}descriptor shift: mean   p95    max   lost | flips at 0.40     | PSNR mean    min")
    for name, row in results.items():
        shifts = row["shifts"]
        kept = shifts[~np.isnan(shifts)]
        print(
            f"  {name:<28}{np.mean(kept):21.3f} {np.percentile(kept, 95):6.3f} {np.max(kept):6.3f} "
            f"{int(np.isnan(shifts).sum()):5d} | {row['flips']:4d} of {row['pairs']:<7} | "
            f"{np.mean(row['psnr']):9.1f} {np.min(row['psnr']):6.1f}"
        )


def version_1_read(rgb: np.ndarray):
    """What read_watermark was before tile2: the 64 px tile, then the DWT-DCT-SVD mark."""
    from amari.provenance import tilemark
    from amari.provenance.watermark import _read_legacy

    found = tilemark.read(rgb)
    return found if found.found else _read_legacy(rgb)


def timings(photos: list[np.ndarray]) -> dict:
    """CPU seconds per image to embed, to read a marked image and to read an unmarked one, with the
    version 1 tile (what amari wrote before) and with tile2. CPU time rather than wall time: the
    machine this runs on is shared, and its other work would otherwise land in the figures."""
    from amari.provenance import tilemark
    from amari.provenance.watermark import embed_watermark, read_watermark

    result = {}
    versions = (("version 1", tilemark.embed, version_1_read), ("tile2", embed_watermark, read_watermark))
    for name, embed, read in versions:
        read(embed(photos[0]))  # imports, keys and models load once, outside the figures
        started = time.process_time()
        marked = [embed(photo) for photo in photos]
        embedded = (time.process_time() - started) / len(photos)
        started = time.process_time()
        for image in marked:
            read(image)
        found = (time.process_time() - started) / len(photos)
        started = time.process_time()
        for image in photos:
            read(image)
        result[name] = (embedded, found, (time.process_time() - started) / len(photos))
    return result
