"""Ray's processes of a cluster amari started, stopped when amari ends, however it ends.

`ray.init()` starts the local cluster's processes (GCS, raylet, monitors, agents) as children of the
driver. After `ray.shutdown()` they stop; after a SIGKILL of the driver most of them stop within
seconds, but Ray's agents wait about a minute before they notice. So a small watcher process, in a
session of its own (a Ctrl-C or a kill of amari's process group does not reach it), holds the read end of
a pipe whose write end only the driver has. It starts before `ray.init()`, which starts Ray's processes
with a mark in their environment (`MARK`, a value of this run's own) that every process they start
inherits. While the driver lives, the watcher notes Ray's processes under it every `LOOK_SECONDS`; when
the pipe closes (the driver shut the cluster down, or died, `ray.init()` half done included), it stops
those still running, and every process that carries the mark: SIGTERM, then SIGKILL after
`GRACE_SECONDS`. A process counts as Ray's when it runs from Ray's package folder or descends from one
that does, or carries the mark, so the driver's other children (worker pools of later steps) are never
touched; a pid is only signalled when its start time is the one noted, so a reused pid is safe.

    python -m amari.execution.reaper DRIVER_PID RAY_PACKAGE_DIR MARK_VALUE   (stdin: the pipe)
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

LOOK_SECONDS = 2.0
GRACE_SECONDS = 3.0
MARK = "AMARI_RAY_RUN"  # in the environment of the Ray processes of one run


def _ray_processes(driver: int, package: str) -> dict[int, float]:
    """{pid: start time} of the processes under `driver` that Ray started, and their descendants."""
    import psutil

    found: dict[int, float] = {}
    try:
        children = psutil.Process(driver).children()
    except psutil.Error:
        return found
    for child in children:
        try:
            if not any(package in part for part in child.cmdline()[:2]):
                continue
            for process in (child, *child.children(recursive=True)):
                found[process.pid] = process.create_time()
        except psutil.Error:
            continue
    return found


def _stop(noted: dict[int, float]) -> None:
    import psutil

    alive = []
    for pid, started in noted.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started:
                process.terminate()
                alive.append(process)
        except psutil.Error:
            continue
    _, left = psutil.wait_procs(alive, timeout=GRACE_SECONDS)
    for process in left:
        try:
            process.kill()
        except psutil.Error:
            continue


def _in_group(group: int | None, package: str) -> dict[int, float]:
    """{pid: start time} of Ray's processes in the driver's process group (a shell's job, or the
    driver's own session): Ray's agents, which a raylet starts without the mark and which may start after
    the watcher's last look, are re-parented when the driver dies but stay in its group."""
    import psutil

    found: dict[int, float] = {}
    if group is None:
        return found
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            command = process.info["cmdline"] or []
            ours = any(package in part for part in command[:2]) or (command and command[0].startswith("ray::"))
            if ours and os.getpgid(process.pid) == group:
                found[process.pid] = process.create_time()
        except (psutil.Error, OSError):
            continue
    return found


def _marked(mark: str) -> dict[int, float]:
    """{pid: start time} of the processes that carry `mark` in their environment (however they were
    re-parented when the driver died)."""
    import psutil

    found: dict[int, float] = {}
    for process in psutil.process_iter(["pid"]):
        try:
            # The watcher itself may carry the mark (started from the environment ray.init is given).
            if process.pid != os.getpid() and process.environ().get(MARK) == mark:
                found[process.pid] = process.create_time()
        except psutil.Error:
            continue
    return found


def watch(driver: int, package: str, mark: str) -> None:
    noted: dict[int, float] = {}
    try:
        group = os.getpgid(driver)
    except OSError:
        group = None  # the driver is gone already: the mark alone finds what it started
    while True:
        noted.update(_ray_processes(driver, package))
        ready, _, _ = select.select([sys.stdin], [], [], LOOK_SECONDS)
        if ready and not os.read(sys.stdin.fileno(), 1):
            break  # the driver's end closed: it shut down or died
    noted.update(_marked(mark))
    noted.update(_in_group(group, package))
    _stop(noted)


def start(package: str, mark: str) -> subprocess.Popen | None:
    """The watcher of this process's Ray processes, those carrying `MARK` = `mark` included (put it into
    the environment `ray.init()` starts them with); close its stdin (`finish`) after `ray.shutdown()`."""
    if os.name != "posix":
        return None  # Ray runs local clusters on Linux (and macOS) only
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "amari.execution.reaper", str(os.getpid()), package, mark],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    except OSError:
        return None  # without a watcher Ray's own checks stop its processes, only later


def finish(watcher: subprocess.Popen | None) -> None:
    if watcher is not None:
        watcher.stdin.close()
        watcher.wait()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    watch(int(sys.argv[1]), sys.argv[2], sys.argv[3])
