"""The refinement loop's overhead per round beyond mining and training, and the cluster start's clustering
against describing one face, all measured in the same run.

A. `amari refine` runs --rounds rounds on a random-weight model (tiny by default), its group seeded with
   real photos of one person; each round's mining and training seconds come from its rounds.csv. What
   remains of the round's wall time is the loop's own work: measuring the round (sim-scores, the group's
   pose spread), preparing the training images, refine.json, rounds.csv and its chart (and, once per
   process, importing what these need).
B. Those pieces timed alone on the finished workspace: measuring a round with no pose known (the first
   round) and with every member's pose cached (later rounds), and writing the table and the chart.
C. The cluster start: Chinese Whispers and DBSCAN over the descriptors of --faces real photos, against
   describing one face with dlib (what every candidate costs the miner anyway).
D. Guided generation: a batch generated with an IP-Adapter (16 image tokens, as the plus-face variants
   give; random weights, a small image encoder) against the same batch without it, on the same model.

Prints seconds and ratios. On the tiny model mining and training are a small fraction of what they are at
full size, so the overhead's share printed here is an upper bound of the share on a real model. On a GPU,
`--full --method lora --steps 500` times a round's parts at full size with random weights: its mining, 500
LoRA steps, the loop's own work, and generation with and without the IP-Adapter.

    python bench/refine.py [--rounds 2] [--batches 1] [--steps 4] [--method ti] [--faces 32] [--full | --model PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _models import model_folder

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def study_toml(folder: Path, model: str, args) -> Path:
    references = sorted((DATA / "people" / "obama").glob("*.jpg"))
    size = 512 if args.full else 64
    path = folder / "study.toml"
    path.write_text(f"""
[study]
name = "bench"
out = {json.dumps(str(folder / "study"))}
model = {json.dumps(model)}

[mine]
prompt = "a photo of a woman"
reference = {json.dumps([str(p) for p in references])}
seed = 1
preset = "fast"
steps = {25 if args.full else 2}
width = {size}
height = {size}
images_per_call = 4
enhance = false
engine = "serial"

[refine]
rounds = {args.rounds}
batches = {args.batches}
steps = {args.steps}
method = "{args.method}"

[prepare]
size = {size}
seed = 1

