"""What the workbench costs the miner: the live numbers it publishes, and a browser watching them.

Mines the same folder of real face photos (`amari.testing.photos.face_photos`, the six people of the
sample photo, the first one to mine) into fresh workspaces, round after round, three ways:

  quiet      the miner without its status file (`WORKSPACE/progress.json` never written)
  published  as `amari mine` runs: the status file replaced at each step
  watched    the same, while `amari serve` runs in this process with a live page's event stream open

and prints each way's mean run time (wall clock, and the CPU time of this process: the serial engine
does all the miner's work here; for `watched` the server's threads count too) and its ratio to `quiet`,
measured in the same run, then what one publish costs and how many a batch makes.

    python bench/serve_status.py [--photos 24] [--rounds 3] [--poll 1.0]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from amari import mine
from amari.storage import status
from amari.storage.layout import ServeLayout, WorkspaceLayout
from amari.testing.photos import face_photos


class Quiet(mine.MiningProgress):
    def publish_to(self, path) -> None:
        pass


class Counting(mine.MiningProgress):
    publishes = 0

    def _publish(self) -> None:
        if self._status is not None:
            Counting.publishes += 1
        super()._publish()


def mine_once(photos: Path, reference: Path, workspace: Path, progress) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, batches) of one run."""
    config = mine.MineConfig(source=f"folder:{photos}", reference=(reference,), engine="serial")
    began, cpu = time.perf_counter(), time.process_time()
    result = mine.run(config, WorkspaceLayout(workspace), mine.FolderSource(photos), progress)
    return time.perf_counter() - began, time.process_time() - cpu, result.batches


def watching(workspace: Path, poll: float):
    """`amari serve` on the workspace with one event stream open, read as a browser reads it."""
    from amari.serve import ServeConfig, Server

    workspace.mkdir(parents=True)
    server = Server(ServeConfig(port=0, poll=poll), ServeLayout(WorkspaceLayout(workspace)))
    threading.Thread(target=server.serve, daemon=True).start()
    events = [0]

    def read():
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("GET", "/api/events?panel=1", headers={"Authorization": f"Bearer {server.token}"})
        response = conn.getresponse()
        while line := response.readline():
            events[0] += line.startswith(b"event:")

    threading.Thread(target=read, daemon=True).start()
    return server, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=24, help="photos in the source folder")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each way")
    parser.add_argument("--poll", type=float, default=1.0, help="the server's --poll")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amari-bench-serve-") as name:
        scratch = Path(name)
        photos = scratch / "photos"
        photos.mkdir()
        pictures = face_photos(args.photos + 1, side=256, seed=11)
        for index, rgb in enumerate(pictures[1:]):
            Image.fromarray(rgb).save(photos / f"photo-{index:03d}.png")
        reference = scratch / "reference.png"
        Image.fromarray(pictures[0]).save(reference)
        mine_once(photos, reference, scratch / "warm-up", Quiet(enabled=False))  # dlib's models, the imports

        times: dict[str, list[tuple[float, float]]] = {"quiet": [], "published": [], "watched": []}
        events = batches = 0
        for round_ in range(args.rounds):
            for way in times:
                workspace = scratch / f"{way}-{round_}"
                if way == "watched":
                    server, seen = watching(workspace, args.poll)
                    wall, cpu, batches = mine_once(photos, reference, workspace, Counting(enabled=False))
                    server.stop()
                    events += seen[0]
                else:
                    progress = Quiet(enabled=False) if way == "quiet" else Counting(enabled=False)
                    wall, cpu, batches = mine_once(photos, reference, workspace, progress)
                times[way].append((wall, cpu))

        base_wall = statistics.mean(w for w, _ in times["quiet"])
        base_cpu = statistics.mean(c for _, c in times["quiet"])
        print(f"mining {args.photos} photos, {batches} batches, serial engine; {args.rounds} rounds each")
        for way, values in times.items():
            wall, cpu = statistics.mean(w for w, _ in values), statistics.mean(c for _, c in values)
            print(
                f"  {way:9s} wall {wall:7.3f} s ({wall / base_wall:5.3f}× quiet)   "
                f"CPU {cpu:7.3f} s ({cpu / base_cpu:5.3f}× quiet)"
            )
        print(f"  the watched runs' event streams carried {events} events (--poll {args.poll})")

        record = {"batch": 1, "event": "accept", "judged_per_s": 1.5, "running": True, "source": "folder:x"}
        target = scratch / "progress.json"
        began, cpu, count = time.perf_counter(), time.process_time(), 2000
        for _ in range(count):
            status.publish(target, record)
        each, each_cpu = (time.perf_counter() - began) / count, (time.process_time() - cpu) / count
        per_batch = Counting.publishes / max(1, 2 * args.rounds * batches)
        print(
            f"one publish: {each * 1e6:.0f} µs ({each_cpu * 1e6:.0f} µs CPU); {per_batch:.1f} per batch, "
            f"{each * per_batch * 1e3:.2f} ms a batch"
        )


if __name__ == "__main__":
    main()
