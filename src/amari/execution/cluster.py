"""Ray, for runs spread over GPUs and machines (`--ray [ADDRESS]`): a cluster to join or start, model
actors, CPU tasks.

Ray is an optional extra (`pip install "amari[ray]"`), imported here and only when `--ray` is given.
The executors below have the shape of the local engine's (`submit(fn, *args) -> Future`), so a stage
runs the same steps on a thread and a process pool, or on Ray; the driver (the process that runs
the stage) stays the single writer of its files.

- Model actors hold the models: one per GPU in the cluster (or a given number); each loads its
  pipeline and enhancement models once, through the steps' own per-process caches. A step an actor
  did not finish because the actor died is sent again, to a restarted or another actor; steps depend
  on their arguments only (seeds, not actor state), so the result is the same.
- CPU steps run as Ray tasks (one CPU each), retried by Ray when their worker dies.
- Joining a cluster is bounded: its address is tried first (nothing listening is one line at once, a
  host that does not answer one after `CONNECT_SECONDS`), then Ray's own joining makes one try of about
  40 s instead of twenty (`RAY_gcs_server_port_wait_time_s` and `RAY_gcs_rpc_server_connect_timeout_s`,
  which the user may set otherwise). What Ray's C++ core prints while it starts or joins goes to a
  temporary file, not the terminal.
- Model steps compute with as many torch threads as the driver would use itself, so a seed gives the
  same pixels on a local actor as in a local run (Ray gives an actor without CPUs one thread).

Security: anyone who can reach a Ray cluster's ports can run code on it; a Ray cluster has no
authentication of its own beyond the token Ray 2.52+ can require. A cluster amari starts itself binds
to 127.0.0.1 only and requires a random token that only this process knows; a cluster you start with
`ray start` must be kept on a network you trust (docs/scale-out.md).
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from functools import partial

from amari.config.settings import setting
from amari.errors import AmariError, UsageError

LOCAL = "local"  # `--ray` without an address: RAY_ADDRESS when set, else a new cluster on this machine
ATTEMPTS = 4  # tries of one model step across actor deaths before the run ends
ACTOR_RESTARTS = 3
RESTART_SECONDS = 120  # how long a model actor Ray restarts may take to be back
RESTART_POLL_SECONDS = 0.5
CONNECT_SECONDS = 10  # to reach a cluster's address before Ray tries to join it
RAY_PORT = 6379  # a cluster's address without a port


class ClusterError(AmariError):
    """The Ray cluster cannot be joined or lost every actor of a kind."""


def _import_ray(local: bool):
    if local:
        # A cluster of our own: loopback only (read when ray is imported), a fresh token, no telemetry.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        if "RAY_AUTH_MODE" not in os.environ:
            os.environ["RAY_AUTH_MODE"] = "token"
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray tries to join an address 20 times, each up to 35 s; these bound it (the user's values win).
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "1")
    os.environ.setdefault("RAY_gcs_rpc_server_connect_timeout_s", "5")
    try:
        import ray
    except ImportError:
        raise UsageError('--ray needs Ray, an optional extra: pip install "amari[ray]"') from None
    return ray


def address_setting(what: str):
    """The `--ray [ADDRESS]` setting of a stage whose `what` can spread over a cluster."""
    return setting(
        None,
        f"spread {what} over a Ray cluster: ADDRESS joins one; without it, RAY_ADDRESS or else a new one on "
        'this machine (needs pip install "amari[ray]")',
        nargs="?",
        const=LOCAL,
        metavar="ADDRESS",
        runtime=True,
    )


def actors_setting():
    """The `--ray-actors N` setting beside `address_setting`."""
    return setting(
        None, "model actors on Ray, each holding the models (default: one per GPU)", metavar="N", runtime=True
    )


def _address(address: str) -> str:
    """Where to connect; "" for a new local cluster."""
    return os.environ.get("RAY_ADDRESS", "") if address in ("", LOCAL) else address


def require_ray(address: str) -> None:
    """Fail now, in one line, when `--ray` is asked for and Ray is not installed."""
    _import_ray(local=not _address(address))


class Cluster:
    """A connection to Ray for one run: `address` LOCAL joins RAY_ADDRESS when set, else starts a local
    cluster (stopped again at the end); anything else is the address of a running cluster."""

    def __init__(self, address: str, cpus: int | None = None):
        self.address = _address(address)
        self.local = not self.address
        self.cpus = cpus
        self.ray = None
        self._owned = False
        self._watcher = None

    def __enter__(self) -> Cluster:
        import logging

        ray = self.ray = _import_ray(self.local)
        if ray.is_initialized():
            return self  # joined already in this process (a study's steps, tests)
        where = "start a local Ray cluster" if self.local else f"join the Ray cluster at {self.address}"
        if not self.local and self.address != "auto":  # "auto": Ray finds a cluster on this machine itself
            _check_reachable(self.address, where)
        if self.local:  # its processes end with this one, even after a SIGKILL (amari.execution.reaper)
            self._watcher = _watch_local_cluster(os.path.dirname(ray.__file__))
        try:
            with _ray_log_aside(), _own_sigterm_handler():
                ray.init(
                    address="local" if self.local else self.address,
                    num_cpus=self.cpus if self.local else None,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            self._stop_watching()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(f"cannot {where}: {first}") from None
        except BaseException:
            self._stop_watching()
            raise
        finally:
            os.environ.pop(_reaper().MARK, None)  # the driver's later children are not Ray's
        self._owned = True
        return self

    def _stop_watching(self) -> None:
        _reaper().finish(self._watcher)
        self._watcher = None

    def __exit__(self, *exc) -> None:
        if self._owned:
            self.ray.shutdown()
            self._stop_watching()

    def describe(self) -> str:
        resources = self.ray.cluster_resources()
        nodes = sum(1 for node in self.ray.nodes() if node.get("Alive"))
        where = "a local Ray cluster" if self.local else f"Ray at {self.address}"
        return f"{where}: {nodes} node(s), {int(resources.get('CPU', 0))} CPUs, {int(resources.get('GPU', 0))} GPUs"


def _reaper():
    from amari.execution import reaper

    return reaper


def _watch_local_cluster(package: str):
    """The reaper, started before `ray.init()`: the processes Ray starts carry this run's mark."""
    reaper = _reaper()
    mark = secrets.token_hex(8)
    os.environ[reaper.MARK] = mark
    return reaper.start(package, mark)


