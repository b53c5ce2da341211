"""The evaluation grid's settings: prompts × commands × (method × group), how images are made and scored."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amari.config.defaults import DEFAULT_MODEL
from amari.config.limits import MAX_DENOISING_STEPS, check_at_most, check_image_size
from amari.config.settings import Settings, check_positive, convert, from_table, setting
from amari.errors import UsageError
from amari.execution.cluster import actors_setting, address_setting
from amari.execution.devices import check_device
from amari.storage.results import CONTROL, DEFAULT_METHOD
from amari.train import STUDY_METHODS, UNTRAINED_METHODS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Command(Settings):
    """One generation command of the grid (the study's sd1..sd5): a name and its seed."""

    name: str = setting(help="the command's name, e.g. sd1")
    seed: int = setting(help="the seed every image of the command starts from")

    def check(self):
        if not _NAME.match(self.name):
            raise UsageError(f"command name {self.name!r} must be letters, digits, '_', '-' or '.'")
        if not 0 <= self.seed < 2**64:
            raise UsageError(f"command {self.name}: seed must be in [0, 2^64), not {self.seed}")


def commands_table(value: Any, where: str, base: Path) -> tuple[Command, ...]:
    if not isinstance(value, list):
        raise UsageError(f"{where} must be a list of tables ([[evaluate.commands]] with name and seed)")
    commands = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise UsageError(f"{where}[{i}] must be a table with name and seed")
        commands.append(from_table(Command, item, f"{where}[{i}]", base))
    return tuple(commands)


def embeddings_table(value: Any, where: str, base: Path) -> tuple[tuple[str, Path], ...]:
    if not isinstance(value, dict):
        raise UsageError(f'{where} must be a table of group = "path"')
    return tuple((group, convert(path, Path, f"{where}.{group}", base)) for group, path in value.items())


@dataclass(frozen=True)
class EvaluateConfig(Settings):
    prompts: tuple[str, ...] = setting((), "the grid's prompts; each holds the study's subject word", cli=False)
    commands: tuple[Command, ...] = setting(
        (), "[[evaluate.commands]]: a name and a seed each", cli=False, toml_type=commands_table
    )
    sampler: str = setting("k_lms", "sampler of the grid's images", cli=False)
    steps: int = setting(250, "denoising steps", cli=False)
    guidance: float = setting(7.5, "classifier-free guidance", cli=False)
    width: int = setting(512, "image width", cli=False)
    height: int = setting(512, "image height", cli=False)
    batch_size: int | None = setting(
        None,
        "images of one prompt per forward pass, each from its own seeded generator (default: as many of the "
        "prompt's commands as the free memory holds)",
        cli=False,
    )
    groups: tuple[str, ...] | None = setting(None, "training groups in the grid (default: every one)", cli=False)
    methods: tuple[str, ...] = setting(
        (DEFAULT_METHOD,), "training methods in the grid, each with every group", cli=False, study=True
    )
    control: bool = setting(
        True, "add the ctrl group: the subject word replaced by the init word, no embedding", cli=False
    )
    embeddings: tuple[tuple[str, Path], ...] = setting(
        (),
        "group = embedding file, instead of the trained one (Textual Inversion's)",
        cli=False,
        toml_type=embeddings_table,
    )
    ip_adapter: str | None = setting(
        None,
        "the ip-adapter method's adapter, conditioned on each group's training images: plus-face, full-face "
        "(h94/IP-Adapter's face variants for the model's family) or a .safetensors file",
        cli=False,
    )
    ip_adapter_scale: float = setting(0.6, "how strongly the ip-adapter method's images follow the group", cli=False)
    image_encoder: str | None = setting(
        None, "the adapter's CLIP image encoder folder (default: image_encoder/ beside the file)", cli=False
    )
    sim_group: Path | None = setting(None, "faces to score against (default: the miner's sim-group)", metavar="DIR")
    results: Path | None = setting(None, "results folder (default: the study's OUT/results)", metavar="DIR")
    tolerance: float = setting(0.40, "sim-score that counts as the same person", cli=False)
    cnn_second_pass: bool = setting(
        True, "skip the second look with dlib's CNN detector where HOG found no face", flag="--no-cnn"
    )
    arcface_model: Path | None = setting(
        None, "an ArcFace ONNX model: a second identity score", flag="--arcface", metavar="MODEL.onnx"
    )
    ray: str | None = address_setting("the grid's generation")
    ray_actors: int | None = actors_setting()
    # Filled in by the study from its other tables.
    study_name: str = setting("study", "the study's name, recorded with every image", cli=False, study=True)
    model: str = setting(DEFAULT_MODEL, "the model (SD 1.x, SD 2.x, SDXL or FLUX.1)", cli=False, study=True)
    model_config: str | None = setting(None, "component configs of a single-file model", cli=False, study=True)
    vae: str | None = setting(None, "a replacement VAE", cli=False, study=True)
    biometric_licence: str | None = setting(
        None, "the licence that permits scoring a model whose own forbids it (FLUX.1 [dev])", cli=False, study=True
    )
    device: str = setting("auto", "where generation runs", cli=False, study=True)
    subject: str = setting("amari", "the word in the prompts that stands for the identity", cli=False, study=True)
    init_word: str = setting("woman", "what the control group says instead of the subject", cli=False, study=True)
    training_groups: tuple[str, ...] = setting((), "the study's training groups", cli=False, study=True)
    demo: bool = setting(False, "the offline demo: the manifest says so, for the report", cli=False, study=True)

    def check(self):
        from amari.generate import SAMPLERS

        if not self.prompts:
            raise UsageError("no prompts")
        word = re.compile(rf"\b{re.escape(self.subject)}\b")
        for prompt in self.prompts:
            if not word.search(prompt):
                raise UsageError(f"prompt {prompt!r} does not contain the subject word {self.subject!r}")
        if len(set(self.prompts)) != len(self.prompts):
            raise UsageError("a prompt is listed twice")
        if not self.commands:
            raise UsageError("no commands: add [[evaluate.commands]] tables with a name and a seed")
        names = [c.name for c in self.commands]
        if len(set(names)) != len(names):
            raise UsageError("two commands have the same name")
        check_positive(
            steps=self.steps,
            width=self.width,
            height=self.height,
            batch_size=self.batch_size,
            tolerance=self.tolerance,
            ray_actors=self.ray_actors,
        )
        if self.guidance < 0:  # 0: no guidance, as FLUX.1 [schnell] samples
            raise UsageError(f"guidance must be >= 0, not {self.guidance}")
        if self.ray is not None:
            from amari.execution.cluster import require_ray

            require_ray(self.ray)
        if self.sampler not in SAMPLERS:
            raise UsageError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        from amari.models.families.registry import known
        from amari.models.licences import check_biometric_use

        family = known(self.model)
        if family is not None:
            family.check_sampler(self.sampler)
        check_biometric_use(self.model, self.biometric_licence, "amari evaluate")
        if self.width % 8 or self.height % 8:
            raise UsageError(f"width and height must be multiples of 8, not {self.width}×{self.height}")
        check_at_most(MAX_DENOISING_STEPS, "the schedulers' training timesteps", steps=self.steps)
        # Unset, the batch is what the free memory holds (`amari.generate.pass_size`): at least one image.
        check_image_size(self.width, self.height, self.batch_size or 1, "generating images")
        check_device(self.device)
        if not self.methods or len(set(self.methods)) != len(self.methods) or set(self.methods) - set(STUDY_METHODS):
            raise UsageError(
                f"methods must list some of {', '.join(STUDY_METHODS)} once each, not {list(self.methods)}"
            )
        if set(self.methods) & set(UNTRAINED_METHODS) and self.ip_adapter is None:
            raise UsageError("the ip-adapter method needs [evaluate] ip_adapter (plus-face, full-face or a file)")
        if self.ip_adapter is not None:
            from amari.generate import check_adapter_weights

            check_adapter_weights(self.ip_adapter)
        if not self.ip_adapter_scale >= 0:
            raise UsageError(f"ip_adapter_scale must be >= 0, not {self.ip_adapter_scale}")
        if self.training_groups:
            self._check_groups()

    def _check_groups(self):
        if CONTROL in self.training_groups:
            raise UsageError(f"{CONTROL!r} is the control group's name; name the training group otherwise")
        taken = sorted(set(self.training_groups) & set(STUDY_METHODS))
        if taken:
            raise UsageError(f"{taken[0]!r} names a training method (its folders); name the training group otherwise")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", self.init_word):
            raise UsageError(f"init_word {self.init_word!r} must be one word (the control group's prompts use it)")
        if self.groups is not None:
            unknown = [g for g in self.groups if g not in self.training_groups]
            if unknown:
                raise UsageError(f"groups {unknown} are not training groups ({', '.join(self.training_groups)})")
        for group, _path in self.embeddings:
            if group not in self.training_groups:
                raise UsageError(f"embedding given for {group!r}, which is not a training group")
        if self.groups == () and not self.control:
            raise UsageError("nothing to evaluate: no groups and no control")

    @property
    def evaluated_groups(self) -> tuple[str, ...]:
        """Training groups in the grid, in order, then the control group when enabled."""
        trained = self.groups if self.groups is not None else self.training_groups
        return tuple(trained) + ((CONTROL,) if self.control else ())

    @property
    def evaluated_units(self) -> tuple[tuple[str, str], ...]:
        """(method, group) of every column of the grid: each method with each training group, in order,
        then the control group (method '') when enabled."""
        trained = [g for g in self.evaluated_groups if g != CONTROL]
        units = tuple((method, group) for method in self.methods for group in trained)
        return (units + (("", CONTROL),)) if self.control else units

    def embedding_for(self, group: str) -> Path | None:
        return dict(self.embeddings).get(group)
