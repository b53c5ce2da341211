"""Checkpoint samples scored off the training loop's critical path.

A checkpoint is complete once its files and sample images are on disk; finding the samples' faces
(dlib, on the CPU) then runs in a worker process while training goes on, and each score lands in its
checkpoint's `state.json` and in the run's summary (`validation.csv`, `best.json`) when it is back.
A run killed before a score landed scores that checkpoint when it resumes; the end of a run waits for
every score, so its summary always covers every checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from amari.progress import warn
from amari.train import checkpoints as ckpt

Log = Callable[[str], None]


@dataclass
class _Job:
    future: Future
    out_dir: Path
    step: int
    samples: list  # amari.train.validation.Sample
    log: Log
    scoring: Scoring
    until: int | None = None  # the run's last step: later checkpoints (of a longer run) are not summarised


class _Worker:
    """The worker process and the jobs under way, shared by the groups of one run."""

    def __init__(self):
        self.pool = None
        self.jobs: list[_Job] = []


class Scoring:
    """Scores sample images against a reference group (a `FaceGroup`) with `encoder`'s settings, in a
    worker process (`sharing` another Scoring's, for the groups of one run). Without a reference it does
    nothing."""

    def __init__(self, encoder=None, reference=None, sharing: Scoring | None = None):
        self.encoder, self.reference = encoder, reference
        self._worker = sharing._worker if sharing is not None else _Worker()

    @property
    def enabled(self) -> bool:
        return self.reference is not None

    def submit(self, out_dir: Path, step: int, samples: list, log: Log, until: int | None = None) -> None:
        """Find the faces of a checkpoint's samples in the worker; `collect` records the score."""
        if not self.enabled or not samples:
            return
        from amari.execution.workers import worker_pool
        from amari.faces.embeddings import encode_paths

        worker = self._worker
        if worker.pool is None:
            worker.pool = worker_pool(1)
        paths = [str(sample.path) for sample in samples]
        future = worker.pool.submit(encode_paths, paths, self.encoder.settings, self.encoder.max_pixels)
        worker.jobs.append(_Job(future, Path(out_dir), step, list(samples), log, self, until))

    def catch_up(self, out_dir: Path, config, token: str, log: Log) -> None:
        """Score the checkpoints of `out_dir` whose samples a killed run left unscored."""
        from amari.train.validation import planned_samples

        if not self.enabled:
            return
        for step, folder in ckpt.complete_checkpoints(out_dir, until=config.max_steps):
            state = ckpt.read_json(folder / ckpt.STATE_FILE)
            if state.get("samples") and state.get("validation") is None:
                samples = planned_samples(folder / "samples", config, token)
                if all(sample.path.is_file() for sample in samples):
                    self.submit(out_dir, step, samples, log, until=config.max_steps)

    def collect(self, block: bool = False) -> None:
        """Record every score that is back (with `block`, wait for all of them)."""
        for job in list(self._worker.jobs):
            if not (block or job.future.done()):
                continue
            self._worker.jobs.remove(job)
            job.scoring._record(job)

    def wait(self) -> None:
        self.collect(block=True)

    def _record(self, job: _Job) -> None:
        from amari.train.validation import score_samples

        try:
            outcomes = job.future.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker: the checkpoint is scored when the run resumes
            warn(f"the samples of step {job.step} could not be scored now ({type(exc).__name__}: {exc})")
            return
        found = self.encoder.remember([sample.path for sample in job.samples], outcomes)
        validation = score_samples(job.samples, self.encoder, self.reference, found).as_dict()
        folder = ckpt.checkpoint_dir(job.out_dir, job.step)
        if not folder.is_dir():
            return  # the user removed the checkpoint meanwhile
        state = ckpt.read_json(folder / ckpt.STATE_FILE)
        ckpt.write_json(folder / ckpt.STATE_FILE, {**state, "validation": validation})
        best = ckpt.summarize_validation(job.out_dir, until=job.until)
        job.log(score_message(job.step, validation, best))

    def __enter__(self) -> Scoring:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker; scores not back yet are lost (a resumed run makes them)."""
        worker = self._worker
        if worker.pool is not None:
            worker.pool.shutdown(wait=False, cancel_futures=True)
            worker.pool = None
        worker.jobs.clear()


def score_message(step: int, validation: dict, best: dict | None) -> str:
    mean = validation["mean_sim_score"]
    text = (
        f"step {step} samples: faces {validation['faces_found']}/{validation['images']}, "
        f"sim-score {'n/a' if mean is None else f'{mean:.3f}'}"
    )
    return text + (" (best so far)" if best and best["step"] == step else "")
