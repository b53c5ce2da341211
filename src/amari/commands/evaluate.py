"""amari evaluate --config STUDY.toml: the study's prompt × command × group grid, generated and scored."""

from __future__ import annotations

HELP = "generate and score the study's prompt × command × group image grid (resumable)"
DESCRIPTION = """\
For every prompt × command × group of the study config, generate one image (trained groups: the
subject word replaced by the group's embedding token; ctrl: replaced by the init word, no embedding)
and score it against the sim-group: sim-score (mean dlib face distance), face found or not, number of
faces and head yaw. Where dlib's HOG detector finds no face, its CNN detector looks again (reported
apart). With --arcface MODEL.onnx, an ArcFace cosine similarity is added as a second opinion.

Writes RESULTS/results.csv (one row per cell), RESULTS/images/GROUP/*.png (watermarked, with their
parameters) and RESULTS/manifest.json. Cells already finished are not generated again."""


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, metavar="STUDY.toml", help="the study config")
    parser.add_argument("--results", metavar="DIR", help="results folder (default: the study's OUT/results)")
    parser.add_argument("--sim-group", metavar="DIR", help="faces to score against (default: the miner's sim-group)")
    parser.add_argument("--arcface", metavar="MODEL.onnx", help="an ArcFace ONNX model: a second identity score")
    parser.add_argument("--no-cnn", action="store_true",
                        help="skip the second look with dlib's CNN detector where HOG found no face")


def overrides(args) -> dict:
    from pathlib import Path

    values = {}
    if args.results:
        values["results"] = Path(args.results).resolve()
    if args.sim_group:
        values["sim_group"] = Path(args.sim_group).resolve()
    if args.arcface:
        values["arcface_model"] = Path(args.arcface).resolve()
    if args.no_cnn:
        values["cnn_second_pass"] = False
    return values


def run(args) -> int:
    from amari.progress import progress_bar
    from amari.study.config import load_study, replace
    from amari.study.evaluate import evaluate, plan_cells

    config = load_study(args.config)
    changes = overrides(args)
    if changes:
        config = replace(config, "evaluate", **changes)
    with progress_bar(len(plan_cells(config)), "evaluating") as advance:
        result = evaluate(config, on_progress=lambda what, _cell: advance() if what != "generate" else None)
    found = sum(c.face_found for c in result.cells)
    print(f"{len(result.cells)} cells in {result.csv}: {result.generated} generated, {result.scored} scored, "
          f"{result.kept} already done; a face found in {found}")
    return 0
