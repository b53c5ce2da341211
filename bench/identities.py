"""Identity assignment on real photos: amari's miner against Chinese Whispers and DBSCAN, in one run.

The photos: every person of tests/data/people (twelve people, one to eight photos each) and, as
strangers with one photo each, the six people of t1.jpg, Tom Hanks and the astronaut: 65 faces of 20
people. They are given to `amari mine --identities K` as a folder source (K = 20, so that founding
never closes) in name order, the order a folder of photos sorted by person gives them, and again in
shuffled orders. The references cluster the very descriptors the miner recorded in its workspace:
dlib's Chinese Whispers at 0.5 (its face_clustering.py example) and DBSCAN with eps 0.5 and min 2
(over face_recognition descriptors; `amari.faces.clusters.dbscan` follows scikit-learn's rule).

Scores: pairwise precision (of the pairs of faces put in one identity, the share that are one person)
and recall (of the pairs that are one person, the share put in one identity); a face in no identity
pairs with nobody. Also the number of identities formed (clusters of two or more faces) against the
people with two or more photos. The check: amari's precision at least the best reference's (the
reference with the higher precision, then recall), at a recall within 0.1 of it.

    python bench/identities.py [--shuffles 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from amari.cli import main
from amari.faces import clusters
from amari.storage.sqlite import from_blob
from amari.study.demo import SAMPLE_FACES

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SEPARATOR = "__"  # the folder source names a file from a sub-folder PERSON__FILE


def photo_folder(folder: Path, shuffle: random.Random | None = None) -> None:
    """The photos under `folder`, one sub-folder per person; shuffled: one folder, random name prefixes."""
    items: list[tuple[str, str, Image.Image | Path]] = []
    for person in sorted((DATA / "people").iterdir()):
        items += [(person.name, path.name, path) for path in sorted(person.glob("*.jpg"))]
    photo = Image.open(DATA / "t1.jpg").convert("RGB")
    for index, (top, right, bottom, left) in enumerate(SAMPLE_FACES):
        margin = (bottom - top) // 2 + 20
        crop = photo.crop((max(0, left - margin), max(0, top - margin), right + margin, bottom + margin))
        items.append((f"t1-person{index}", "face.png", crop))
    items += [
        ("tom-hanks", "face.png", DATA / "Tom_Hanks_54745.png"),
        ("astronaut", "face.png", DATA / "astronaut.png"),
    ]
    if shuffle is not None:
        shuffle.shuffle(items)
    for position, (person, name, content) in enumerate(items):
        target = folder / (f"{position:03d}-{person}" if shuffle else person) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copy(content, target)
        else:
            content.save(target)


def truth_of(name: str) -> str:
    person = name.split(SEPARATOR)[0]
    return person.split("-", 1)[1] if person[:3].isdigit() else person


def mine(folder: Path, workspace: Path, identities: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(descriptors, true labels, amari's labels, seconds) of every face the miner recorded."""
    started = time.perf_counter()
    args = ["mine", "--workspace", str(workspace), "--source", f"folder:{folder}", "--identities", str(identities)]
    with contextlib.redirect_stdout(io.StringIO()):  # the miner's summary
        assert main([*args, "--quiet"]) == 0
    seconds = time.perf_counter() - started
    conn = sqlite3.connect(workspace / "mine.sqlite")
    rows = conn.execute(
        "SELECT name, folder, descriptor FROM images WHERE descriptor IS NOT NULL ORDER BY id"
    ).fetchall()
    conn.close()
    descriptors = np.array([from_blob(blob) for _, _, blob in rows])
    truth = np.array([truth_of(name) for name, _, _ in rows])
    labels = np.array([int(f.split("/")[0].split("-")[1]) if f.endswith("/sim-group") else -1 for _, f, _ in rows])
    return descriptors, truth, labels, seconds


def line(name: str, scores: clusters.PairwiseScores, identities: int) -> str:
    return f"{name:<28} {scores.precision:9.3f} {scores.recall:7.3f} {identities:11d}"


def formed(labels: np.ndarray) -> int:
    return len(clusters.clusters(labels, min_size=2))


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shuffles", type=int, default=3, help="runs on shuffled orders besides name order")
    parser.add_argument("--identities", type=int, default=20, help="K given to the miner")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        photo_folder(root / "photos")
        descriptors, truth, amari, seconds = mine(root / "photos", root / "ws", args.identities)
        people = sum(1 for person in set(truth) if (truth == person).sum() >= 2)
        print(f"{len(truth)} faces of {len(set(truth))} people; {people} people with two or more photos")
        print(f"amari mine took {seconds:.1f} s (this machine, dlib included)\n")
        print(f"{'method':<28} {'precision':>9} {'recall':>7} {'identities':>11}")
        references = {
            "Chinese Whispers (0.5)": clusters.chinese_whispers(descriptors, 0.5),
            "DBSCAN (eps 0.5, min 2)": clusters.dbscan(descriptors, 0.5, 2),
        }
        scored = {name: clusters.pairwise_scores(labels, truth) for name, labels in references.items()}
        for name, labels in references.items():
            print(line(name, scored[name], formed(labels)))
        mined = clusters.pairwise_scores(amari, truth)
        print(line("amari (name order)", mined, formed(amari)))
        for seed in range(args.shuffles):
            folder = root / f"shuffled-{seed}"
            photo_folder(folder, random.Random(seed))
            _, shuffled_truth, labels, _ = mine(folder, root / f"ws-{seed}", args.identities)
            print(
                line(f"amari (shuffled, seed {seed})", clusters.pairwise_scores(labels, shuffled_truth), formed(labels))
            )
    best_name, best = max(scored.items(), key=lambda item: (item[1].precision, item[1].recall))
    holds = mined.precision >= best.precision and mined.recall >= best.recall - 0.1
    print(
        f"\nbest reference: {best_name}; amari (name order) precision {mined.precision:.3f} vs {best.precision:.3f}, "
        f"recall {mined.recall:.3f} vs {best.recall:.3f} (within 0.1: {mined.recall >= best.recall - 0.1}): "
        f"{'holds' if holds else 'does not hold'}"
    )


if __name__ == "__main__":
    main_bench()
