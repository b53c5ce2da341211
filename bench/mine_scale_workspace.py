"""A batch's bookkeeping as the workspace grows: 0, 10,000 and 100,000 files in its folders.

For each size a workspace is filled with that many tiny PNG files (4 % in almost-sim/, the rest in
unknown-person/, each with its row and decision, as mining leaves them) beside a sim-group of 12 real
faces. Then `amari.mine.run` mines batches of 4 real photos (crops of the astronaut in tests/data) from a
source that only copies prepared files into incoming/. Face detection is taken out of the timings: every
candidate's faces are in the workspace's descriptor cache beforehand, so the miner finds them by content
as it does on a second encounter. What is left per batch is the bookkeeping: curation (reconcile), the
group's descriptors, reading and hashing the candidates, the policy, the transaction, the file moves,
the archive and the counts. The source's copying ("generation") is subtracted.

The sizes take turns, a few batches each per round, so that a busy machine slows them alike; the first
batch of each run (opening the workspace and listing every folder) is left out, and reported apart as
the full listing that a run makes at its start, after a user's change (of that folder) and every 60 s.

Prints, per size, the mean bookkeeping time of a batch, and last:
`bookkeeping at 100k files vs empty: X.XX×`

    python bench/mine_scale_workspace.py [--sizes 0 10000 100000] [--rounds 3] [--batches 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from amari.faces import descriptors as face_lib
from amari.faces.descriptors import FaceSettings
from amari.faces.embeddings import EmbeddingCache, FaceEncoder, content_hash, encode_bytes
from amari.mine import MineConfig, MiningProgress, run
from amari.mine.curation import reconcile
from amari.mine.folderwatch import RACY_SECONDS
from amari.mine.records import Commit, Decision, NewImage
from amari.mine.work import Inspected
from amari.mine.workspace import FOLDERS, Workspace, settings_meta
from amari.storage.layout import ALMOST_SIM, SIM_GROUP, UNKNOWN_PERSON, WorkspaceLayout

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
ASTRONAUT_FACE = (76, 265, 166, 175)
MEMBERS = 12  # the sim-group the batches are judged against
BATCH = 4


def astronaut_crops(folder: Path, count: int, rng: np.random.Generator) -> list[Path]:
    """Crops around the astronaut's face: moved, scaled, mirrored, brighter or darker; all different."""
    photo = Image.open(DATA / "astronaut.png").convert("RGB")
    top, right, bottom, left = ASTRONAUT_FACE
    width = right - left
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        half = width * 1.4 * rng.uniform(0.85, 1.2)
        cx = (left + right) / 2 + rng.uniform(-0.15, 0.15) * width
        cy = (top + bottom) / 2 + rng.uniform(-0.15, 0.15) * width
        crop = photo.crop((int(cx - half), int(cy - half), int(cx + half), int(cy + half))).resize((200, 200))
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        path = folder / f"photo_{i:04d}.png"
        ImageEnhance.Brightness(crop).enhance(rng.uniform(0.8, 1.2)).save(path)
        paths.append(path)
    return paths


def tiny_png(index: int) -> bytes:
    """A valid 4×4 grey PNG whose pixels spell `index`, so that every file has its own content."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = index.to_bytes(16, "big")
    rows = b"".join(b"\0" + pixels[4 * r : 4 * r + 4] for r in range(4))
    header = struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class PreparedSource:
    """A feed that copies prepared files into incoming/, one per call, and counts the seconds the copying
    takes (the "generation"); hashing the copy and finding its faces in the cache is the miner's part."""

    description = "prepared photos"

    def __init__(self, files: list[Path]):
        self.files = list(files)
        self.notes: list[str] = []
        self.seconds = 0.0

    def open(self, state_path: Path) -> None:
        pass

    def start(self, engine, context) -> None:
        self.context = context

    def more(self, engine) -> bool:
        if not self.files:
            return False
        start = time.perf_counter()
        path = self.files.pop(0)
        target = self.context.incoming / path.name
        partial = target.with_name(f".{path.name}.part")
        shutil.copyfile(path, partial)
        os.replace(partial, target)
        self.seconds += time.perf_counter() - start
        digest = content_hash(target.read_bytes())
        faces = self.context.cache.get(digest, self.context.settings.key)
        candidate = engine.add_candidate(target.name)
        candidate.final = self.context.accept(target, Inspected(None, digest, faces, (0, 0)), cache=False)
        return True

    def wait_for_more(self) -> bool:
        return False

    def release(self, candidates: list) -> None:
        for candidate in candidates:
            (self.context.incoming / candidate.name).unlink(missing_ok=True)

    def made(self, name: str, digest: str) -> bool:
        return True

    def close(self) -> None:
        pass


class Stopwatch(MiningProgress):
    """The clock and the source's seconds at the end of every batch, and the events."""

    def __init__(self, source: PreparedSource):
        super().__init__(enabled=False)
        self.source = source
        self.marks: list[tuple[float, float]] = []
        self.events: Counter[str] = Counter()

    def batch_done(self, **fields) -> None:
        super().batch_done(**fields)
        self.marks.append((time.perf_counter(), self.source.seconds))
        self.events.update(fields["event"].split("+"))

    def bookkeeping(self) -> list[float]:
        """Seconds per batch without the source's, the first batch (opening, full listing) left out."""
        return [(t1 - t0) - (s1 - s0) for (t0, s0), (t1, s1) in zip(self.marks, self.marks[1:])]