def _check_reachable(address: str, where: str) -> None:
    """Something must listen at a cluster's address: nothing there is one line at once, not Ray's minutes
    of retries."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port or (10001 if address.startswith("ray://") else RAY_PORT)
    except ValueError:
        raise ClusterError(f"cannot {where}: {address!r} is not HOST:PORT") from None
    try:
        socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        raise ClusterError(f"cannot {where}: nothing answers at {host}:{port} ({exc.strerror or exc})") from None


@contextmanager
def _ray_log_aside():
    """Ray's C++ core writes its connection log straight to file descriptor 2: into a file while Ray
    starts or joins, so the terminal gets amari's one line about it, not Ray's dozens."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(prefix="amari-ray-") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextmanager
def _own_sigterm_handler():
    """`ray.init()` puts in a SIGTERM handler of its own (a silent exit); amari's is kept."""
    import signal

    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGTERM, handler)


def _cause(exc: BaseException) -> BaseException:
    """The exception a step raised, without Ray's wrapping (so the CLI prints its one line); Ray's own
    failures (a worker or the cluster lost) as one ClusterError."""
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return cause
    if type(exc).__module__.startswith("ray."):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ClusterError(f"the Ray cluster failed a step: {first}")
    return exc


class ModelActor:
    """Runs model steps in the process that holds the models; reports how long each step worked."""

    def __init__(self, threads: int | None = None):
        if threads:  # on every (re)start: the driver's thread count, not the one Ray gives an actor
            import torch

            torch.set_num_threads(threads)

    def call(self, fn, *args):
        began = time.perf_counter()
        value = fn(*args)
        return time.perf_counter() - began, value

    def ready(self) -> int:
        return os.getpid()


# Ray counts a fractional resource in steps of 1/10,000; a share rounded up would leave the last actor on
# a GPU no room (3 × 0.3334 > 1), and it would wait for one forever.
_RESOURCE_STEP = 10_000
PLACEMENT_SECONDS = 300  # how long the model actors may take to find their GPUs and start


def gpu_share(gpus: int, actors: int) -> float:
    """Each model actor's share of a GPU: a whole one while there are enough, else 1/k with k actors per
    GPU, rounded down to Ray's resolution so that k of them always fit on one GPU (0: no GPUs)."""
    if gpus <= 0:
        return 0.0
    per_gpu = math.ceil(actors / gpus)
    return math.floor(_RESOURCE_STEP / per_gpu) / _RESOURCE_STEP


def check_gpus(gpus: int, device: str, driver_has_gpu: bool) -> str | None:
    """A cluster without GPUs runs its model actors on CPUs: refused when the run asks for a GPU (or asks for
    "auto" from a machine that has one: its cluster was surely meant to have GPUs), otherwise said."""
    if gpus > 0 or device == "cpu":
        return None
    if device.startswith("cuda") or (device == "auto" and driver_has_gpu):
        raise ClusterError(
            "the Ray cluster reports no GPUs, so its model actors would run on CPUs: start its nodes with "
            "their GPUs (ray start --num-gpus N), or set the device to cpu to run there on purpose"
        )
    return "the Ray cluster reports no GPUs: its model actors run on CPUs"


