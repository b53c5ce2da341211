"""amari doctor [STUDY.toml]: is this machine ready for the study, are its models here, how long will it take."""

from __future__ import annotations

HELP = "check the setup, the models and the time a study will take (times one candidate per stage)"
DESCRIPTION = """\
Checks, in order, and prints a table for each:

  environment   Python, torch, CUDA and the GPU (memory, bf16/fp16), attention kernels (SDPA), dlib,
                free disk space for the workspace and the model caches
  memory        per model family (SD 1.x, SD 2.x, SDXL, FLUX.1), the GPU memory generation and training
                need (estimated from parameter counts), with model CPU offload, and whether this GPU has it
  models        every model the study needs, where amari expects it, present and verified
  stage times   when every model is here: one candidate through each mining stage (generate, enhance,
                detect, descriptor, write), one training step per method ([train] methods) and one
                evaluation image, each after an untimed warm-up run
  estimate      from those times and the config: time to the target group size, to train every group
                with every method, to evaluate the grid, and to run the whole study, with the
                assumptions it makes

Without STUDY.toml it checks configs/amari-2022.toml when it can find it, else the default settings
(no estimate). --timing-steps N times generation at 1 and N steps and extrapolates to the config's
steps: a CPU can then size a 250-step study in minutes.

Exit status: 0 when everything the config needs is here; 1, naming what, when a model is missing or
damaged or a check fails (`amari models pull STUDY.toml` fetches missing models)."""


def add_arguments(parser) -> None:
    parser.add_argument("config", metavar="STUDY.toml", nargs="?", help="the study to check (default: the 2022 study)")
    parser.add_argument("--no-timing", action="store_true", help="check the setup and the models only")
    parser.add_argument(
        "--timing-steps",
        type=int,
        metavar="N",
        help="time generation at 1 and N denoising steps and extrapolate (default: the config's)",
    )
    parser.add_argument(
        "--acceptance",
        type=float,
        metavar="RATE",
        help="share of candidates that join the sim-group (default: the 2022 study's, 312/4200)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")


def run(args) -> int:
    from amari.doctor.estimate import ACCEPTANCE_2022
    from amari.doctor.plan import find_study, plan_from_study
    from amari.doctor.probes import environment, hub_cache
    from amari.doctor.render import MODEL_HEADERS, model_rows, print_table
    from amari.errors import AmariError, ModelError, UsageError
    from amari.models.inventory import check, needs_from_study
    from amari.storage.layout import cache_root

    if args.timing_steps is not None and args.timing_steps < 2:
        raise UsageError("--timing-steps must be at least 2")
    acceptance = ACCEPTANCE_2022 if args.acceptance is None else args.acceptance
    if not 0 < acceptance <= 1:
        raise UsageError(f"--acceptance must be in (0, 1], not {args.acceptance}")
    config, label, from_file = find_study(args.config)
    plan = plan_from_study(config) if from_file else None  # the default settings have no grid to estimate

    def show(title: str, headers: list[str], rows: list[list[str]]) -> None:
        print(f"\n{title}")
        print_table(headers, rows, args.markdown)

    print(f"amari doctor: {label}")

    # 1. The machine.
    folders = {"model cache": cache_root(), "Hugging Face cache": hub_cache()}
    if plan is not None:
        folders = {"workspace": plan.out, **folders}
    checks = environment(config.study.device, folders)
    show("environment", ["check", "status", "detail"], [[c.name, c.status, c.detail] for c in checks])
    from amari.doctor.memory import HEADERS, gpu_total_gib, memory_rows

    show("memory (estimated from parameter counts, native size, batch 1)", HEADERS, memory_rows(gpu_total_gib()))

    # 2. The models.
    statuses = [check(need) for need in needs_from_study(config)]
    show("models", MODEL_HEADERS, model_rows(statuses))
    missing = [s for s in statuses if s.need.required and not s.ok]
    failed = [c for c in checks if c.status == "fail"]

    # 3. Stage times and the estimate, when everything is here.
    reasons = [
        ("--no-timing", args.no_timing),
        ("no study config", plan is None),
        ("a model is missing", missing),
        ("a check failed", failed),
    ]
    why = next((reason for reason, holds in reasons if holds), None)
    if why is not None:
        print(f"\nstage times: not measured ({why})")
    else:
        _time_and_estimate(plan, args.timing_steps, acceptance, show)

    if missing:
        names = ", ".join(f"{s.need.name} ({s.state})" for s in missing)
        pull = f"amari models pull {args.config or ''}".rstrip()
        raise ModelError(f"the study needs {names}: see the models table, or run `{pull}`")
    if failed:
        raise AmariError("; ".join(f"{c.name}: {c.detail}" for c in failed))
    return 0


def _time_and_estimate(plan, timing_steps: int | None, acceptance: float, show) -> None:
    """Time each stage once, then print the stage times, the estimate and its assumptions."""
    import sys

    from amari.doctor.estimate import estimate
    from amari.doctor.probes import disk_check, existing_parent, machine_label
    from amari.doctor.render import duration
    from amari.doctor.timing import time_study
    from amari.errors import AmariError, describe_failure

    try:
        timings = time_study(plan, timing_steps, log=lambda m: print(m, file=sys.stderr, flush=True))
    except OSError as exc:  # a full disk, an unreadable file
        raise AmariError(f"timing failed (the stage named last above): {describe_failure(exc)}") from exc
    except (RuntimeError, MemoryError) as exc:  # out of GPU memory, a kernel failure
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AmariError(f"timing failed (the stage named last above): {first}") from exc
    show(
        f"stage times on {machine_label(timings.device)}",
        ["stage", "time", "per", "how"],
        [[s.stage, duration(s.seconds), s.unit, s.note] for s in timings.stages],
    )
    result = estimate(plan, timings, acceptance)
    show(
        f"estimate for {plan.name}",
        ["step", "time", "from"],
        [[r.what, duration(r.seconds), r.how] for r in result.rows],
    )
    print("assumptions:\n" + "\n".join(f"  - {a}" for a in result.assumptions))
    space = disk_check("workspace", existing_parent(plan.out), result.workspace_bytes)
    if space.status != "ok":
        print(f"warning: {space.detail}")
