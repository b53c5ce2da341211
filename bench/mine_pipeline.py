"""Serial against streaming mining over the same candidates, in one run.

  (a) the tiny random-weight model on this machine's CPU: generation and the CPU work share the cores,
      so this shows the engine's overhead more than its gain;
  (b) a simulated accelerator: a generator that hands out real face photographs (tests/data, cropped,
      moved and mirrored) after waiting G seconds per batch without using a CPU, G being the measured
      CPU cost C of a batch (watermark, PNG, fingerprint, dlib) — a GPU that takes as long as the CPU
      work around it. The cache folder is a temporary one: no C2PA key, no user registry.

Both engines must leave the same folders; the script checks that too. Machines are noisy: read the
ratios, which are measured in the same run. The last line is (b)'s ratio, with the ideal
(G+C)/max(G,C) beside it.

A run of N generator batches cannot reach the steady-state ideal: the first batch's CPU work waits for
its generation, and the last batch's generation waits for nothing to overlap. So (b) also prints the
ideal for this many batches, N(G+C)/(min(G,C) + N max(G,C)), which the default of 24 policy batches
(12 generator batches) puts at 1.85×.

    python bench/mine_pipeline.py [--batches 24] [--gen-batch 8] [--side 512] [--cpus N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _models import OUT  # noqa: E402
from amari import mine  # noqa: E402
from amari.faces.descriptors import FaceSettings  # noqa: E402
from amari.generate import DiffusersSource  # noqa: E402
from amari.mine import (
    MineConfig,  # noqa: E402
    inspect_generated,  # noqa: E402
)
from amari.storage.layout import ALMOST_SIM, SIM_GROUP, UNKNOWN_PERSON, WorkspaceLayout  # noqa: E402
from amari.testing.photos import PhotoGenerator, face_photos  # noqa: E402

PROMPT = "a photo of a woman"


def config(args, engine: str, model: str, **fields) -> MineConfig:
    options = (("steps", "2"),) if model != "photographs" else ()
    return MineConfig(
        prompt=PROMPT,
        model=model,
        seed=0,
        engine=engine,
        cpus=args.cpus,
        enhance=False,
        images_per_call=args.gen_batch,
        max_batches=args.batches,
        target=10_000,
        options=options,
        **fields,
    )


def mine_once(args, engine: str, model: str, workspace: Path, generate_step=None) -> tuple[float, dict]:
    settings = config(args, engine, model)
    source = DiffusersSource(
        PROMPT, settings.generate_config(), settings.enhance_config(), seed=0, generate_step=generate_step
    )
    began = time.perf_counter()
    mine.run(settings, WorkspaceLayout(workspace), source)
    elapsed = time.perf_counter() - began
    folders = {f: sorted(p.name for p in (workspace / f).iterdir()) for f in (SIM_GROUP, ALMOST_SIM, UNKNOWN_PERSON)}
    return elapsed, folders


def cpu_cost(photos, gen_batch: int) -> float:
    """Seconds of CPU work per generated batch, measured the way the serial engine does it."""
    settings = FaceSettings()
    params = {"prompt": PROMPT, "seed": 0, "steps": 25, "model": "photographs"}
    from PIL import Image

    images = [Image.fromarray(photos[i % len(photos)]) for i in range(gen_batch)]
    inspect_generated(images[0], params, settings)  # models loaded once, outside the timing
    began = time.perf_counter()
    for image in images:
        inspect_generated(image, params, settings)
    return time.perf_counter() - began


def compare(label: str, run) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        serial, serial_folders = run("serial", Path(tmp) / "serial")
        streaming, streaming_folders = run("streaming", Path(tmp) / "streaming")
    same = "same folders" if serial_folders == streaming_folders else "FOLDERS DIFFER"
    judged = sum(len(v) for v in serial_folders.values())
    ratio = serial / streaming
    print(f"{label}: serial {serial:.1f} s, streaming {streaming:.1f} s over {judged} judged images; {same}")
    return ratio, judged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=24, help="policy batches per engine")
    parser.add_argument("--gen-batch", type=int, default=8, help="images the generator makes per batch")
    parser.add_argument("--side", type=int, default=512, help="side of the simulated generator's images")
    parser.add_argument("--cpus", type=int, default=None, help="streaming workers (default: all cores but one)")
    parser.add_argument("--skip-tiny", action="store_true", help="only the simulated accelerator")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["AMARI_CACHE_DIR"] = cache  # the runs' fingerprints never go into the user's registry
        run(args)


def run(args) -> None:
    if not args.skip_tiny:
        from amari.testing.sd import build_tiny_sd

        tiny = OUT / "tiny-sd"
        if not (tiny / "model_index.json").is_file():
            build_tiny_sd(tiny)
        ratio, _ = compare("(a) tiny model on CPU", lambda engine, ws: mine_once(args, engine, str(tiny), ws))
        print(f"(a) streaming vs serial: {ratio:.2f}×")

    photos = face_photos(4 * args.gen_batch, side=args.side)
    cost = cpu_cost(photos, args.gen_batch)
    wait = cost
    print(
        f"(b) CPU cost of a batch of {args.gen_batch} at {args.side}²: C = {cost:.2f} s; "
        f"generator waits G = {wait:.2f} s"
    )

    def simulated(engine, ws):
        return mine_once(args, engine, "photographs", ws, PhotoGenerator(photos, wait=wait))

    ratio, judged = compare("(b) simulated accelerator", simulated)
    ideal = (wait + cost) / max(wait, cost)
    batches = -(-judged // args.gen_batch)
    finite = batches * (wait + cost) / (min(wait, cost) + batches * max(wait, cost))
    print(
        f"streaming vs serial: {ratio:.2f}× (ideal (G+C)/max(G,C) = {ideal:.2f}×; "
        f"{finite:.2f}× for {batches} generator batches)"
    )


if __name__ == "__main__":
    main()
