"""amari study STUDY.toml: mine, audit, select, prepare, train, evaluate and report, resumable."""

from __future__ import annotations

HELP = "run a whole study from its TOML config: mine → audit → select → prepare → train → evaluate → report"
DESCRIPTION = """\
Runs every step of the study in order. A step whose outputs are complete for the same settings is
skipped, so an interrupted study picks up where it stopped; a step whose settings changed is run again
(and so are the steps after it). Every step writes under the config's [study] out folder:

  OUT/mine/            the miner's workspace (sim-group/, almost-sim/, unknown-person/, archive.csv;
                       identity-NN/sim-group/ and identity-NN/almost-sim/ with [mine] identities = K)
  OUT/audit/           the leakage audit, when [audit] gallery names a gallery of real photos (a flag
                       stops the study before training unless [audit] stop = false)
  OUT/groups/NAME/     the training groups picked from the sim-group
  OUT/prepared/NAME/   their training images (random square crops)
  OUT/train/NAME/      embeddings, checkpoints, samples and metrics of each group
  OUT/results/         the evaluation grid, results.csv, and report/index.html

See configs/amari-2022.toml for the original study as a config."""


def add_arguments(parser) -> None:
    from amari.study.stages import STEPS

    parser.add_argument("config", metavar="STUDY.toml", nargs="?", help="the study config")
    parser.add_argument(
        "--demo",
        metavar="DIR",
        help="run a toy-scale study offline in DIR instead: a tiny random-weight model built "
        "locally and bundled real face photos as the miner's source (a few minutes)",
    )
    parser.add_argument("--until", choices=STEPS, help="stop after this step")
    parser.add_argument("--redo", choices=STEPS, help="run this step (and the ones after it) again")


def run(args) -> int:
    from amari.errors import UsageError
    from amari.study.config import load_study
    from amari.study.run import run_study

    if (args.config is None) == (args.demo is None):
        raise UsageError("give a STUDY.toml, or --demo DIR for the toy-scale study")
    if args.demo is not None:
        from amari.study.demo import write_demo

        args.config = write_demo(args.demo)
        print(f"demo study config: {args.config}")
    config = load_study(args.config)
    outcome = run_study(config, until=args.until, redo=args.redo, log=print)
    print(f"study {config.study.name}: {', '.join(f'{s} {v}' for s, v in outcome.steps.items())}")
    if outcome.report is not None:
        print(f"report: {outcome.report}")
    return 0
