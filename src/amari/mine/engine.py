"""How candidates are made ready for the policy: serially, or as a streaming pipeline.

A feed (the folder source, or the diffusers source) turns work into candidates by submitting steps to
two executors: the generator's (model work, one thread: the GPU) and the CPU workers' (a persistent
pool of processes: provenance, PNG encoding, dlib, enhancement's pasting). Every step's result comes
back to this process, the single writer, which writes files into incoming/ and hands candidates to
the policy in their order, whatever order the work finished in.

- `streaming` (the default): the generator runs ahead of the policy in fixed batches while the workers
  finish earlier ones; bounded by `ahead` candidates, so memory stays flat.
- `serial`: the same steps, run one after the other in this process with nothing made ahead; the
  same candidates in the same order, for comparison and debugging.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from amari.execution.workers import InlineExecutor
from amari.faces.descriptors import Face

RAW, FINAL = "raw", "final"


@dataclass
class Variant:
    """One file of a candidate, written into incoming/."""

    path: Path
    content_hash: str
    size: int  # bytes
    mtime_ns: int
    faces: list[Face] | None  # None: unreadable
    error: str | None = None


@dataclass
class Candidate:
    """One image on its way to the policy; its `final` variant is what is judged, unless an early
    rejection takes the `raw` one (the generated image as it came, kept until the choice is made)."""

    name: str  # the file name it is judged under
    raw: Variant | None = None
    final: Variant | None = None
    two_variants: bool = False  # a raw variant comes first and may be judged instead of the final one
    choice: str | None = None  # RAW or FINAL, once made
    seed: int | None = None
    info: dict = field(default_factory=dict)  # what the feed records about it

    @property
    def chosen(self) -> Variant | None:
        return self.raw if self.choice == RAW else self.final

    def settled(self) -> bool:
        return self.choice is not None and self.chosen is not None

    @property
    def judged_raw(self) -> bool:
        """Its raw image is the one judged: an enhanced one made for it is not needed."""
        return self.choice == RAW

    @property
    def discarded(self) -> Variant | None:
        """The variant not chosen, whose file the miner deletes (it made it)."""
        return self.final if self.choice == RAW else self.raw


@dataclass
class FeedContext:
    """What a feed gets from the miner: where to write, how faces are found and cached, what exists, and
    what marks the images it makes (the run's C2PA key; the registries their fingerprints go into)."""

    incoming: Path
    settings: object  # FaceSettings
    cache: object  # EmbeddingCache in the workspace database
    known: Callable[[str], bool]  # content hash -> whether the workspace holds that image already
    # Called with a file found where a new one is about to be written (the user's, put there since the
    # name was chosen), after moving it aside; the default moves it to a free name and leaves it there.
    displaced: Callable[[Path], None] | None = None

    @cached_property
    def signing_key(self):
        """The C2PA key this run signs with (None: none configured, or no c2pa-python), looked up once;
        each worker process loads it once (`amari.provenance.credentials`)."""
        from amari.provenance import credentials

        return credentials.configured_key() if credentials.is_available() else None

    @cached_property
    def registries(self):
        """The fingerprint registries of what is written into incoming/ (the cache's, the workspace's or
        study's), opened once a run, when the first image is written."""
        from amari.provenance.registries import Registries, registry_paths_in

        return Registries(registry_paths_in(self.incoming))

    def accept(self, path: Path, inspected, cache: bool = True) -> Variant:
        """A worker's result as a file in incoming/: written (when it brings bytes) with its fingerprint
        recorded before the file's rename, and its faces cached (unless they came from the cache)."""
        if inspected.png is not None:
            if os.path.lexists(path):  # never over a file someone else put there
                self._move_aside(path)
            self.registries.write(path, inspected.png, inspected.fingerprint)
        if cache and inspected.faces is not None:
            self.cache.put(inspected.digest, self.settings.key, inspected.faces, inspected.size)
        stat = path.stat()
        return Variant(path, inspected.digest, stat.st_size, stat.st_mtime_ns, inspected.faces, inspected.error)

    def _move_aside(self, path: Path) -> None:
        if self.displaced is not None:
            self.displaced(path)
        else:
            from amari.storage.files import free_name

            os.rename(path, free_name(path.parent, path.name))
        if os.path.lexists(path):
            raise RuntimeError(f"{path} is still there after it was moved aside")  # a programming error

    def close(self) -> None:
        if "registries" in self.__dict__:
            self.registries.close()

    def inspect(self, engine: Engine, path: Path, then: Callable, restore_score: float | None = None) -> None:
        """A file in incoming/: read here, its bytes inspected by a worker (`then` gets the result)."""
        from amari.errors import ImageError
        from amari.mine.work import inspect_file, unreadable
        from amari.storage.images import read_bytes

        try:
            data = read_bytes(path)
        except ImageError as exc:
            then(unreadable(exc))
            return
        engine.run_cpu(then, inspect_file, path, data, self.settings, restore_score)


class TimedThread(ThreadPoolExecutor):
    """The generator's one thread; remembers how long it worked, so the progress can say how long it waited.

    Two model steps may be under way: one running and the next queued behind it, so the generator starts
    the next batch the moment one ends, without waiting for the writer to hand it over.
    """

    workers, capacity = 1, 2

    def __init__(self):
        super().__init__(max_workers=1, thread_name_prefix="amari-generator")
        self.busy = 0.0

    def warm_up(self, fn, *args) -> None:
        self.submit(fn, *args).result()

    def submit(self, fn, *args, **kwargs) -> Future:
        def timed():
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.busy += time.perf_counter() - began

        return super().submit(timed)


@dataclass
class Stats:
    started: float = field(default_factory=time.perf_counter)
    generated: int = 0
    judged: int = 0

    def rates(self) -> tuple[float, float]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return self.generated / elapsed, self.judged / elapsed


class Engine:
    """Runs a feed's steps and hands settled candidates to the policy, in order."""

    def __init__(self, streaming: bool, cpus: int, ahead: int = 16, executors: tuple | None = None):
        """executors: (CPU, model) executors to use instead of local ones (`amari.execution.cluster`'s on Ray)."""
        from amari.execution.workers import all_cores, worker_pool

        self.streaming = streaming or executors is not None
        self.ahead = ahead if self.streaming else 0
        if executors is not None:
            self.cpu, self.gpu = executors
        else:
            workers = all_cores(cpus) if streaming else 1
            self.cpu = worker_pool(workers) if streaming and workers > 1 else InlineExecutor()
            self.gpu = TimedThread() if streaming else InlineExecutor()
        self.model_capacity = self.gpu.capacity  # model steps a feed may have under way at once
        self.queue: deque[Candidate] = deque()  # in the policy's order
        self.pending: dict[Future, Callable] = {}
        self.stats = Stats()
        self.feed = None
        self._wanted = 0  # candidates the policy's current take still needs

    # -- for feeds --------------------------------------------------------------------------------

    def add_candidate(self, name: str, seed: int | None = None, two_variants: bool = False, **info) -> Candidate:
        """A new candidate at the end of the policy's queue."""
        candidate = Candidate(name, seed=seed, two_variants=two_variants, info=info)
        self.queue.append(candidate)
        return candidate

    def top_up(self) -> None:
        """Start the feed's next model step now (a generator that just finished, before its batch's CPU
        work), so the model never waits for the writer; the serial engine waits for the policy."""
        if self.streaming:
            self._top_up(self._wanted)

    def run_cpu(self, then: Callable, fn, *args) -> None:
        self._track(self.cpu.submit(fn, *args), then)

    def run_model(self, then: Callable, fn, *args) -> None:
        self._track(self.gpu.submit(fn, *args), then)

    def warm_up(self, fn, *args) -> None:
        """Run `fn` where model steps run (each model actor, on Ray) and wait: models load before work."""
        self.gpu.warm_up(fn, *args)

    def measure(self, fn, *args):
        """Run `fn` where model steps run and wait for its value (what the device there can hold)."""
        return self.gpu.submit(fn, *args).result()

    def _track(self, future: Future, then: Callable) -> None:
        if future.done():
            then(future.result())
        else:
            self.pending[future] = then

    # -- for the policy ---------------------------------------------------------------------------

    def start(self, feed, context: FeedContext) -> None:
        self.feed = feed
        feed.start(self, context)

    def take(self, n: int, choose: Callable[[Candidate], str]) -> list[Candidate]:
        """Up to n candidates, in order, each settled: `choose(candidate)` picks RAW or FINAL once its raw
        variant is there. Fewer than n when the feed has nothing more right now; none when it is done."""
        taken: list[Candidate] = []
        while len(taken) < n:
            self._wanted = n - len(taken)
            self._top_up(self._wanted)
            if not self.queue:
                if self.pending:
                    self._pump()
                    continue
                if taken or not self.feed.wait_for_more():
                    break
                continue
            head = self.queue[0]
            if head.choice is None:
                if head.two_variants and head.raw is not None:
                    head.choice = choose(head)
                elif not head.two_variants and head.final is not None:
                    head.choice = FINAL
            if head.settled():
                taken.append(self.queue.popleft())
                continue
            self._pump()
        self.stats.judged += len(taken)
        return taken

    def _top_up(self, wanted: int) -> None:
        """Keep the feed ahead of the policy: what the current batch needs, plus `ahead` when streaming."""
        while len(self.queue) < wanted + self.ahead and self.feed.more(self):
            pass

    def _pump(self) -> None:
        if not self.pending:
            raise RuntimeError("the miner waits for a step that was never started")  # a programming error
        done, _ = wait(list(self.pending), return_when=FIRST_COMPLETED)
        for future in done:
            then = self.pending.pop(future)
            then(future.result())  # a step's own failure (a full disk) ends the run here, in the writer

    def depths(self) -> dict[str, int]:
        """How much waits where: for the progress display."""
        ready = sum(1 for c in self.queue if c.raw is not None or c.final is not None)
        return {"queued": len(self.queue), "ready": ready, "working": len(self.pending)}

    def generator_wait_share(self) -> float:
        elapsed = time.perf_counter() - self.stats.started
        return max(0.0, 1.0 - self.gpu.busy / (elapsed * self.gpu.workers)) if elapsed > 0 else 0.0

    def close(self) -> None:
        """Stop: steps not started are dropped; what was made ahead and not judged is the feed's to keep or
        take back (a generated image stays in incoming/ for the next run, a copy of a file goes)."""
        for executor in (self.cpu, self.gpu):
            executor.shutdown(cancel_futures=True)
        if self.feed is not None:
            self.feed.release([c for c in self.queue])
            self.feed.close()
