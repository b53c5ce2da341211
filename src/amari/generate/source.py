"""The miner's `diffusers` source: generate → (early rejection) → enhance → save with provenance.

The Stable Diffusion pipeline and the enhancement models stay in memory across batches. Enhancement
is the expensive part and most candidates end up rejected, so each raw image is scored first: when
its largest face is farther from the group than the almost band plus a margin, enhancing it could
not change the verdict and it is written as it came out of the sampler (still with provenance).

The caller gives it typed settings: the prompt, a `GenerateConfig`, an `EnhanceConfig` (or None to
write raw images), the first seed and the early-rejection rule (`amari.mine.MineConfig` makes them).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np

from amari.errors import UsageError
from amari.files import free_name
from amari.generate.config import GenerateConfig

_STATE_MIGRATIONS = [
    (
        "0001_diffusers_source_images",
        """
        CREATE TABLE diffusers_source_images (
            file TEXT NOT NULL,
            seed INTEGER NOT NULL,
            base_seed INTEGER,
            prompt TEXT NOT NULL,
            model TEXT NOT NULL,
            enhanced INTEGER NOT NULL,
            rejected_early INTEGER NOT NULL,
            raw_distance REAL,
            created_at REAL NOT NULL
        );
        CREATE INDEX diffusers_source_images_base ON diffusers_source_images (base_seed)
    """,
    ),
]


# 1. Early rejection -------------------------------------------------------------------------------


def raw_distance(faces, group: np.ndarray) -> float | None:
    """Mean distance of the largest face to the group; None without a face or a group."""
    from amari import faces as face_lib

    face = face_lib.largest(faces)
    if face is None or group is None or len(group) == 0:
        return None
    return float(face_lib.sim_score(face.descriptor, group))


def rejects_early(distance: float | None, upper_bound: float, almost_band: float, margin: float) -> bool:
    """True when a raw image's face is so far from the group that enhancing it cannot matter."""
    return distance is not None and distance > upper_bound + almost_band + margin


# 2. The source ------------------------------------------------------------------------------------


