"""Worker processes that never outlive amari, however amari ends.

A process pool's workers are started by multiprocessing's fork server, not by amari itself, so a
parent-death signal does not reach them and a killed miner used to leave its workers (and the fork
server) running. Each worker here holds the read end of a pipe whose only write end amari keeps; when
amari ends, even by SIGKILL, the pipe closes, and a thread in every worker ends the worker at once.
The fork server then has no worker left and exits by itself.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor


def all_cores(cpus: int) -> int:
    """-1 means every core; anything else is taken as it is (at least 1)."""
    return (os.cpu_count() or 1) if cpus == -1 else max(1, cpus)


def _watch_parent(lifeline) -> None:
    def wait() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv()  # nothing is ever sent: this returns when amari's end of the pipe closes
        os._exit(1)

    threading.Thread(target=wait, name="amari-lifeline", daemon=True).start()


def _quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker without its leak report: when amari is killed, the tracker
    unlinks the pool's semaphores (as it should) and warns about each on the terminal, two lines that say
    nothing the user can act on. The tracker reads its warning filter from the environment it starts with."""
    from multiprocessing import resource_tracker

    quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
    before = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = f"{before},{quiet}" if before else quiet
    try:
        resource_tracker.ensure_running()
    finally:
        if before is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = before


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool (fork server start method) whose workers exit when this process dies."""
    _quiet_resource_tracker()
    context = multiprocessing.get_context("forkserver")
    reader, writer = context.Pipe(duplex=False)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_watch_parent, initargs=(reader,))
    pool._amari_lifeline = (reader, writer)  # the write end lives exactly as long as this process
    return pool


class InlineExecutor:
    """Runs a step at once in this process (`submit(fn, *args) -> Future`, like the pools): the serial
    engine's executor, and a stage's when nothing runs elsewhere."""

    busy = 0.0
    workers = capacity = 1

    def warm_up(self, fn, *args) -> None:
        fn(*args)

    def submit(self, fn, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - the writer decides what a failure means
            future.set_exception(exc)
        return future

    def shutdown(self, cancel_futures: bool = False) -> None:
        pass
