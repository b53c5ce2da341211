"""Mining on Ray with 1 and 2 model actors, on a local cluster: does a second GPU double the rate?

The actors are simulated accelerators, as in bench/mine_pipeline.py: each hands out real face
photographs after waiting G seconds per batch without using a CPU. G is set well above the CPU cost
C of a batch (`--ratio`, default 3), so CPU work is not the limit and the rate should follow the
actors. Both runs judge the same candidates; the script checks that they end the same. The last line
is the ratio of the rates, measured in the same run.

    python bench/mine_scale.py [--batches 20] [--gen-batch 8] [--side 256] [--ratio 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from amari import mine  # noqa: E402
from amari.generate import DiffusersSource  # noqa: E402
from amari.mine import MineConfig  # noqa: E402
from amari.storage.layout import ALMOST_SIM, SIM_GROUP, UNKNOWN_PERSON, WorkspaceLayout  # noqa: E402
from amari.testing.photos import PhotoGenerator, face_photos  # noqa: E402
from mine_pipeline import PROMPT, cpu_cost  # noqa: E402


def run(args, actors: int, wait: float, workspace: Path) -> tuple[float, int, dict]:
    settings = MineConfig(
        prompt=PROMPT,
        model="photographs",
        seed=0,
        enhance=False,
        images_per_call=args.gen_batch,
        max_batches=args.batches,
        target=10_000,
        ray="local",
        ray_actors=actors,
    )
    step = PhotoGenerator((4 * args.gen_batch, args.side, 0), wait=wait)
    source = DiffusersSource(PROMPT, settings.generate_config(), None, seed=0, generate_step=step)
    began = time.perf_counter()
    mine.run(settings, WorkspaceLayout(workspace), source)
    elapsed = time.perf_counter() - began
    folders = {f: sorted(p.name for p in (workspace / f).iterdir()) for f in (SIM_GROUP, ALMOST_SIM, UNKNOWN_PERSON)}
    return elapsed, sum(len(v) for v in folders.values()), folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="policy batches per run")
    parser.add_argument("--gen-batch", type=int, default=8, help="images per simulated generator call")
    parser.add_argument("--side", type=int, default=256, help="side of the photographs")
    parser.add_argument("--ratio", type=float, default=3.0, help="G as a multiple of the CPU cost of a batch")
    args = parser.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", os.urandom(16).hex())
    import ray

    cost = cpu_cost(face_photos(args.gen_batch, side=args.side), args.gen_batch)
    wait = args.ratio * cost
    print(
        f"CPU cost of a batch of {args.gen_batch} at {args.side}²: C = {cost:.2f} s; each actor waits G = {wait:.2f} s"
    )
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        rates, ends = {}, []
        with tempfile.TemporaryDirectory() as tmp:
            for actors in (1, 2):
                elapsed, judged, folders = run(args, actors, wait, Path(tmp) / str(actors))
                rates[actors] = judged / elapsed
                ends.append(folders)
                print(f"{actors} actor(s): {judged} judged in {elapsed:.1f} s, {rates[actors]:.2f} images/s")
    finally:
        ray.shutdown()
    print("same folders" if ends[0] == ends[1] else "FOLDERS DIFFER")
    print(f"2 actors vs 1: {rates[2] / rates[1]:.2f}×")


if __name__ == "__main__":
    main()
