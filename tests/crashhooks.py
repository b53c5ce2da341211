"""Deterministic crash points for tests that kill a child process: SIGKILL at an exact place, not a timer.

`crash_command(target, calls, when, *amari_args)` runs `amari *amari_args` in a child Python that
SIGKILLs itself (or sends itself `sig`) just before or just after the `calls`-th call of `target`, given
as "module:attribute"; with `victim="worker"` it kills one worker process of its process pool instead
(as a user or the kernel's out-of-memory killer would), and goes on
where the caller looks it up at call time ("os:replace", "amari.mine.workspace:Workspace.commit",
"amari.train.loop:train_step").
"""

from __future__ import annotations

import sys

_SCRIPT = """
import functools, importlib, os, signal, sys
target, calls, when, sig, victim = sys.argv[1], int(sys.argv[2]), sys.argv[3], getattr(signal, sys.argv[4]), sys.argv[5]
module_name, _, path = target.partition(":")
owner = importlib.import_module(module_name)
*parents, name = path.split(".")
for parent in parents:
    owner = getattr(owner, parent)
real = getattr(owner, name)
count = 0

def strike():
    if victim == "self":
        os.kill(os.getpid(), sig)
        return
    import concurrent.futures, gc
    pools = [o for o in gc.get_objects() if isinstance(o, concurrent.futures.ProcessPoolExecutor)]
    os.kill(next(iter(pools[0]._processes)), sig)

@functools.wraps(real)
def crashing(*args, **kwargs):
    global count
    count += 1
    if count == calls and when == "before":
        strike()
    result = real(*args, **kwargs)
    if count == calls and when == "after":
        strike()
    return result

setattr(owner, name, crashing)
from amari.cli import main
sys.exit(main(sys.argv[6:]))
"""


def crash_command(
    target: str, calls: int, when: str, *args: str, sig: str = "SIGKILL", victim: str = "self"
) -> list[str]:
    if when not in ("before", "after") or victim not in ("self", "worker"):
        raise ValueError((when, victim))
    return [sys.executable, "-c", _SCRIPT, target, str(calls), when, sig, victim, *args]