class DiffusersSource:
    """Generates candidates with Stable Diffusion for `amari mine --source diffusers`."""

    def __init__(
        self,
        prompt: str,
        generate: GenerateConfig,
        enhance=None,
        seed: int | None = None,
        early_reject: bool = True,
        reject_margin: float = 0.10,
        preset: str = "fast",
    ):
        if not prompt or not prompt.strip():
            raise UsageError("the diffusers source needs a prompt (--prompt TEXT)")
        if reject_margin < 0:
            raise UsageError(f"reject_margin must be >= 0, not {reject_margin}")
        self.prompt, self.generate_config, self.enhance_config = prompt, generate, enhance
        self.base_seed, self.early_reject, self.reject_margin, self.preset = seed, early_reject, reject_margin, preset
        self.exhausted = False
        self.notes: list[str] = []
        self.counts: Counter = Counter()
        self._enhancer = None
        self._state = None
        self._seeds_used = 0

    def open(self, state_path: Path) -> None:
        """Record every image in the workspace database, so a base seed carries on across runs."""
        from amari.sqlite import connect

        self._state = connect(state_path, _STATE_MIGRATIONS)
        self._seeds_used = self._seeds_from_base()

    @property
    def description(self) -> str:
        g = self.generate_config
        text = (
            f"diffusers {Path(g.model).name if Path(g.model).exists() else g.model} "
            f"({self.preset}: {g.scheduler}, {g.steps} steps, CFG {g.guidance_scale:g})"
        )
        if self.counts["generated"]:
            text += (
                f": {self.counts['generated']} generated, {self.counts['enhanced']} enhanced, "
                f"{self.counts['rejected_early']} rejected before enhancing"
            )
        return text

    @property
    def enhancer(self):
        if self._enhancer is None and self.enhance_config is not None:
            from amari.enhance import Enhancer

            self._enhancer = Enhancer(self.enhance_config)
        return self._enhancer

    def next_batch(self, n: int, out_dir: Path, context) -> list[Path]:
        from amari.generate.run import generate, random_seeds

        if n < 1:
            raise ValueError(f"a batch needs at least one image, not {n}")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self._load_enhancement_models()
        seeds = self._next_seeds(n, random_seeds)
        written: list[Path] = []

        def save_batch(images):
            for generated in images:
                written.append(self.finish(generated, out_dir, context))

        generate(self.prompt, seeds=seeds, config=self.generate_config, progress=False, on_batch=save_batch)
        return written

    def _load_enhancement_models(self) -> None:
        # Before the first images are generated, so a missing model file fails the run at once.
        if self.enhancer is not None:
            _ = self.enhancer.upscaler, self.enhancer.restorer

    def made(self, name: str, digest: str) -> bool:
        if self._state is None:
            return False
        return self._state.execute("SELECT 1 FROM diffusers_source_images WHERE file=?", (name,)).fetchone() is not None

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None

    def finish(self, generated, out_dir: Path, context) -> Path:
        """Write one GeneratedImage into `out_dir`, enhanced unless rejected early; return its path.

        When early rejection applies, the raw image is first saved under a hidden name and scored
        through the miner's encoder; a rejected one is then only renamed, so the miner finds its
        faces in the cache instead of detecting them again. Visible names appear complete.
        """
        from amari.provenance import save_png

        self.counts["generated"] += 1
        target = free_name(out_dir, f"sd-{context.batch_number:05d}-{generated.seed}.png")
        if self.enhancer is None:
            save_png(generated.image, target, generated.params)
            self._record(target, generated, enhanced=False, rejected=False, distance=None)
            return target
        distance = None
        if self.early_reject and len(context.group):
            raw_path = out_dir / f".{target.stem}.raw.png"
            save_png(generated.image, raw_path, generated.params)
            distance = raw_distance(self._faces(context, raw_path), context.group)
            if rejects_early(distance, context.upper_bound, context.almost_band, self.reject_margin):
                raw_path.replace(target)
                self.counts["rejected_early"] += 1
                self._record(target, generated, enhanced=False, rejected=True, distance=distance)
                return target
            raw_path.unlink(missing_ok=True)
        enhanced = self.enhancer.enhance(np.array(generated.image))
        save_png(enhanced, target, {**generated.params, "enhance": self._enhance_params()})
        self.counts["enhanced"] += 1
        self._record(target, generated, enhanced=True, rejected=False, distance=distance)
        return target

    def _faces(self, context, path: Path):
        from amari.errors import ImageError

        try:
            return context.encoder.faces(path)
        except ImageError:
            return []

    def _enhance_params(self) -> dict:
        config = self.enhance_config
        # Names only: metadata travels with shared images, the user's folders should not.
        return {
            "upscaler": _file_name(config.upscaler),
            "face_restorer": _file_name(config.face_restorer),
            "scale": config.scale,
        }

    # Seeds: random ones are recorded; a base seed continues where earlier runs stopped.
    def _seeds_from_base(self) -> int:
        if self.base_seed is None or self._state is None:
            return 0
        row = self._state.execute(
            "SELECT COUNT(*) FROM diffusers_source_images WHERE base_seed = ?", (self.base_seed,)
        ).fetchone()
        return int(row[0])

    def _next_seeds(self, n: int, random_seeds) -> list[int]:
        base = self.base_seed
        if base is None:
            return random_seeds(n)
        seeds = [(base + self._seeds_used + i) % 2**32 for i in range(n)]
        self._seeds_used += n
        return seeds

    def _record(self, target: Path, generated, enhanced: bool, rejected: bool, distance: float | None) -> None:
        if self._state is None:
            return
        self._state.execute(
            "INSERT INTO diffusers_source_images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                target.name,
                generated.seed,
                self.base_seed,
                generated.prompt,
                generated.params.get("model", ""),
                int(enhanced),
                int(rejected),
                distance,
                time.time(),
            ),
        )


def _file_name(value) -> str | None:
    return None if value is None else Path(str(value)).name
