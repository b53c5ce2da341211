"""The miner's `diffusers` feed: generate → inspect → enhance → inspect, as steps the engine runs.

Candidate i gets seed i of one allocator (the base seed plus i, or a workspace-wide random sequence)
and the name `sd-<i>-<seed>.png`; the generator makes them in fixed batches of `generate.batch_size`
(`--gen-batch`). Per image, a CPU worker gives it amari's marks (watermark, metadata, C2PA credentials
when a signing key is configured), encodes its PNG, computes its fingerprint and finds its faces once;
the generator then enhances the whole batch (Real-ESRGAN over the batch, GFPGAN over all its faces) and
a worker pastes the faces back, marks, encodes, fingerprints and finds faces again; the miner records
each fingerprint in the registries before the file appears. Both files wait in incoming/:
the policy judges the enhanced one, or the raw one when its face is too far from the group for
enhancing to matter (early rejection), and the miner deletes the other.

Each candidate is recorded in the workspace database before its files are written, and each file's
content just before it is written, so a killed run resumes with what it made: files waiting in
incoming/ are judged first and not made again (a raw image whose enhancement was lost is enhanced
again; one left by a run that enhanced is judged as it is when this run does not); a batch the run was
in the middle of is generated again whole, which gives the same pixels since every image has its own
seeded generator, and only its missing images are kept. A candidate judged already (its raw image
rejected early while its enhanced one was still being made) leaves nothing behind in incoming/.

A file is the source's only when its name and content are what the database recorded: anything else in
incoming/ is the user's, judged like any other image, and moved aside first when it holds a name the
generator uses (it would be overwritten), so that the user's file is never lost.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from amari.errors import UsageError
from amari.generate.config import GenerateConfig
from amari.generate.run import generate_images, pass_size

_STATE_MIGRATIONS = [
    (
        "0001_generated_candidates",
        """
        CREATE TABLE generated_candidates (
            idx INTEGER PRIMARY KEY,
            seed INTEGER NOT NULL,
            name TEXT NOT NULL,
            raw_digest TEXT,
            final_digest TEXT,
            prompt TEXT NOT NULL,
            model TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE generated_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
    """,
    ),
]

MAX_SEED = 2**32
_MASK = 2**64 - 1
_GENERATED_NAME = re.compile(r"sd-\d{8}-\d+(\.raw)?\.png")  # the names the generator writes into incoming/


def seed_at(index: int, base: int | None, salt: int) -> int:
    """Seed of candidate `index`: the base seed plus the index, or splitmix64 of the workspace's salt."""
    if base is not None:
        return (base + index) % MAX_SEED
    mixed = (salt + (index + 1) * 0x9E3779B97F4A7C15) & _MASK
    mixed = ((mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) & _MASK
    return (mixed ^ (mixed >> 31)) % MAX_SEED


def raw_name(name: str) -> str:
    """The file a candidate's raw image waits under in incoming/ while its enhanced one is made."""
    return name.removesuffix(".png") + ".raw.png"


class DiffusersSource:
    """Generates candidates with Stable Diffusion for `amari mine --source diffusers`."""

    def __init__(
        self,
        prompt: str,
        generate: GenerateConfig,
        enhance=None,
        seed: int | None = None,
        preset: str = "fast",
        generate_step=None,
        batch_by_memory: bool = False,
    ):
        if not prompt or not prompt.strip():
            raise UsageError("the diffusers source needs a prompt (--prompt TEXT)")
        self.prompt, self.generate_config, self.enhance_config = prompt, generate, enhance
        self.base_seed, self.preset = seed, preset
        # (prompt, seeds, config) -> GeneratedImage per seed, on the generator's thread; tests and the
        # benchmark's simulated accelerator put photographs here instead of Stable Diffusion.
        self.generate_step = generate_step or generate_images
        # On a GPU, the batch is what its free memory holds once the models are loaded (16 on an 80 GB card);
        # it stays the same for the whole run (a compiled UNet compiles once).
        self.batch_by_memory = batch_by_memory
        self.notes: list[str] = []
        self.counts: Counter = Counter()
        self._state = None
        self._salt = 0
        self._batch = 0  # the next batch of `batch_size` candidates to generate
        self._made: set[int] = set()  # candidates an earlier run made (judged since, or queued by `start`)
        self._seen: set[str] = set()  # names in incoming/ this run knows: its own (made or to make), the user's taken
        self._generating = 0  # batches being generated

    @property
    def batch_size(self) -> int:
        return self.generate_config.batch_size

    @property
    def enhances(self) -> bool:
        return self.enhance_config is not None

    @property
    def _restore_score(self) -> float:
        """Faces scoring at least this are restored; none when there is no restorer."""
        return self.enhance_config.min_face_score if self.enhance_config.restores else math.inf

    @property
    def description(self) -> str:
        from amari.models.families.registry import guess

        g = self.generate_config
        text = (
            f"diffusers {Path(g.model).name if Path(g.model).exists() else g.model} ({guess(g.model).label}; "
            f"{self.preset}: {g.scheduler}, {g.steps} steps, CFG {g.guidance_scale:g})"
        )
        if self.counts["generated"]:
            text += f": {self.counts['generated']} generated, {self.counts['enhanced']} enhanced"
        return text

    # -- records --------------------------------------------------------------------------------

    def open(self, state_path: Path) -> None:
        from amari.storage.sqlite import connect

        self._state = connect(state_path, _STATE_MIGRATIONS)
        row = self._state.execute("SELECT value FROM generated_meta WHERE key='salt'").fetchone()
        if row is None:
            self._salt = secrets.randbits(63)
            self._state.execute("INSERT INTO generated_meta VALUES ('salt', ?)", (str(self._salt),))
        else:
            self._salt = int(row[0])

    def _record(self, index: int, seed: int, name: str) -> None:
        self._seen.update((name, raw_name(name)))
        model = self.generate_config.model
        self._state.execute(
            "INSERT OR IGNORE INTO generated_candidates VALUES (?, ?, ?, NULL, NULL, ?, ?, ?)",
            (index, seed, name, self.prompt, Path(model).name if Path(model).exists() else model, time.time()),
        )

    def _written(self, index: int, column: str, digest: str) -> None:
        self._state.execute(f"UPDATE generated_candidates SET {column}=? WHERE idx=?", (digest, index))

    def guide(self, adapter) -> None:
        """Guide what is generated from now on with an IP-Adapter (`amari.generate.ip_adapter.IpAdapter`),
        or stop guiding (None); batches already under way keep the guide they started with."""
        self.generate_config = replace(self.generate_config, ip_adapter=adapter)

    def release(self, candidates: list) -> None:
        pass  # what was generated waits in incoming/ for the next run: no GPU work is thrown away

    def made(self, name: str, digest: str) -> bool:
        if self._state is None:
            return False
        row = self._state.execute(
            "SELECT 1 FROM generated_candidates WHERE raw_digest=? OR final_digest=?", (digest, digest)
        ).fetchone()
        return row is not None

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None

    # -- as the miner's feed --------------------------------------------------------------------

    def start(self, engine, context) -> None:
        """Queue what earlier runs made and the policy has not judged, and the user's drops; then go on after it."""
        from amari.faces.embeddings import content_hash
        from amari.mine import leftover_files
        from amari.storage.images import read_bytes

        self._engine, self._context = engine, context
        context.displaced = self._adopt
        # Models load where model steps run, before any work: a missing model file fails the run here.
        default_step = self.generate_step is generate_images
        engine.warm_up(load_models, self.generate_config if default_step else None, self.enhance_config)
        if self.batch_by_memory and default_step:
            from amari.execution.memory import MINING_BATCH_CAP

            size, _compiled = engine.measure(pass_size, self.generate_config, MINING_BATCH_CAP, True)
            self.generate_config = replace(self.generate_config, batch_size=size)
        rows = self._state.execute(
            "SELECT idx, seed, name, raw_digest, final_digest FROM generated_candidates ORDER BY idx"
        ).fetchall()
        recorded = {name: digest for row in rows for name, digest in ((row[2], row[4]), (raw_name(row[2]), row[3]))}
        self._seen.update(recorded)
        ours: set[str] = set()
        for path in leftover_files(context.incoming):
            digest = recorded.get(path.name)
            if digest is not None and content_hash(read_bytes(path)) == digest:
                ours.add(path.name)
            else:  # the user's own drop: judged like any other, out of the generator's way
                self._adopt(path)
        for index, seed, name, raw_digest, final_digest in rows:
            final_here, raw_here = name in ours, raw_name(name) in ours
            if (final_digest and context.known(final_digest)) or (raw_digest and context.known(raw_digest)):
                self._made.add(index)  # judged: what is left of it is not needed any more
                for here, file in ((final_here, name), (raw_here, raw_name(name))):
                    if here:
                        (context.incoming / file).unlink(missing_ok=True)
            elif final_here or raw_here:
                self._made.add(index)
                self._resume(index, seed, name, final_here, raw_here)
        first_missing = next(i for i in range(len(self._made) + 1) if i not in self._made)
        self._batch = first_missing // self.batch_size

    def _adopt(self, path: Path) -> None:
        """A user's file in incoming/ becomes a candidate, judged on its own content; under a name the
        generator writes (or will write), it is renamed first, never overwritten."""
        from amari.storage.files import free_name

        if _GENERATED_NAME.fullmatch(path.name):
            aside = free_name(path.parent, path.name.replace(".raw.png", "-raw.png"))
            try:
                path.rename(aside)
            except FileNotFoundError:
                return  # the user took it away again
            self.notes.append(f"incoming/{path.name}: a name the generator writes; the file was renamed {aside.name}")
            path = aside
        self._seen.add(path.name)
        if path.is_file():
            self._inspect_file(self._engine.add_candidate(path.name), path, "final")

    def _adopt_drops(self) -> None:
        """Files the user put into incoming/ while this run goes on are judged in this run too."""
        from amari.mine import leftover_files

        for path in leftover_files(self._context.incoming):
            if path.name not in self._seen:
                self._adopt(path)

    def _resume(self, index: int, seed: int, name: str, final_here: bool, raw_here: bool) -> None:
        incoming = self._context.incoming
        two = self.enhances and raw_here and final_here
        candidate = self._engine.add_candidate(name, seed=seed, two_variants=self.enhances and raw_here, index=index)
        if final_here:
            self._inspect_file(candidate, incoming / name, "final")
        if not raw_here:
            return
        if self.enhances:  # without its enhanced image (lost with the killed run), it is enhanced again
            self._inspect_file(candidate, incoming / raw_name(name), "raw", then=None if two else self._enhance)
        elif final_here:
            (incoming / raw_name(name)).unlink(missing_ok=True)  # this run does not enhance: not needed
        else:  # made by a run that enhanced, judged as generated by this one that does not
            self._inspect_file(candidate, incoming / raw_name(name), "final")

    def _inspect_file(self, candidate, path: Path, variant: str, then=None) -> None:
        restore = self._restore_score if then is not None else None

        def inspected(result) -> None:
            setattr(candidate, variant, self._context.accept(path, result))
            if then is not None:
                then([(candidate, result)])

        self._context.inspect(self._engine, path, inspected, restore)

    def more(self, engine) -> bool:
        """Start generating the next batch, unless one is being generated still."""
        self._adopt_drops()
        if self._generating >= engine.model_capacity:
            return False
        while True:
            start = self._batch * self.batch_size
            indices = list(range(start, start + self.batch_size))
            self._batch += 1
            if any(i not in self._made for i in indices):
                break
        seeds = [seed_at(i, self.base_seed, self._salt) for i in indices]
        slots = {}
        for index, seed in zip(indices, seeds):
            if index not in self._made:
                name = f"sd-{index:08d}-{seed}.png"
                self._record(index, seed, name)
                slots[index] = engine.add_candidate(name, seed=seed, two_variants=self.enhances, index=index)
        self._generating += 1
        engine.run_model(
            lambda images: self._generated(indices, slots, images),
            self.generate_step,
            self.prompt,
            seeds,
            self.generate_config,
        )
        return True

    def wait_for_more(self) -> bool:
        return True  # a generator never runs dry

    # -- the steps ------------------------------------------------------------------------------

    def _generated(self, indices: list[int], slots: dict, images: list) -> None:
        """A batch came off the generator: each image to a worker, the batch's enhancement once all are back."""
        from amari.mine import inspect_generated

        self._generating -= 1
        self._engine.top_up()  # the generator goes on with the next batch while workers finish this one
        restore = self._restore_score if self.enhances else None
        inspected_so_far: dict[int, tuple] = {}
        variant = "raw" if self.enhances else "final"
        for index, generated in zip(indices, images):
            candidate = slots.get(index)
            if candidate is None:
                continue  # an earlier run made this one
            self.counts["generated"] += 1
            self._engine.stats.generated += 1
            name = raw_name(candidate.name) if self.enhances else candidate.name

            def inspected(result, index=index, candidate=candidate, name=name) -> None:
                self._written(index, f"{variant}_digest", result.digest)  # before the file: see the docstring
                setattr(candidate, variant, self._context.accept(self._context.incoming / name, result))
                if self.enhances:
                    inspected_so_far[index] = (candidate, result)
                    if len(inspected_so_far) == len(slots):  # the whole batch: enhanced together
                        self._enhance([inspected_so_far[i] for i in sorted(inspected_so_far)])

            self._engine.run_cpu(
                inspected,
                inspect_generated,
                generated.image,
                generated.params,
                self._context.settings,
                restore,
                name,
                self._context.signing_key,
            )

    def _enhance(self, items: list[tuple]) -> None:
        """Enhance raw images together on the generator, then finish each on a worker."""
        from amari.enhance import enhance_batch
        from amari.mine import inspect_enhanced

        config = self.enhance_config

        def enhanced(parts) -> None:
            for (candidate, result), (canvas, restored) in zip(items, parts):
                self.counts["enhanced"] += 1
                params = {**result.params, "enhance": enhance_params(config)}

                def finished(final, candidate=candidate) -> None:
                    if candidate.judged_raw:  # judged on its raw image meanwhile: this one is not needed
                        return
                    self._written(candidate.info["index"], "final_digest", final.digest)
                    candidate.final = self._context.accept(self._context.incoming / candidate.name, final)

                self._engine.run_cpu(
                    finished,
                    inspect_enhanced,
                    canvas,
                    restored,
                    result.plans,
                    result.marked.shape[:2],
                    config.restore_weight,
                    params,
                    self._context.settings,
                    candidate.name,
                    self._context.signing_key,
                )

        self._engine.run_model(
            enhanced, enhance_batch, self.enhance_config, [r.marked for _, r in items], [r.plans for _, r in items]
        )


def load_models(generate: GenerateConfig | None, enhance) -> None:
    """Load the pipeline and the enhancement models in this process (a model step: the generator's
    thread, or each model actor on Ray)."""
    if generate is not None:
        from amari.generate.pipeline import load_model

        load_model(generate)
    if enhance is not None:
        from amari.enhance import load_enhancer

        load_enhancer(enhance)


def enhance_params(config) -> dict:
    # Names only: metadata travels with shared images, the user's folders should not.
    return {
        "upscaler": _file_name(config.upscaler),
        "face_restorer": _file_name(config.face_restorer),
        "scale": config.scale,
        "restore_weight": config.restore_weight,
    }


def _file_name(value) -> str | None:
    return None if value is None else Path(str(value)).name
