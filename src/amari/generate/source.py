"""The miner's `diffusers` source: generate → (early rejection) → enhance → save with provenance.

The Stable Diffusion pipeline and the enhancement models stay in memory across batches. Enhancement
is the expensive part and most candidates end up rejected, so each raw image is scored first: when
its largest face is farther from the group than the almost band plus a margin, enhancing it could
not change the verdict and it is written as it came out of the sampler (still with provenance).

Options come from `SourceOptions` (prompt, model, preset, seed) and its `extra` KEY=VALUE pairs
(`amari mine --option steps=30 --option upscaler=none ...`); see `OPTIONS`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amari.errors import UsageError
from amari.generate.config import DEFAULT_MODEL, DEFAULT_PRESET, GenerateConfig, check_preset, preset_config

# --option KEY -> (GenerateConfig field, type)
GENERATE_OPTIONS = {
    "scheduler": ("scheduler", str), "steps": ("steps", int), "guidance": ("guidance_scale", float),
    "cfg": ("guidance_scale", float), "width": ("width", int), "height": ("height", int),
    "batch_size": ("batch_size", int), "device": ("device", str), "dtype": ("dtype", str),
    "compile": ("compile", bool), "rng": ("rng", str), "eta": ("eta", float),
    "model_config": ("model_config", str), "safety_checker": ("safety_checker", bool),
}
ENHANCE_OPTIONS = {
    "enhance": bool, "upscaler": str, "face_restorer": str, "scale": float, "tile": int, "half": bool,
    "enhance_device": str,
}
REJECT_OPTIONS = {"early_reject": bool, "reject_margin": float}
OPTIONS = sorted([*GENERATE_OPTIONS, *ENHANCE_OPTIONS, *REJECT_OPTIONS])

DEFAULT_REJECT_MARGIN = 0.10

_STATE_MIGRATIONS = [
    ("0001_diffusers_source_images", """
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
    """),
]


# 1. Options ---------------------------------------------------------------------------------------

def _typed(key: str, value, kind):
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"option {key} expects true or false, not {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"option {key} expects {kind.__name__}, not {value!r}") from None


@dataclass(frozen=True)
class SourceSettings:
    """Everything a DiffusersSource does, resolved from SourceOptions."""

    prompt: str
    generate: GenerateConfig
    enhance: object | None  # amari.enhance.EnhanceConfig, or None to write raw images
    early_reject: bool
    reject_margin: float
    base_seed: int | None
    preset: str


def _none_word(value):
    return None if value is None or str(value).strip().lower() in ("none", "off", "") else str(value)


def settings_from_options(options) -> SourceSettings:
    """Check and combine the prompt, preset, model and `extra` options into SourceSettings."""
    if not options.prompt or not options.prompt.strip():
        raise UsageError("the diffusers source needs a prompt (--prompt TEXT)")
    extra = dict(options.extra or {})
    unknown = sorted(set(extra) - set(OPTIONS))
    if unknown:
        raise UsageError(f"unknown source option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    preset_name = options.preset or DEFAULT_PRESET
    preset = check_preset(preset_name)
    overrides = {GENERATE_OPTIONS[key][0]: _typed(key, extra[key], GENERATE_OPTIONS[key][1])
                 for key in GENERATE_OPTIONS if key in extra}
    generate = preset_config(preset_name, model=options.model or DEFAULT_MODEL,
                             negative_prompt=options.negative_prompt or None, **overrides)
    enhance = None
    if _typed("enhance", extra.get("enhance", True), bool):
        from amari.enhance import EnhanceConfig

        values = {"scale": _typed("scale", extra.get("scale", preset.upscale), float)}
        for key in ("upscaler", "face_restorer"):
            if key in extra:
                values[key] = _none_word(extra[key])
        if "tile" in extra:
            values["tile"] = _typed("tile", extra["tile"], int)
        if "half" in extra:
            values["half"] = _typed("half", extra["half"], bool)
        values["device"] = str(extra.get("enhance_device", generate.device))
        enhance = EnhanceConfig(**values)
    margin = _typed("reject_margin", extra.get("reject_margin", DEFAULT_REJECT_MARGIN), float)
    if margin < 0:
        raise UsageError(f"reject_margin must be >= 0, not {margin}")
    return SourceSettings(prompt=options.prompt, generate=generate, enhance=enhance,
                          early_reject=_typed("early_reject", extra.get("early_reject", True), bool),
                          reject_margin=margin, base_seed=options.seed, preset=preset_name)


# 2. Early rejection -------------------------------------------------------------------------------

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


# 3. The source ------------------------------------------------------------------------------------

class DiffusersSource:
    """Generates candidates with Stable Diffusion for `amari mine --source diffusers`."""

    def __init__(self, options):
        self.settings = settings_from_options(options)
        self.exhausted = False
        self.counts: Counter = Counter()
        self._enhancer = None
        self._state = None
        if options.state_path is not None:
            from amari.sqlite import connect

            self._state = connect(options.state_path, _STATE_MIGRATIONS)
        self._seeds_used = self._seeds_from_base()

    @property
    def description(self) -> str:
        g = self.settings.generate
        text = (f"diffusers {Path(g.model).name if Path(g.model).exists() else g.model} "
                f"({self.settings.preset}: {g.scheduler}, {g.steps} steps, CFG {g.guidance_scale:g})")
        if self.counts["generated"]:
            text += (f": {self.counts['generated']} generated, {self.counts['enhanced']} enhanced, "
                     f"{self.counts['rejected_early']} rejected before enhancing")
        return text

    @property
    def enhancer(self):
        if self._enhancer is None and self.settings.enhance is not None:
            from amari.enhance import Enhancer

            self._enhancer = Enhancer(self.settings.enhance)
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

        generate(self.settings.prompt, seeds=seeds, config=self.settings.generate, progress=False,
                 on_batch=save_batch)
        return written

    def _load_enhancement_models(self) -> None:
        # Before the first images are generated, so a missing model file fails the run at once.
        if self.enhancer is not None:
            _ = self.enhancer.upscaler, self.enhancer.restorer

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
        target = _free_name(out_dir, f"sd-{context.batch_number:05d}-{generated.seed}.png")
        if self.enhancer is None:
            save_png(generated.image, target, generated.params)
            self._record(target, generated, enhanced=False, rejected=False, distance=None)
            return target
        distance = None
        if self.settings.early_reject and len(context.group):
            raw_path = out_dir / f".{target.stem}.raw.png"
            save_png(generated.image, raw_path, generated.params)
            distance = raw_distance(self._faces(context, raw_path), context.group)
            if rejects_early(distance, context.upper_bound, context.almost_band, self.settings.reject_margin):
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
        config = self.settings.enhance
        # Names only: metadata travels with shared images, the user's folders should not.
        name = (lambda value: None if value is None else Path(str(value)).name)
        return {"upscaler": name(config.upscaler), "face_restorer": name(config.face_restorer),
                "scale": config.scale}

    # Seeds: random ones are recorded; a base seed continues where earlier runs stopped.
    def _seeds_from_base(self) -> int:
        if self.settings.base_seed is None or self._state is None:
            return 0
        row = self._state.execute("SELECT COUNT(*) FROM diffusers_source_images WHERE base_seed = ?",
                                  (self.settings.base_seed,)).fetchone()
        return int(row[0])

    def _next_seeds(self, n: int, random_seeds) -> list[int]:
        base = self.settings.base_seed
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
            (target.name, generated.seed, self.settings.base_seed, generated.prompt,
             generated.params.get("model", ""), int(enhanced), int(rejected), distance, time.time()))


def _free_name(folder: Path, name: str) -> Path:
    candidate, stem, suffix, i = folder / name, Path(name).stem, Path(name).suffix, 1
    while candidate.exists():
        candidate, i = folder / f"{stem}-{i}{suffix}", i + 1
    return candidate


