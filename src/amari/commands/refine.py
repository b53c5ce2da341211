"""amari refine STUDY.toml: identity-guided mining, rounds of mining with the identity learned so far."""

from __future__ import annotations

HELP = "identity-guided mining: mine with the identity learned so far, train on the group, repeat"
DESCRIPTION = """\
Rounds over the study's workspace (OUT/mine/), with its [mine], [train] and [prepare] settings and its
[refine] table (the options below change that table's values for this run):

  round 1 mines --batches batches with the plain prompt, then trains an identity on the sim-group;
  round R mines with the identity of round R-1 (its name in the prompt where the init word stood, its
  embedding and/or LoRA loaded), measures how many of those fresh candidates join the group and how far
  they are from it, and trains the next identity on the grown group, from the last one (--scratch: anew).

It stops when a round's candidates reach --target-acceptance and --target-distance, when the miner can
mine no more, or after --rounds rounds. OUT/refine/rounds.csv has a row per round (candidates, accepted,
acceptance, group and fresh means, head-pose spread, seconds per accepted image), rounds.png its chart,
round-NN/train/ each identity (NAME-rR files). Run it again to resume after a crash or Ctrl-C."""


def add_arguments(parser) -> None:
    from amari.config.options import add_options
    from amari.refine import RefineConfig

    parser.add_argument("config", metavar="STUDY.toml", help="the study config whose workspace is refined")
    add_options(parser, RefineConfig, given_only=True)
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args) -> int:
    import sys

    from amari import mine, refine
    from amari.config.options import given
    from amari.errors import UsageError
    from amari.study.config import load_refine
    from amari.study.config import replace as replace_section
    from amari.study.stages import refine_rounds

    study = load_refine(args.config)
    changes = given(refine.RefineConfig, args)
    if "rounds" not in changes and not study.refine.rounds:
        raise UsageError(f"{args.config} asks for no rounds ([refine] rounds = 0): set it, or pass --rounds R")
    study = replace_section(study, "refine", **changes)
    study.layout.root.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    with mine.MiningProgress(enabled=not args.quiet) as progress:
        result = refine_rounds(study, log, progress)
    print(result.table())
    print(f"rounds: {study.layout.refine.rounds_csv}")
    return 0
