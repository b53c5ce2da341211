"""amari models list|pull [STUDY.toml | NAME…]: the models a study needs, where they are, and getting them."""

from __future__ import annotations

HELP = "list the models a study needs (present? verified?) and pull the missing ones"
DESCRIPTION = """\
  amari models list [STUDY.toml | NAME…]    every model, where amari expects it, and whether it is
                                            there and verified (size and SHA-256 where known)
  amari models pull [STUDY.toml | NAME…]    download what is missing, with a progress bar and a checksum

Without arguments: the models of configs/amari-2022.toml (when found), else of the default settings.
NAME is a known name (RealESRGAN_x4plus, GFPGANv1.4, shape_predictor_5_face_landmarks, ...), a Hugging
Face id, or a path.

Files go where amari loads them from: known names into the model cache ($AMARI_CACHE_DIR/models,
default ~/.cache/amari/models), Hugging Face ids into the Hugging Face cache ($HF_HOME), dlib's files
into $AMARI_FACE_MODELS. A download whose checksum does not match is deleted. --mirror URL (or
$AMARI_MODEL_MIRROR) fetches known files from URL/FILE_NAME instead of their official sources, e.g. a
local server or a file:// folder; a redirect is followed to the same host only (and from GitHub to its
release files). A download that gets less than 64 kB in --timeout seconds is abandoned, and nothing of
it is kept. Offline (AMARI_OFFLINE, HF_HUB_OFFLINE) nothing is downloaded: one line per missing model
says where to put it. What could not be pulled is said on stderr.

Exit status: 0 when every model needed is there, 1 when one is missing or damaged."""


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=("list", "pull"), help="list the models, or pull the missing ones")
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="STUDY.toml|NAME",
        help="a study config, or model names, ids and paths (default: the 2022 study's models)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also check Hugging Face weights against the hub's SHA-256 (reads every byte)",
    )
    parser.add_argument("--mirror", metavar="URL", help="fetch known files from URL/FILE_NAME (pull)")
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="abandon a download that gets less than 64 kB in this many seconds (pull; default 30)",
    )


def _seconds(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 86400):
        raise argparse.ArgumentTypeError(f"--timeout takes seconds between 0 and 86400, not {text!r}")
    return value


def needs_for(targets: list[str]) -> tuple[str, list]:
    """(what the list is for, the needs) for the command line's targets."""
    from amari.doctor.plan import find_study
    from amari.models.inventory import needs_from_names, needs_from_study

    if not targets:
        config, label, _ = find_study()
        return label, needs_from_study(config)
    configs = [t for t in targets if t.lower().endswith(".toml")]
    names = [t for t in targets if not t.lower().endswith(".toml")]
    needs = [need for path in configs for need in needs_from_study(find_study(path)[0])]
    return ", ".join(targets), _unique(needs + needs_from_names(names))


def _unique(needs: list) -> list:
    seen, kept = set(), []
    for need in needs:
        if (need.kind, need.name, need.role) not in seen:
            seen.add((need.kind, need.name, need.role))
            kept.append(need)
    return kept


def run(args) -> int:
    import sys

    from amari.doctor.render import MODEL_HEADERS, model_rows, print_table
    from amari.errors import ModelError
    from amari.models.inventory import check, pull

    label, needs = needs_for(args.targets)
    print(f"models for {label}")
    statuses = []
    for need in needs:
        status = check(need, verify_hub=args.verify)
        if args.action == "pull" and not status.ok and need.kind != "unset":
            try:
                status = pull(need, mirror=args.mirror, timeout=args.timeout)
                print(f"{need.name}: {status.state} ({status.detail})", flush=True)
            except ModelError as exc:
                print(f"{need.name}: not pulled: {exc}", file=sys.stderr, flush=True)
                status = check(need)
        statuses.append(status)
    print_table(MODEL_HEADERS, model_rows(statuses))
    problems = [s for s in statuses if not s.ok and s.need.required]
    if args.action == "list":  # pull has said why each one it could not get is missing
        for status in problems:
            print(f"{status.need.name} is {status.state}: {status.detail}")
    return 1 if problems else 0
