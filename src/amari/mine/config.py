"""The miner's settings: one frozen dataclass for `amari mine` and a study's [mine] table alike.

Generation settings left unset (None) come from the preset (`fast` on the command line, `study` in a
study); `--option KEY=VALUE` reaches any other generation or enhancement setting by name
(`dtype`, `compile`, `tile`, `half`, ...), typed by the field it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amari.config.defaults import DEFAULT_MODEL
from amari.config.limits import MAX_COUNT, check_at_most
from amari.config.settings import (
    Settings,
    check_cpus,
    check_positive,
    convert,
    resolve_path,
    setting,
    type_hints,
)
from amari.errors import UsageError
from amari.execution.cluster import actors_setting, address_setting
from amari.faces.settings import FaceSettings
from amari.mine.options import key_value, options_table, resolve_option

DIFFUSERS = "diffusers"
FOLDER_PREFIX = "folder:"


def _source(value: Any, where: str, base: Path) -> str:
    text = convert(value, str, where, base)
    if text.startswith(FOLDER_PREFIX) and len(text) > len(FOLDER_PREFIX):
        return FOLDER_PREFIX + str(resolve_path(text[len(FOLDER_PREFIX) :], base))
    return text


@dataclass(frozen=True)
class MineConfig(Settings):
    """Where candidates come from, how they are made, and how the sim-group judges them."""

    prompt: str = setting("", "the text prompt (needed by the diffusers source)", metavar="TEXT")
    negative_prompt: str = setting("", "what generated images avoid", metavar="TEXT")
    source: str = setting(
        DIFFUSERS,
        "where candidates come from: diffusers, or folder:PATH to copy images another "
        "tool (A1111, ComfyUI, InvokeAI) writes into PATH",
        metavar="diffusers|folder:PATH",
        toml_type=_source,
    )
    reference: tuple[Path, ...] = setting(
        (), "images that seed the group (default: the tightest pair of faces seen)", nargs="+", metavar="IMG"
    )
    # The model; a study sets these once in its [study] table.
    model: str = setting(
        DEFAULT_MODEL,
        "Stable Diffusion model: Hugging Face id, diffusers folder or .ckpt/.safetensors file",
        metavar="ID_OR_PATH",
        study=True,
    )
    model_config: str | None = setting(
        None,
        "a diffusers folder or Hugging Face id that gives a single-file model its component configs (needed offline)",
        metavar="DIR_OR_ID",
        study=True,
    )
    device: str = setting("auto", "where generation and enhancement run: auto, cuda[:N], mps or cpu", study=True)
    vae: str | None = setting(
        None,
        "a replacement VAE: folder, Hugging Face id or file (e.g. madebyollin/sdxl-vae-fp16-fix for SDXL in float16)",
        metavar="DIR_ID_OR_FILE",
        study=True,
    )
    biometric_licence: str | None = setting(
        None,
        "the licence that permits biometric processing with a model whose own licence forbids it (FLUX.1 "
        "[dev]); without it such weights are refused",
        metavar="TEXT",
        study=True,
    )
    # Generation: None takes the preset's value.
    preset: str = setting(
        "fast",
        "named generation settings: fast (the model family's sampler and steps), or study (the 2022 study's "
        "DDIM 250 steps, for SD 1.x)",
        metavar="NAME",
        group="generation",
    )
    seed: int | None = setting(None, "first seed (default: random seeds)", metavar="N", group="generation")
    sampler: str | None = setting(None, "sampler (default: the preset's, else the model family's)", group="generation")
    steps: int | None = setting(
        None, "denoising steps (default: the preset's, else the model family's)", group="generation"
    )
    guidance: float | None = setting(
        None, "classifier-free guidance (default: the preset's, else the model family's)", group="generation"
    )
    width: int | None = setting(None, "image width (default: the preset's, else the model's)", group="generation")
    height: int | None = setting(None, "image height (default: the preset's, else the model's)", group="generation")
    images_per_call: int | None = setting(
        None,
        "images the generator makes per batch (default: on a GPU, what its free memory holds, 16 on an 80 GB "
        "card; elsewhere the preset's)",
        flag=("--gen-batch", "--images-per-call"),
        metavar="N",
        group="generation",
    )
    enhance: bool = setting(
        True,
        "judge generated images as they come, without upscaling them or restoring their faces first (see "
        "--enhancement; the study enhanced them)",
        flag="--no-enhance",
        group="generation",
    )
    enhancement: str = setting(
        "auto",
        "upscale: Real-ESRGAN then GFPGAN face restoration (the 2022 study's, for 512² models); restore: "
        "face restoration alone, at the generated size; auto: the model family's (upscale for SD 1.x/2.x, "
        "restore for SDXL and FLUX.1)",
        choices=("auto", "upscale", "restore"),
        group="generation",
    )
    offload: bool = setting(
        False,
        "model CPU offload: each part of the model moves to the GPU only while it runs (FLUX.1 on a GPU "
        "with less memory than it needs in bf16; slower)",
        group="generation",
    )
    upscaler: str | None = setting(
        "RealESRGAN_x4plus", "known upscaler name or a .pth/.safetensors path; none: resize only", group="generation"
    )
    face_restorer: str | None = setting(
        "GFPGANv1.4", "known GFPGAN name or a model path; none: no restoration", group="generation"
    )
    scale: float | None = setting(
        None,
        "final size of enhanced images relative to generated ones (default: 2 with upscale, 1 with restore)",
        group="generation",
    )
    early_reject: bool = setting(
        True,
        "enhance every image, also one whose raw face is so far from the group that enhancing could not change "
        "its verdict (by default such an image is judged raw, unenhanced)",
        flag="--no-early-reject",
        group="generation",
    )
    reject_margin: float = setting(
        0.10, "how far beyond the almost band a raw face must be to skip enhancement", group="generation"
    )
    options: tuple[tuple[str, str], ...] = setting(
        (),
        "any other generation or enhancement setting by name, e.g. dtype=float16, tile=256 (repeatable)",
        flag="--option",
        action="append",
        cli_type=key_value,
        toml_type=options_table,
        metavar="KEY=VALUE",
        group="generation",
    )
    # Judging.
    target: int = setting(100, "group size to reach (the original's 'more than 99'; e.g. 312)", metavar="N")
    tolerance: float = setting(
        0.40,
        "done when the group's average sim-score is at most this",
        flag=("--stop-average", "--tolerance"),
        metavar="D",
    )
    almost_band: float = setting(0.10, "width of the almost-sim band above the upper bound", metavar="D")
    max_batches: int | None = setting(None, "stop after batch N of the workspace (earlier runs count)", metavar="N")
    # How an empty group starts without --reference (docs/mining.md, "The cluster start").
    start: str = setting(
        "pair",
        "how an empty group starts without --reference: pair (the two closest faces seen so far) or cluster "
        "(the largest coherent cluster of the first --start-candidates faces)",
        choices=("pair", "cluster"),
        group="start",
    )
    start_candidates: int = setting(
        32,
        "cluster start: faces to gather first (a folder with fewer is clustered once read)",
        metavar="N",
        group="start",
    )
    start_min_size: int = setting(
        3, "cluster start: faces a cluster needs to seed the group", metavar="N", group="start"
    )
    start_clustering: str = setting(
        "chinese-whispers",
        "cluster start: chinese-whispers (dlib's) or dbscan",
        choices=("chinese-whispers", "dbscan"),
        group="start",
    )
    start_threshold: float = setting(
        0.6,
        "cluster start: faces closer than this are linked (dlib's same-person threshold)",
        metavar="D",
        group="start",
    )
    # Guided generation (docs/mining.md, "Guided generation").
    ip_adapter: str | None = setting(
        None,
        "guide generation with an IP-Adapter once the group holds --guide-from faces: plus-face or full-face "
        "(h94/IP-Adapter's face variants for the model's family; never FaceID, whose insightface weights are "
        "non-commercial), or a .safetensors file",
        metavar="NAME_OR_FILE",
        group="guidance",
    )
    image_encoder: str | None = setting(
        None,
        "the IP-Adapter's CLIP image encoder folder (default: image_encoder/ beside the file, or the variant's)",
        metavar="DIR",
        group="guidance",
    )
    ip_adapter_scale: float = setting(
        0.5, "how strongly the group's faces steer generation (0: not at all)", metavar="S", group="guidance"
    )
    guide_from: int = setting(4, "group size from which generation is guided", metavar="K", group="guidance")
    guide_images: int = setting(
        8, "the group's most typical faces (lowest member score) whose mean guides", metavar="N", group="guidance"
    )
    # Many identities (docs/identities.md).
    identities: int = setting(
        1,
        "identities to mine at once, each a sim-group under its own policy state, founded from clusters of "
        "the faces no identity took; done when K identities each reach the target",
        metavar="K",
        group="identities",
    )
    found_size: int = setting(
        3, "faces a cluster of unplaced faces needs to found an identity", metavar="N", group="identities"
    )
    separation: float = setting(
        0.6,
        "least distance between two identities' centroids (dlib's same-person threshold): a cluster nearer an "
        "identity founds none, and of two identities that come nearer, the smaller is retired",
        metavar="D",
        group="identities",
    )
    cluster_threshold: float = setting(
        0.5,
        "unplaced faces closer than this are linked when they are clustered (Chinese Whispers)",
        metavar="D",
        group="identities",
    )
    faces: FaceSettings = setting(FaceSettings(), "how faces are found", include=("detector", "upsample", "max_side"))
    engine: str = setting(
        "streaming",
        "streaming: generation runs ahead while worker processes finish "
        "images; serial: one step after the other, for comparison",
        choices=("streaming", "serial"),
        runtime=True,
    )
    cpus: int | None = setting(
        None, "worker processes of the streaming engine; -1 means all cores (default: all cores but one)", runtime=True
    )
    ray: str | None = address_setting("generation and CPU work")
    ray_actors: int | None = actors_setting()
    watch: bool = setting(False, "folder source: keep waiting for new files", toml=False, runtime=True)
    poll: float = setting(2.0, "seconds between looks at a watched folder", metavar="SECONDS", toml=False, runtime=True)

    def check(self) -> None:
        if self.source == FOLDER_PREFIX:
            raise UsageError("--source folder:PATH needs a folder, e.g. folder:/outputs/txt2img-images")
        if self.source != DIFFUSERS and not self.source.startswith(FOLDER_PREFIX):
            raise UsageError(f"unknown source {self.source!r}: source must be 'diffusers' or 'folder:PATH'")
        if self.source == DIFFUSERS and not self.prompt.strip():
            raise UsageError("the diffusers source needs --prompt TEXT (prompt in a study's [mine])")
        extra = self._resolve_options()
        object.__setattr__(self, "_extra", extra)
        check_positive(
            max_batches=self.max_batches,
            steps=self.steps,
            width=self.width,
            height=self.height,
            images_per_call=self.images_per_call,
            ray_actors=self.ray_actors,
            scale=self.scale,
            poll=self.poll,
        )
        if self.guidance is not None and self.guidance < 0:  # 0: no guidance, as FLUX.1 [schnell] samples
            raise UsageError(f"guidance must be >= 0, not {self.guidance}")
        self.founding()
        if self.identities > 1 and self.reference:
            raise UsageError(
                "--reference seeds a single identity; with --identities K, identities are founded from clusters"
            )
        if self.identities > 1 and (self.start != "pair" or self.ip_adapter is not None):
            raise UsageError(
                "--start cluster and --ip-adapter steer a single identity; with --identities K, identities are "
                "founded from clusters"
            )
        check_at_most(MAX_COUNT, "each is counted one by one", target=self.target, max_batches=self.max_batches)
        if self.reject_margin < 0:
            raise UsageError(f"reject_margin must be >= 0, not {self.reject_margin}")
        if self.cpus is not None:
            check_cpus(self.cpus)
        if self.ray is not None:
            from amari.execution.cluster import require_ray

            if self.engine == "serial":
                raise UsageError("--ray runs the streaming engine; leave out --engine serial")
            require_ray(self.ray)
        if self.enhancement not in ("auto", "upscale", "restore"):
            raise UsageError(f"enhancement must be auto, upscale or restore, not {self.enhancement!r}")
        if self.engine not in ("streaming", "serial"):
            raise UsageError(f"unknown engine {self.engine!r}: use streaming or serial")
        self.policy()
        self.start_config()
        self._check_guidance()
        if self.source == DIFFUSERS:
            from amari.models.families.registry import known
            from amari.models.licences import check_biometric_use

            generate = self.generate_config()
            self.enhance_config()
            family = known(self.model)
            if family is not None:
                family.check_sampler(generate.scheduler)
            check_biometric_use(self.model, self.biometric_licence, "amari mine")

    def _check_guidance(self) -> None:
        if self.ip_adapter is None:
            return
        from amari.generate import check_adapter_weights

        if self.source != DIFFUSERS:
            raise UsageError("--ip-adapter guides Stable Diffusion; a folder source takes images as they are")
        check_adapter_weights(self.ip_adapter)
        check_positive(guide_from=self.guide_from, guide_images=self.guide_images)
        if not self.ip_adapter_scale >= 0:
            raise UsageError(f"--ip-adapter-scale must be >= 0, not {self.ip_adapter_scale}")

    @property
    def worker_processes(self) -> int:
        """How many worker processes the streaming engine starts."""
        import os

        cores = os.cpu_count() or 1
        if self.cpus is None:
            return max(1, cores - 1)
        return cores if self.cpus == -1 else self.cpus

    @property
    def folder(self) -> Path | None:
        """The folder of a folder source."""
        if not self.source.startswith(FOLDER_PREFIX):
            return None
        rest = self.source[len(FOLDER_PREFIX) :]
        return Path(rest).expanduser() if rest else None

    def policy(self):
        """The policy's settings (`amari.mine.policy.PolicyConfig`)."""
        from amari.mine.policy import PolicyConfig

        try:
            return PolicyConfig(almost_band=self.almost_band, target=self.target, stop_average=self.tolerance)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def start_config(self):
        """How an empty group starts (`amari.mine.start.StartConfig`)."""
        from amari.mine.start import StartConfig

        try:
            return StartConfig(
                self.start, self.start_candidates, self.start_min_size, self.start_clustering, self.start_threshold
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def founding(self):
        """How identities are founded (`amari.mine.identities.FoundingConfig`)."""
        from amari.mine.identities import FoundingConfig

        try:
            return FoundingConfig(self.identities, self.found_size, self.separation, self.cluster_threshold)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    # -- --option KEY=VALUE ---------------------------------------------------------------------------

    def _resolve_options(self) -> dict[str, dict[str, Any]]:
        """Typed values of --option: the miner's own fields are set, the rest kept for generate/enhance."""
        extra = {"generate": {}, "enhance": {}}
        for key, text in self.options:
            target, name, value = resolve_option(key, text, type_hints(MineConfig))
            if target == "mine":
                object.__setattr__(self, name, value)
            else:
                extra[target][name] = value
        return extra

    def unused_options(self) -> list[str]:
        """Generation and enhancement options a folder source ignores (worth a warning)."""
        return [key for key, _ in self.options] if self.source != DIFFUSERS else []

    # -- what the diffusers source is given ----------------------------------------------------------

    def generate_config(self):
        from amari.generate import preset_config

        overrides = dict(
            scheduler=self.sampler,
            steps=self.steps,
            guidance_scale=self.guidance,
            width=self.width,
            height=self.height,
            batch_size=self.images_per_call,
            device=self.device,
            model_config=self.model_config,
            negative_prompt=self.negative_prompt or None,
            vae=self.vae,
            offload=self.offload or None,
        )
        overrides.update(self._extra["generate"])
        return preset_config(self.preset, model=self.model, **overrides)

    def enhancement_mode(self) -> str:
        """upscale or restore: the setting, or the model family's when it is auto."""
        if self.enhancement != "auto":
            return self.enhancement
        from amari.models.families.registry import guess

        return guess(self.model).defaults.enhancement

    def enhance_config(self):
        """None when enhancement is off (or restores faces, with no face restorer)."""
        from amari.enhance import EnhanceConfig

        if not self.enhance:
            return None
        if self.enhancement_mode() == "upscale":
            upscaler, scale = self.upscaler, 2.0 if self.scale is None else self.scale
        else:  # faces restored at the generated size: a 1024² image gains nothing from upscaling to judge it
            if self.face_restorer is None:
                return None
            upscaler, scale = None, 1.0 if self.scale is None else self.scale
        values = dict(upscaler=upscaler, face_restorer=self.face_restorer, scale=scale, device=self.device)
        values.update(self._extra["enhance"])
        return EnhanceConfig(**values)
