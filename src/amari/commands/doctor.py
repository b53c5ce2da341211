"""amari doctor [STUDY.toml]: is this machine ready for the study, are its models here, how long will it take."""

from __future__ import annotations

HELP = "check the setup, the models and the time a study will take (times one candidate per stage)"
DESCRIPTION = """\
Checks, in order, and prints a table for each:

  environment   Python, torch, CUDA and the GPU (memory, bf16/fp16), attention kernels (SDPA), dlib,
                free disk space for the workspace and the model caches
  models        every model the study needs, where amari expects it, present and verified
  stage times   when every model is here: one candidate through each mining stage (generate, enhance,
                detect, descriptor, write), one training step and one evaluation image, each after an
                untimed warm-up run
  estimate      from those times and the config: time to the target group size, to train every group,
                to evaluate the grid, and to run the whole study, with the assumptions it makes

Without STUDY.toml it checks configs/amari-2022.toml when it can find it, else the default settings
(no estimate). --timing-steps N times generation at 1 and N steps and extrapolates to the config's
steps: a CPU can then size a 250-step study in minutes.

Exit status: 0 when everything the config needs is here; 1, naming what, when a model is missing or
damaged or a check fails (`amari models pull STUDY.toml` fetches missing models)."""


def add_arguments(parser) -> None:
    parser.add_argument("config", metavar="STUDY.toml", nargs="?", help="the study to check (default: the 2022 study)")
    parser.add_argument("--no-timing", action="store_true", help="check the setup and the models only")
    parser.add_argument("--timing-steps", type=int, metavar="N",
                        help="time generation at 1 and N denoising steps and extrapolate (default: the config's)")
    parser.add_argument("--acceptance", type=float, metavar="RATE",
                        help="share of candidates that join the sim-group (default: the 2022 study's, 312/4200)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")


def _study(path):
    from amari.inventory import default_study_file
    from amari.study.config import load_study

    path = path or default_study_file()
    return (load_study(path), str(path)) if path else (None, "the default settings")


def run(args) -> int:
    import sys

    from amari.doctor.estimate import ACCEPTANCE_2022, estimate
    from amari.doctor.plan import plan_from_study
    from amari.doctor.probes import disk_check, environment, existing_parent, hub_cache, machine_label
    from amari.doctor.render import duration, print_table
    from amari.doctor.timing import time_study
    from amari.errors import AmariError, ModelError, UsageError
    from amari.inventory import check, default_needs, needs_from_study
    from amari.models import cache_root

    if args.timing_steps is not None and args.timing_steps < 2:
        raise UsageError("--timing-steps must be at least 2")
    acceptance = ACCEPTANCE_2022 if args.acceptance is None else args.acceptance
    if not 0 < acceptance <= 1:
        raise UsageError(f"--acceptance must be in (0, 1], not {args.acceptance}")
    config, label = _study(args.config)
    plan = plan_from_study(config) if config is not None else None
    show = (lambda title, headers, rows: (print(f"\n{title}"), print_table(headers, rows, args.markdown)))
    print(f"amari doctor: {label}")

    # 1. The machine.
    folders = {"model cache": cache_root(), "Hugging Face cache": hub_cache()}
    if plan is not None:
        folders = {"workspace": plan.out, **folders}
    checks = environment(plan.device if plan else "auto", folders)
    show("environment", ["check", "status", "detail"], [[c.name, c.status, c.detail] for c in checks])

    # 2. The models.
    statuses = [check(need) for need in (needs_from_study(config) if config is not None else default_needs())]
    show("models", ["model", "state", "role", "where"],
         [[s.need.name, s.state, s.need.role, s.where or s.detail] for s in statuses])
    missing = [s for s in statuses if s.need.required and not s.ok]
    failed = [c for c in checks if c.status == "fail"]

    # 3. Stage times and the estimate, when everything is here.
    if args.no_timing or plan is None or missing or failed:
        why = ("--no-timing" if args.no_timing else "no study config" if plan is None
               else "a model is missing" if missing else "a check failed")
        print(f"\nstage times: not measured ({why})")
    else:
        try:
            timings = time_study(plan, args.timing_steps, log=lambda m: print(m, file=sys.stderr, flush=True))
        except (RuntimeError, MemoryError, OSError) as exc:  # out of GPU memory, a kernel or file failure
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AmariError(f"timing failed (the stage named last above): {first}") from exc
        show(f"stage times on {machine_label(timings.device)}", ["stage", "time", "per", "how"],
             [[s.stage, duration(s.seconds) if s.seconds is not None else "-", s.unit, s.note]
              for s in timings.stages])
        result = estimate(plan, timings, acceptance)
        show(f"estimate for {plan.name}", ["step", "time", "from"],
             [[r.what, duration(r.seconds), r.how] for r in result.rows])
        print("assumptions:\n" + "\n".join(f"  - {a}" for a in result.assumptions))
        space = disk_check("workspace", existing_parent(plan.out), result.workspace_bytes)
        if space.status != "ok":
            print(f"warning: {space.detail}")

    if missing:
        names = ", ".join(f"{s.need.name} ({s.state})" for s in missing)
        pull = f"amari models pull {args.config or ''}".rstrip()
        raise ModelError(f"the study needs {names}: see the models table, or run `{pull}`")
    if failed:
        raise AmariError("; ".join(f"{c.name}: {c.detail}" for c in failed))
    return 0
