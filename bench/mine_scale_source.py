"""The folder source's own time per batch as its folder fills with files it already took: 0, 10,000, 100,000.

For each size a source folder holds that many tiny PNG files the source took in earlier runs (their rows
in the ledger, as mining leaves them), laid out flat or in sub-folders of 1,000 (`day-0000/`, as A1111
writes its outputs), and after them the new files that the timed batches take. Then the source feeds a
serial engine, as `amari mine` does, a batch of 4 at a time; every new file's faces are in the cache
beforehand, so no face detection is timed. What is timed per batch is the feed's own work: looking
for new files, reading, hashing and copying them into incoming/, the ledger, the faces from the cache.

The sizes take turns, one run each per round, so that a busy machine slows them alike. A run's first
batch (its first look lists the whole folder) is left out and reported apart; the runs start once the
filled folders' times are older than the racy window (a run's listing of a folder changed in the last
2 s is made once more, when the window is over).

Prints, per layout and size, the mean time of a batch, and per layout
`folder source at 100k files taken vs none (flat): X.XX×`

    python bench/mine_scale_source.py [--sizes 0 10000 100000] [--rounds 3] [--batches 8]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from amari import embeddings  # noqa: E402
from amari.faces.descriptors import FaceSettings  # noqa: E402
from amari.faces.embeddings import EmbeddingCache, content_hash  # noqa: E402
from amari.mine.engine import FINAL, Engine, FeedContext  # noqa: E402
from amari.mine.folderwatch import RACY_SECONDS  # noqa: E402
from amari.mine.source import FolderSource  # noqa: E402
from amari.storage.sqlite import connect  # noqa: E402
from mine_scale_workspace import label, tiny_png  # noqa: E402

BATCH = 4
PER_FOLDER = 1000  # files per sub-folder in the "days" layout
NEW = 10**9  # tiny_png indices of the new files: apart from the taken ones


def fill(folder: Path, state: Path, size: int, layout: str, new_files: int, settings: FaceSettings) -> None:
    """`size` files taken before (files and ledger rows), then `new_files` new ones with cached faces."""
    folder.mkdir(parents=True)
    source = FolderSource(folder)
    source.open(state)  # the ledger's tables
    source.close()
    rows = []
    for index in range(size):
        relpath = f"day-{index // PER_FOLDER:04d}/{index:06d}.png" if layout == "days" else f"{index:06d}.png"
        path = folder / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        data = tiny_png(index)
        path.write_bytes(data)
        stat = path.stat()
        rows.append((str(folder.resolve()), relpath, stat.st_size, stat.st_mtime_ns, content_hash(data), "", 0.0))
    conn = sqlite3.connect(state, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO folder_source_ledger VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.close()
    cache = EmbeddingCache(connection=connect(state, embeddings.MIGRATIONS))
    newest = folder / (f"day-{size // PER_FOLDER:04d}" if layout == "days" else "")
    newest.mkdir(parents=True, exist_ok=True)
    for k in range(new_files):
        data = tiny_png(NEW + k)
        (newest / f"new-{k:06d}.png").write_bytes(data)
        cache.put(content_hash(data), settings.key, [], (4, 4))
    cache.conn.close()


def settle(folders: list[Path]) -> None:
    """Wait until no folder changed in the last RACY_SECONDS, as in a long run's steady state: a listing
    of a folder changed more recently is made again once that time is over (`amari.mine.folderwatch`)."""
    newest = max(p.stat().st_mtime_ns for folder in folders for p in [folder, *folder.rglob("*")] if p.is_dir())
    time.sleep(max(0.0, newest / 1e9 + RACY_SECONDS + 0.1 - time.time()))


def one_run(folder: Path, state: Path, incoming: Path, batches: int, settings: FaceSettings) -> tuple[float, list]:
    """Seconds of the first batch, and of each of the next `batches`: one run of the source."""
    source = FolderSource(folder)
    source.open(state)
    conn = connect(state, embeddings.MIGRATIONS)
    engine = Engine(streaming=False, cpus=1)
    engine.start(source, FeedContext(incoming, settings, EmbeddingCache(connection=conn), known=lambda _: False))
    seconds = []
    try:
        for _ in range(1 + batches):
            start = time.perf_counter()
            taken = engine.take(BATCH, lambda candidate: FINAL)
            seconds.append(time.perf_counter() - start)
            assert len(taken) == BATCH, "the bench ran out of new files"
            for candidate in taken:  # the miner moves each judged file out of incoming/
                candidate.final.path.unlink()
    finally:
        engine.close()
        conn.close()
    return seconds[0], seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 10_000, 100_000])
    parser.add_argument("--layouts", nargs="+", default=["flat", "days"], choices=["flat", "days"])
    parser.add_argument("--rounds", type=int, default=3, help="runs per size, taking turns with the other sizes")
    parser.add_argument("--batches", type=int, default=8, help="timed batches per run")
    args = parser.parse_args()
    settings = FaceSettings()
    new_files = args.rounds * (1 + args.batches) * BATCH
    runs = [(layout, size) for layout in args.layouts for size in args.sizes]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for layout, size in runs:
            start = time.perf_counter()
            fill(tmp / f"{layout}-{size}", tmp / f"{layout}-{size}.sqlite", size, layout, new_files, settings)
            print(f"filled a {layout} source folder with {size} taken files in {time.perf_counter() - start:.1f} s")
        settle([tmp / f"{layout}-{size}" for layout, size in runs])
        times: dict[tuple[str, int], list[float]] = {run: [] for run in runs}
        first: dict[tuple[str, int], list[float]] = {run: [] for run in runs}
        for _ in range(args.rounds):
            for layout, size in runs:
                name = f"{layout}-{size}"
                incoming = tmp / f"incoming-{name}"
                incoming.mkdir(exist_ok=True)
                opening, batches = one_run(tmp / name, tmp / f"{name}.sqlite", incoming, args.batches, settings)
                first[layout, size].append(opening)
                times[layout, size] += batches

    print(f"batches of {BATCH} new files, {args.rounds} runs of {args.batches} timed batches per size")
    for layout, size in runs:
        mean = statistics.mean(times[layout, size])
        print(
            f"{layout:>5} {size:>7} files taken: {mean * 1000:6.2f} ms per batch "
            f"(median {statistics.median(times[layout, size]) * 1000:.2f} ms); "
            f"a run's first batch (listing the folder) {statistics.mean(first[layout, size]):.2f} s"
        )
    for layout in args.layouts:
        empty = statistics.mean(times[layout, args.sizes[0]])
        largest = statistics.mean(times[layout, args.sizes[-1]])
        print(f"folder source at {label(args.sizes[-1])} files taken vs none ({layout}): {largest / empty:.2f}×")


if __name__ == "__main__":
    main()
