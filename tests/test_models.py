"""Model files: known names, the download cache with its checksum, and loading without running code."""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from amari.errors import ModelError
from amari.models.files import KNOWN_MODELS, KnownModel, fetch, models_dir, resolve_model_file, safe_torch_load

# 1. Resolving names and paths ---------------------------------------------------------------------


def test_known_names_carry_official_checksums():
    for name in ("RealESRGAN_x4plus", "GFPGANv1.3", "GFPGANv1.4"):
        model = KNOWN_MODELS[name]
        assert model.filename.endswith(".pth")
        assert len(model.sha256) == 64 and int(model.sha256, 16) >= 0
        assert all(url.startswith("https://") and url.endswith(model.filename) for url in model.urls)


def test_known_model_offline_names_the_file_and_where_to_put_it():
    with pytest.raises(ModelError) as error:
        resolve_model_file("RealESRGAN_x4plus")
    message = str(error.value)
    assert "RealESRGAN_x4plus.pth" in message
    assert str(models_dir() / "RealESRGAN_x4plus.pth") in message
    assert "offline" in message
    assert not (models_dir() / "RealESRGAN_x4plus.pth").exists()


def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "model.pth"
    with pytest.raises(ModelError, match="model file not found") as error:
        resolve_model_file(str(missing))
    assert str(missing) in str(error.value)


def test_existing_path_and_cached_known_model_resolve(tmp_path):
    local = tmp_path / "mine.pth"
    local.write_bytes(b"x")
    assert resolve_model_file(str(local)) == local
    # A file the user put into the cache by hand is used without any download.
    model = KNOWN_MODELS["RealESRGAN_x4plus"]
    placed = models_dir() / model.filename
    placed.parent.mkdir(parents=True)
    with open(placed, "wb") as handle:
        handle.truncate(model.size)
    assert resolve_model_file("RealESRGAN_x4plus") == placed
    assert resolve_model_file("RealESRGAN_x4plus.pth") == placed  # the file name works as well


def test_cached_file_of_the_wrong_size_is_reported():
    placed = models_dir() / KNOWN_MODELS["GFPGANv1.4"].filename
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"not the model")
    with pytest.raises(ModelError, match="expected 348632874"):
        resolve_model_file("GFPGANv1.4")


# 2. Downloading once, checked ---------------------------------------------------------------------


def _served_file(tmp_path, content: bytes):
    source = tmp_path / "served" / "weights.pth"
    source.parent.mkdir()
    source.write_bytes(content)
    return source, source.as_uri()


def test_download_verifies_checksum_then_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    content = os.urandom(4096)
    source, url = _served_file(tmp_path, content)
    model = KnownModel("test", "weights.pth", (url,), hashlib.sha256(content).hexdigest(), len(content))
    folder = tmp_path / "cache"
    path = fetch(model, folder)
    assert path == folder / "weights.pth" and path.read_bytes() == content
    source.unlink()  # a second resolve must not download again
    assert fetch(model, folder).read_bytes() == content


def test_download_with_wrong_checksum_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    _, url = _served_file(tmp_path, b"tampered bytes")
    model = KnownModel("test", "weights.pth", (url,), "0" * 64, None)
    folder = tmp_path / "cache"
    with pytest.raises(ModelError, match="checksum"):
        fetch(model, folder)
    assert list(folder.iterdir()) == []


def test_unreachable_download_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    url = (tmp_path / "gone.pth").as_uri()
    model = KnownModel("test", "gone.pth", (url,), None, None)
    with pytest.raises(ModelError, match="could not download gone.pth") as error:
        fetch(model, tmp_path / "cache")
    assert str(tmp_path / "cache" / "gone.pth") in str(error.value)


# 3. Loading without running code ------------------------------------------------------------------


class _WritesFile:
    """Unpickling this calls exec(), which writes a marker file: what a malicious model would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


class _CallsSystem:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'"{sys.executable}" -c "open({self.marker!r}, \'w\')"',))


def test_the_payload_really_runs_under_plain_pickle(tmp_path):
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_WritesFile(marker)))
    assert marker.exists()


@pytest.mark.parametrize("payload", [_WritesFile, _CallsSystem])
@pytest.mark.parametrize("layout", ["torch-zip", "raw-pickle"])
def test_malicious_pickle_is_refused_and_does_not_run(tmp_path, payload, layout):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    if layout == "torch-zip":
        torch.save({"weight": torch.ones(2), "hook": payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"weight": [1.0, 2.0], "hook": payload(marker)}, protocol=2))
    with pytest.raises(ModelError, match="refused to load") as error:
        safe_torch_load(path)
    assert ("exec" in str(error.value)) or ("system" in str(error.value))
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_is_a_model_error(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    state = {"weight": torch.randn(64, 64)}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    assert torch.equal(safe_torch_load(path)["weight"], state["weight"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated or corrupt"):
        safe_torch_load(path)


def test_other_files_are_model_errors(tmp_path):
    tensor_only = tmp_path / "tensor.pth"
    torch.save(torch.ones(3), tensor_only)
    with pytest.raises(ModelError, match="expected a state dict"):
        safe_torch_load(tensor_only)
    wrong_kind = tmp_path / "model.onnx"
    wrong_kind.write_bytes(b"onnx")
    with pytest.raises(ModelError, match="unsupported model file type"):
        safe_torch_load(wrong_kind)
    with pytest.raises(ModelError, match="not found"):
        safe_torch_load(tmp_path / "absent.pth")


def test_training_checkpoint_bookkeeping_loads_without_its_classes(tmp_path, monkeypatch):
    """Stable Diffusion's .ckpt files carry numpy scalars and a Lightning callback beside the weights."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    modules = [types.ModuleType(name) for name in names]
    for module in modules:
        monkeypatch.setitem(sys.modules, module.__name__, module)

    class ModelCheckpoint:
        def __init__(self):
            self.dirpath = "logs"
            self.best_model_score = torch.tensor(0.25)

    ModelCheckpoint.__module__ = names[-1]
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    modules[-1].ModelCheckpoint = ModelCheckpoint
    weights = {"model.diffusion_model.w": torch.randn(4, 4)}
    path = tmp_path / "sd.ckpt"
    torch.save(
        {
            "state_dict": weights,
            "global_step": np.int64(470000),
            "loss": np.float64(0.12),
            "callbacks": {ModelCheckpoint: {"best": torch.tensor(1.0)}},
            "checkpoint_callback": ModelCheckpoint(),
        },
        path,
    )
    for name in names:
        monkeypatch.delitem(sys.modules, name)

    loaded = safe_torch_load(path)
    assert torch.equal(loaded["state_dict"]["model.diffusion_model.w"], weights["model.diffusion_model.w"])
    assert int(loaded["global_step"]) == 470000
    assert "pytorch_lightning" not in sys.modules