def detect(paths: list[Path], settings: FaceSettings) -> dict[Path, tuple[str, list, tuple[int, int]]]:
    """Each file's content hash, faces and size, found once (dlib) before any timing."""
    found = {}
    for path in paths:
        data = path.read_bytes()
        faces, size = encode_bytes(data, settings, path)
        found[path] = (content_hash(data), faces, size)
    return found


def fill(root: Path, size: int, members: list[Path], faces: dict, settings: FaceSettings) -> None:
    """A workspace with the group, `size` faceless small files, and every candidate's faces cached."""
    with Workspace.open(root, settings_meta(face_settings=settings.key)) as workspace:
        cache = EmbeddingCache(connection=workspace.conn)
        for digest, found, image_size in faces.values():
            cache.put(digest, settings.key, found, image_size)
        change = Commit(batch=0)
        for path in members:
            digest, found, _ = faces[path]
            target = root / SIM_GROUP / path.name
            shutil.copyfile(path, target)
            stat = target.stat()
            descriptor = face_lib.largest(found).descriptor
            change.new_images.append(
                NewImage(
                    target, SIM_GROUP, digest, stat.st_size, stat.st_mtime_ns, 1, descriptor, None, "user", op="none"
                )
            )
            change.decisions.append(Decision(digest, SIM_GROUP, "reference"))
        for index in range(size):
            folder = ALMOST_SIM if index % 25 == 0 else UNKNOWN_PERSON
            target = root / folder / f"small_{index:06d}.png"
            data = tiny_png(index)
            target.write_bytes(data)
            stat = target.stat()
            digest = content_hash(data)
            change.new_images.append(
                NewImage(target, folder, digest, stat.st_size, stat.st_mtime_ns, 0, None, None, "source", op="none")
            )
            change.decisions.append(Decision(digest, folder, "no face found"))
        workspace.commit(change)


def settle(root: Path) -> None:
    """Wait until no folder changed in the last RACY_SECONDS, as in a long run's steady state: a run's
    first listing of a folder changed more recently is made again once that time is over."""
    newest = max((root / folder).stat().st_mtime_ns for folder in FOLDERS) / 1e9
    time.sleep(max(0.0, newest + RACY_SECONDS + 0.1 - time.time()))


def full_listing(root: Path, settings: FaceSettings) -> float:
    """Seconds of one curation pass that lists every folder (a run's first)."""
    with Workspace.open(root, settings_meta(face_settings=settings.key)) as workspace:
        encoder = FaceEncoder(settings, EmbeddingCache(connection=workspace.conn))
        start = time.perf_counter()
        reconcile(workspace, encoder)
        return time.perf_counter() - start


def label(size: int) -> str:
    return f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else str(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3, help="runs per size, taking turns with the other sizes")
    parser.add_argument("--batches", type=int, default=8, help="timed batches per run")
    args = parser.parse_args()
    settings = FaceSettings()
    per_run = (1 + args.batches) * BATCH

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = astronaut_crops(tmp / "photos", MEMBERS + args.rounds * per_run, np.random.default_rng(0))
        faces = detect(photos, settings)
        members, candidates = photos[:MEMBERS], photos[MEMBERS:]
        roots = {size: tmp / f"ws-{size}" for size in args.sizes}
        for size, root in roots.items():
            start = time.perf_counter()
            fill(root, size, members, faces, settings)
            print(f"filled a workspace with {size} files in {time.perf_counter() - start:.1f} s", flush=True)

        times: dict[int, list[float]] = {size: [] for size in args.sizes}
        events: dict[int, Counter[str]] = {size: Counter() for size in args.sizes}
        for round_ in range(args.rounds):
            batch_files = candidates[round_ * per_run : (round_ + 1) * per_run]
            for size, root in roots.items():
                settle(root)
                source = PreparedSource(batch_files)
                stopwatch = Stopwatch(source)
                config = MineConfig(
                    source=f"folder:{tmp}",
                    target=10_000,
                    max_batches=(round_ + 1) * (1 + args.batches),
                    engine="serial",  # nothing made ahead: each batch's time is its own
                )
                run(config, WorkspaceLayout(root), source, stopwatch)
                times[size] += stopwatch.bookkeeping()
                events[size] += stopwatch.events
        listings = {size: full_listing(root, settings) for size, root in roots.items()}

    print(f"batches of {BATCH} real photos, {args.rounds} runs of {args.batches} timed batches per size")
    for size in args.sizes:
        kinds = ", ".join(f"{event} {count}" for event, count in sorted(events[size].items()))
        print(
            f"{size:>7} files: bookkeeping {statistics.mean(times[size]) * 1000:7.1f} ms per batch "
            f"(median {statistics.median(times[size]) * 1000:.1f} ms); full listing {listings[size]:.2f} s; "
            f"events: {kinds}"
        )
    empty, largest = statistics.mean(times[args.sizes[0]]), statistics.mean(times[args.sizes[-1]])
    print(f"bookkeeping at {label(args.sizes[-1])} files vs empty: {largest / empty:.2f}×")


if __name__ == "__main__":
    main()
