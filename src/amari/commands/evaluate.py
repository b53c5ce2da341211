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
    from amari.config.options import add_options
    from amari.evaluate import EvaluateConfig

    parser.add_argument("--config", required=True, metavar="STUDY.toml", help="the study config")
    add_options(parser, EvaluateConfig, given_only=True)


def run(args) -> int:
    from amari import evaluate
    from amari.config.options import given
    from amari.models.licences import licence_note
    from amari.progress import progress_bar
    from amari.study.config import load_study, replace

    config = load_study(args.config)
    changes = given(evaluate.EvaluateConfig, args)
    if changes:
        config = replace(config, "evaluate", **changes)
    note = licence_note(config.evaluate.model, config.evaluate.biometric_licence)
    if note:
        print(note)
    with progress_bar(len(evaluate.plan_cells(config.evaluate)), "evaluating") as advance:
        result = evaluate.run(
            config.evaluate, config.layout, on_progress=lambda what, _cell: advance() if what != "generate" else None
        )
    found = sum(c.face_found for c in result.cells)
    print(
        f"{len(result.cells)} cells in {result.csv}: {result.generated} generated, {result.scored} scored, "
        f"{result.kept} already done; a face found in {found}"
    )
    return 0