[train]
resolution = {size}
repeats = 1
sample_seeds = [1]
sample_steps = 1
""")
    return path


def timed(function, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def loop_overhead(folder: Path, args) -> Path:
    from amari.study.config import load_refine
    from amari.study.stages import refine_rounds

    study = load_refine(study_toml(folder, model_folder(args), args))
    began = time.perf_counter()
    result = refine_rounds(study, lambda message: None)
    wall = time.perf_counter() - began
    work = sum(r.mine_seconds + r.train_seconds for r in result.rounds)
    rounds = len(result.rounds)
    print(f"A. {rounds} rounds in {wall:.2f} s: mining and training {work:.2f} s")
    for r in result.rounds:
        print(f"   round {r.round}: mining {r.mine_seconds:.2f} s, training {r.train_seconds:.2f} s")
    overhead = (wall - work) / rounds
    share = overhead / (work / rounds)
    print(f"   the loop's own work per round: {overhead:.3f} s = {share:.1%} of mining and training")
    return study.layout.refine


def pieces(layout) -> None:
    import shutil

    from amari import prepare
    from amari.faces.settings import FaceSettings
    from amari.mine import WorkspaceView
    from amari.refine.measure import PoseCache, round_figures
    from amari.report import chart_refinement
    from amari.storage.layout import PrepareLayout
    from amari.storage.rounds import read_rounds, write_rounds

    view, settings = WorkspaceView(layout.workspace), FaceSettings()
    last = view.state().batch
    cold = timed(lambda: round_figures(view, 0, last, settings, PoseCache()))
    poses = PoseCache()
    round_figures(view, 0, last, settings, poses)
    warm = timed(lambda: round_figures(view, 0, last, settings, poses))
    rounds = read_rounds(layout.rounds_csv)
    table = timed(lambda: write_rounds(layout.rounds_csv, rounds))
    chart = timed(lambda: chart_refinement(rounds, layout.chart), repeat=3)
    members = round_figures(view, 0, last, settings, poses)["group_size"]
    out = layout.root / "bench-prepared"

    def prepared():
        shutil.rmtree(out, ignore_errors=True)
        prepare.run(prepare.PrepareConfig(size=64, seed=1), PrepareLayout(layout.workspace.sim_group, out))

    images = timed(prepared, repeat=3)
    print(f"B. measuring a round ({members} members): {cold * 1000:.1f} ms with no pose known, ", end="")
    print(f"{warm * 1000:.1f} ms with every pose cached")
    print(f"   preparing the training images: {images * 1000:.1f} ms")
    print(f"   rounds.csv {table * 1000:.2f} ms, its chart {chart * 1000:.1f} ms")


def clustering(count: int) -> None:
    from amari.faces import descriptors as face_lib
    from amari.mine.start import CHINESE_WHISPERS, CLUSTER, DBSCAN, StartConfig, found_clusters
    from amari.storage.images import load_rgb

    paths = sorted((DATA / "people").glob("*/*.jpg"))
    images = [load_rgb(path) for path in paths]
    describe = timed(lambda: face_lib.encode(images[0]), repeat=3)
    found = [face_lib.encode(image) for image in images]
    vectors = np.array([faces[0].descriptor for faces in found if faces])
    vectors = np.resize(vectors, (count, vectors.shape[1]))  # repeated photos stand for more candidates
    print(f"C. describing one face (dlib, HOG + 128-d): {describe * 1000:.1f} ms")
    for method in (CHINESE_WHISPERS, DBSCAN):
        config = StartConfig(CLUSTER, candidates=count, clustering=method)
        seconds = timed(lambda config=config: found_clusters(vectors, config))
        print(f"   {method} over {count} faces: {seconds * 1000:.2f} ms = {seconds / describe:.3f} face descriptions")


def guided_generation(args) -> None:
    from _models import OUT
    from amari.generate import GenerateConfig, IpAdapter, generate, make_guide
    from amari.storage.images import load_rgb
    from amari.testing.ip_adapter import build_tiny_ip_adapter

    model = model_folder(args)
    folder = OUT / f"ip-adapter-{Path(model).name}"
    weights = next(folder.glob("models/*.safetensors"), None) or build_tiny_ip_adapter(folder, model, queries=16)
    photos = sorted((DATA / "people" / "obama").glob("*.jpg"))
    guide = make_guide([load_rgb(path) for path in photos], [path.name for path in photos])
    size = 512 if args.full else 64
    config = GenerateConfig(model=model, steps=25 if args.full else 4, batch_size=4, width=size, height=size)
    seeds = [1, 2, 3, 4]

    def batch(adapter) -> float:
        return generate("a photo of a woman", seeds=seeds, config=config.replace(ip_adapter=adapter), progress=False)

    adapter = IpAdapter(str(weights), 0.5, guide)
    batch(None), batch(adapter)  # loads the model and the adapter, computes the guide's embedding once
    plain = statistics.median(batch(None).seconds for _ in range(3))
    guided = statistics.median(batch(adapter).seconds for _ in range(3))
    print(f"D. a batch of 4 at {size} px, {config.steps} steps: {plain:.2f} s plain, {guided:.2f} s guided ", end="")
    print(f"= {guided / plain:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batches", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4, help="training steps per round")
    parser.add_argument("--method", default="ti", choices=("ti", "lora", "pivotal"), help="what each round learns")
    parser.add_argument("--faces", type=int, default=32, help="faces the cluster start clusters")
    parser.add_argument("--full", action="store_true", help="SD 1.5's architecture, random weights, 512 px (GPU)")
    parser.add_argument("--model", help="any Stable Diffusion model amari can load")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        layout = loop_overhead(Path(folder), args)
        pieces(layout)
    clustering(args.faces)
    guided_generation(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
