"""Deterministic crash points for tests that kill a child process: SIGKILL at an exact place, not a timer.

`crash_command(target, calls, when, *amari_args)` runs `amari *amari_args` in a child Python that
SIGKILLs itself (or sends itself `sig`) just before or just after the `calls`-th call of `target`, given
as "module:attribute"
where the caller looks it up at call time ("os:replace", "amari.mine.workspace:Workspace.commit",
"amari.train.loop:train_step").
"""

from __future__ import annotations

import sys

_SCRIPT = """
import functools, importlib, os, signal, sys
target, calls, when, sig = sys.argv[1], int(sys.argv[2]), sys.argv[3], getattr(signal, sys.argv[4])
module_name, _, path = target.partition(":")
owner = importlib.import_module(module_name)
*parents, name = path.split(".")
for parent in parents:
    owner = getattr(owner, parent)
real = getattr(owner, name)
count = 0

@functools.wraps(real)
def crashing(*args, **kwargs):
    global count
    count += 1
    if count == calls and when == "before":
        os.kill(os.getpid(), sig)
    result = real(*args, **kwargs)
    if count == calls and when == "after":
        os.kill(os.getpid(), sig)
    return result

setattr(owner, name, crashing)
from amari.cli import main
sys.exit(main(sys.argv[5:]))
"""


def crash_command(target: str, calls: int, when: str, *args: str, sig: str = "SIGKILL") -> list[str]:
    if when not in ("before", "after"):
        raise ValueError(when)
    return [sys.executable, "-c", _SCRIPT, target, str(calls), when, sig, *args]
