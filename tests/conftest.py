"""Shared fixtures: real photos from tests/data, an isolated cache, and no network."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from amari.study.demo import SAMPLE_FACES

# A shell that starts pytest in the background ignores SIGINT for it, and its children would inherit
# that: the tests that stop a miner with SIGINT (as Ctrl-C does) need them to hear it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

DATA = Path(__file__).parent / "data"


def pytest_collection_modifyitems(config, items):
    """The fast lane first: tests marked slow (several seconds each: subprocess crash sweeps, whole
    studies, full-size models) run after every other test, so a broken change shows up in a minute.
    `pytest -m "not slow"` runs the fast lane alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)


@pytest.fixture(scope="session", autouse=True)
def isolated_session_state(tmp_path_factory):
    """Module- and session-scoped fixtures (a training run, an evaluated grid) get a cache of the session's
    own too: they are set up before any test's `isolated_state`, and must never touch the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMARI_CACHE_DIR", str(tmp_path_factory.mktemp("amari-session") / "cache"))
        yield


@pytest.fixture(autouse=True)
def isolated_state(tmp_path_factory, monkeypatch):
    """Every test gets its own embedding cache and Hugging Face cache folder."""
    home = tmp_path_factory.mktemp("amari-home")
    monkeypatch.setenv("AMARI_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


T1_BOXES = SAMPLE_FACES  # dlib's face boxes (top, right, bottom, left) in t1.jpg, the sample photo


@pytest.fixture(scope="session")
def t1_people(tmp_path_factory, data_dir) -> list[Path]:
    """Six single-face crops of t1.jpg (six different people), as PNG files."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("t1-people")
    photo = Image.open(data_dir / "t1.jpg").convert("RGB")
    paths = []
    for index, (top, right, bottom, left) in enumerate(T1_BOXES):
        margin = (bottom - top) // 2 + 20
        crop = photo.crop(
            (
                max(0, left - margin),
                max(0, top - margin),
                min(photo.width, right + margin),
                min(photo.height, bottom + margin),
            )
        )
        path = folder / f"person{index}.png"
        crop.save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    """A tiny random-weight Stable Diffusion folder (64×64 output, ~8 MB), built once per session."""
    from amari.testing.sd import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "model")


@pytest.fixture(scope="session")
def tiny_ip_adapter(tmp_path_factory, tiny_sd) -> Path:
    """A tiny random-weight IP-Adapter ("plus" layout) for `tiny_sd`, its image encoder in image_encoder/
    beside it, as h94/IP-Adapter lays them out; the weights file's path."""
    from amari.testing.ip_adapter import build_tiny_ip_adapter

    return build_tiny_ip_adapter(tmp_path_factory.mktemp("ip-adapter"), tiny_sd)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: for models this small, two threads spin more than they compute."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def astronaut(data_dir):
    """The astronaut photo as an RGB array (one real face; HOG also reports a false one on the suit)."""
    from amari.storage.images import load_rgb

    return load_rgb(data_dir / "astronaut.png")


@pytest.fixture(scope="session")
def people(data_dir) -> dict[str, list[Path]]:
    """Real photos of several people (tests/data/people, one folder per person), by person."""
    folders = sorted(p for p in (data_dir / "people").iterdir() if p.is_dir())
    return {folder.name: sorted(folder.glob("*.jpg")) for folder in folders}


@pytest.fixture(scope="session")
def people_faces(people):
    """(descriptors, labels, paths) of every photo of `people`: one face each, found once per session."""
    import numpy as np

    from amari.faces import descriptors as face_lib
    from amari.storage.images import load_rgb

    paths = [path for photos in people.values() for path in photos]
    descriptors = np.array([face_lib.encode(load_rgb(path))[0].descriptor for path in paths])
    labels = np.array([path.parent.name for path in paths])
    return descriptors, labels, paths


@pytest.fixture(scope="session")
def mined(tmp_path_factory, data_dir):
    """A workspace mined once from real photos with `amari mine --source folder:` (the astronaut's variants
    join the group; other people, faceless and broken files go to unknown-person). Copy it before
    changing it (`serving.copy_workspace`)."""
    import numpy as np
    from PIL import Image

    from amari.cli import main
    from serving import Mined
    from test_mine_run import ASTRONAUT_FACE, build_photo_folder, face_variant, mine_args

    root = tmp_path_factory.mktemp("mined")
    kinds = build_photo_folder(root / "photos", data_dir)
    reference = root / "reference.png"
    astronaut = Image.open(data_dir / "astronaut.png").convert("RGB")
    face_variant(astronaut, ASTRONAUT_FACE, np.random.default_rng(99)).save(reference)
    assert main(mine_args(root / "ws", root / "photos", reference)) == 0
    return Mined(root / "ws", root / "photos", reference, kinds)