class ModelPool:
    """Model actors as one executor: a step goes to the actor with the least work queued."""

    def __init__(self, cluster: Cluster, actors: int | None = None, device: str = "auto"):
        import torch

        ray = cluster.ray
        gpus = int(ray.cluster_resources().get("GPU", 0))
        note = check_gpus(gpus, device, torch.cuda.is_available())
        if note is not None:
            from amari.progress import warn

            warn(note)
        self.workers = actors or max(1, gpus)
        remote = ray.remote(ModelActor).options(
            num_gpus=gpu_share(gpus, self.workers), num_cpus=0, max_restarts=ACTOR_RESTARTS, max_task_retries=0
        )
        self._ray = ray
        threads = _driver_threads()
        self._actors = {index: remote.remote(threads) for index in range(self.workers)}
        self._queued = dict.fromkeys(self._actors, 0)
        self._lock = threading.Lock()
        self.capacity = 2 * self.workers  # a step waiting at each actor while another runs
        self.busy = 0.0
        self.redone = 0

    def actor_handles(self) -> list:
        return list(self._actors.values())

    def submit(self, fn, *args) -> Future:
        outer: Future = Future()
        outer.set_running_or_notify_cancel()
        self._send(outer, fn, args, 1)
        return outer

    def wait_placed(self) -> None:
        """Wait until every actor has started; actors that cannot be placed (their GPUs taken by other jobs)
        end the run instead of leaving it waiting forever."""
        try:
            self._ray.get([actor.ready.remote() for actor in self._actors.values()], timeout=PLACEMENT_SECONDS)
        except self._ray.exceptions.GetTimeoutError:
            raise ClusterError(
                f"{self.workers} model actor(s) could not start on the Ray cluster within {PLACEMENT_SECONDS} s: "
                "are its GPUs taken by other jobs? (--ray-actors sets how many to start)"
            ) from None

    def warm_up(self, fn, *args) -> None:
        """Run `fn` once on every actor (loading models before any work is queued) and wait; an actor
        that dies meanwhile is restarted by Ray and loads again, as a step would be sent again."""
        from ray.exceptions import ActorDiedError, RayActorError

        self.wait_placed()
        for index, actor in list(self._actors.items()):
            deadline = time.monotonic() + RESTART_SECONDS
            while True:
                try:
                    self._ray.get(actor.call.remote(fn, *args))
                    break
                except ActorDiedError:  # out of restarts
                    with self._lock:
                        self._actors.pop(index, None)
                    break
                except RayActorError:  # died, and Ray restarts it: load again once it is back
                    self.redone += 1
                    if time.monotonic() > deadline:
                        raise ClusterError(f"a model actor was not back {RESTART_SECONDS} s after it died") from None
                    time.sleep(RESTART_POLL_SECONDS)
                except Exception as exc:  # noqa: BLE001 - the step's own error, unwrapped
                    raise _cause(exc) from None
        if not self._actors:
            raise ClusterError("every model actor of the Ray cluster died while loading the models")

    def _send(self, outer: Future, fn, args, attempt: int) -> None:
        with self._lock:
            if not self._actors:
                outer.set_exception(ClusterError("every model actor of the Ray cluster died"))
                return
            index = min(self._actors, key=lambda i: self._queued[i])
            self._queued[index] += 1
            actor = self._actors[index]
        ref = actor.call.remote(fn, *args)
        ref.future().add_done_callback(partial(self._finished, outer, fn, args, attempt, index))

    def _finished(self, outer: Future, fn, args, attempt: int, index: int, inner: Future) -> None:
        from ray.exceptions import ActorDiedError, RayActorError

        with self._lock:
            if index in self._queued:
                self._queued[index] -= 1
        try:
            seconds, value = inner.result()
        except ActorDiedError:  # out of restarts: its steps go to the others
            with self._lock:
                self._actors.pop(index, None)
            self._again(outer, fn, args, attempt)
        except RayActorError:  # died and restarted: the step may or may not have run; run it again
            self._again(outer, fn, args, attempt)
        except BaseException as exc:  # noqa: BLE001 - the step's own failure goes to the writer
            outer.set_exception(_cause(exc))
        else:
            self.busy += seconds
            outer.set_result(value)

    def _again(self, outer: Future, fn, args, attempt: int) -> None:
        if attempt >= ATTEMPTS:
            outer.set_exception(ClusterError(f"a model step failed on {ATTEMPTS} actors in a row"))
            return
        self.redone += 1
        self._send(outer, fn, args, attempt + 1)

    def shutdown(self, cancel_futures: bool = False) -> None:
        with self._lock:
            actors, self._actors = list(self._actors.values()), {}
        for actor in actors:
            self._ray.kill(actor, no_restart=True)


def _driver_threads() -> int:
    """The torch threads a model step would compute with in this process: a local run's."""
    import torch

    return torch.get_num_threads()


def call(fn, *args):
    """A CPU step on a Ray worker."""
    return fn(*args)


class TaskPool:
    """CPU steps as Ray tasks, one CPU each; a task whose worker died is retried by Ray."""

    def __init__(self, cluster: Cluster):
        self._remote = cluster.ray.remote(num_cpus=1, max_retries=3)(call)

    def submit(self, fn, *args) -> Future:
        outer: Future = Future()
        outer.set_running_or_notify_cancel()

        def finished(inner: Future) -> None:
            try:
                outer.set_result(inner.result())
            except BaseException as exc:  # noqa: BLE001
                outer.set_exception(_cause(exc))

        self._remote.remote(fn, *args).future().add_done_callback(finished)
        return outer

    def shutdown(self, cancel_futures: bool = False) -> None:
        pass  # tasks not started end with the cluster connection
