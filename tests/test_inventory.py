"""`amari models list|pull`: which models a study needs, where they are, and fetching them verified.

The commands run as real subprocesses with their own caches; downloads come from a server on
127.0.0.1 or a file:// folder, serving dlib's real model files (whose checksums amari knows).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from amari.errors import ModelError
from amari.faces.descriptors import model_dir
from amari.models.files import models_dir
from amari.models.inventory import DLIB_MODELS, Need, check, needs_from_study, pull
from amari.study.config import study_from_dict

REPO = Path(__file__).resolve().parents[1]
STUDY_2022 = REPO / "configs" / "amari-2022.toml"
SMALL = "mmod_human_face_detector"  # dlib's smallest file (730 kB)
GRID = {"evaluate": {"prompts": ["a photo of amari"], "commands": [{"name": "sd1", "seed": 1}]}}


def amari(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m amari ARGS` in a fresh process, with the test's caches and this checkout's code."""
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "amari", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        cwd=cwd or REPO,
        check=False,
    )


def lines_about(output: str, name: str) -> list[str]:
    """The lines that start with `name`: its table row first, then what is said about it."""
    return [line for line in output.splitlines() if line.startswith(name)]


# 1. What a config needs ---------------------------------------------------------------------------


def test_needs_follow_the_config():
    diffusers = needs_from_study(
        study_from_dict({**GRID, "evaluate": {**GRID["evaluate"], "arcface_model": "arc.onnx"}})
    )
    kinds = {need.role: (need.name, need.kind) for need in diffusers}
    assert kinds["Stable Diffusion"] == ("CompVis/stable-diffusion-v1-4", "hub")
    assert kinds["Real-ESRGAN upscaler (mining)"] == ("RealESRGAN_x4plus", "known")
    assert kinds["GFPGAN face restoration (mining)"] == ("GFPGANv1.4", "known")
    assert kinds["ArcFace ONNX model (second identity score)"][1] == "onnx"
    assert {n.name for n in diffusers if n.kind == "dlib"} == set(DLIB_MODELS)

    plain = needs_from_study(
        study_from_dict(
            {**GRID, "mine": {"enhance": False}, "evaluate": {**GRID["evaluate"], "cnn_second_pass": False}}
        )
    )
    unused = [need for need in plain if need.kind == "unset"]
    assert [n.note for n in unused][:2] == ["enhance = false"] * 2 and not any(n.required for n in unused)
    assert "mmod_human_face_detector" not in {n.name for n in plain}


def test_a_file_of_the_wrong_size_is_damaged_not_present():
    models_dir().mkdir(parents=True)
    (models_dir() / "RealESRGAN_x4plus.pth").write_bytes(b"not a model")
    status = check(Need("RealESRGAN_x4plus", "upscaler", "known"))
    assert status.state == "damaged" and "expected 67040989" in status.detail and not status.ok
    assert check(Need(SMALL, "detector", "dlib")).state == "verified"


# 2. `amari models list` ---------------------------------------------------------------------------


def test_list_on_the_2022_config_names_every_model_and_says_which_are_missing():
    done = amari("models", "list", str(STUDY_2022))
    out = done.stdout
    assert done.returncode == 1, done.stderr
    for name in ("CompVis/stable-diffusion-v1-4", "RealESRGAN_x4plus", "GFPGANv1.4"):
        row = lines_about(out, name)[0]
        assert " missing " in row, row
        assert any(f"{name} is missing:" in line for line in lines_about(out, name))
    for name in DLIB_MODELS:
        assert " verified " in lines_about(out, name)[0]
    assert "ArcFace" in out and "not configured" in out
    # Each missing file says where it goes.
    assert str(models_dir() / "RealESRGAN_x4plus.pth") in out
    assert "hf download CompVis/stable-diffusion-v1-4" in out


def _hub_cache(hf_home: Path, repo_id: str, folder: Path) -> Path:
    """`folder` as the Hugging Face cache stores a download: blobs named by sha256, a snapshot of links."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_a_hub_id_in_the_cache_is_found_and_verified_without_network(tiny_sd, isolated_state, tmp_path):
    hf_home = isolated_state / "hf"
    snapshot = _hub_cache(hf_home, "amari-test/tiny-sd", tiny_sd)
    done = amari("models", "list", "amari-test/tiny-sd", "--verify", env={"HF_HOME": str(hf_home)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert " verified " in lines_about(done.stdout, "amari-test/tiny-sd")[0]

    weights = (snapshot / "unet" / "diffusion_pytorch_model.safetensors").resolve()
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # one byte differs from the hub's sha256
    done = amari("models", "list", "amari-test/tiny-sd", "--verify", env={"HF_HOME": str(hf_home)})
    assert done.returncode == 1 and " damaged " in lines_about(done.stdout, "amari-test/tiny-sd")[0]

    (snapshot / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    done = amari("models", "list", "amari-test/tiny-sd", env={"HF_HOME": str(hf_home)})
    assert done.returncode == 1 and "unet/diffusion_pytorch_model.safetensors" in done.stdout

    # A single-file checkpoint takes only configs and the tokenizer from its model_config.
    checkpoint = tmp_path / "sd-v1-4.safetensors"
    checkpoint.write_bytes(b"weights")
    study = tmp_path / "study.toml"
    study.write_text(
        f'[study]\nmodel = "{checkpoint}"\nmodel_config = "amari-test/tiny-sd"\n'
        f'[mine]\nenhance = false\n[evaluate]\nprompts = ["a photo of amari"]\n'
        f'[[evaluate.commands]]\nname = "sd1"\nseed = 1\n'
    )
    done = amari("models", "list", str(study), env={"HF_HOME": str(hf_home)})
    assert done.returncode == 0, done.stdout
    assert " present " in lines_about(done.stdout, "amari-test/tiny-sd")[0]
    assert " present " in lines_about(done.stdout, str(checkpoint))[0]


# 3. `amari models pull` ---------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving a folder; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


ONLINE = {"HF_HUB_OFFLINE": "0", "AMARI_OFFLINE": "0"}


def test_pull_downloads_from_a_local_server_and_verifies(server, tmp_path):
    served, url = server
    shutil.copyfile(model_dir() / DLIB_MODELS[SMALL].filename, served / DLIB_MODELS[SMALL].filename)
    faces = tmp_path / "faces"
    faces.mkdir()
    done = amari("models", "pull", SMALL, "--mirror", url, env={**ONLINE, "AMARI_FACE_MODELS": str(faces)})
    assert done.returncode == 0, done.stdout + done.stderr
    written = faces / DLIB_MODELS[SMALL].filename
    assert hashlib.sha256(written.read_bytes()).hexdigest() == DLIB_MODELS[SMALL].sha256
    assert f"{SMALL}: verified" in done.stdout
    assert sorted(p.name for p in faces.iterdir()) == [written.name]  # no partial file left behind
    # Pulled once: a second pull has nothing to do.
    again = amari("models", "pull", SMALL, "--mirror", url, env={**ONLINE, "AMARI_FACE_MODELS": str(faces)})
    assert again.returncode == 0 and f"{SMALL}: verified" not in again.stdout


def test_pull_refuses_and_deletes_a_file_whose_checksum_does_not_match(tmp_path):
    served = tmp_path / "mirror"
    served.mkdir()
    good = (model_dir() / DLIB_MODELS[SMALL].filename).read_bytes()
    # Same size, one byte changed: only the SHA-256 can tell.
    (served / DLIB_MODELS[SMALL].filename).write_bytes(good[:1000] + bytes([good[1000] ^ 1]) + good[1001:])
    (served / "RealESRGAN_x4plus.pth").write_bytes(b"\x80" * 4096)
    faces = tmp_path / "faces"
    faces.mkdir()
    done = amari(
        "models",
        "pull",
        SMALL,
        "RealESRGAN_x4plus",
        "--mirror",
        served.as_uri(),
        env={**ONLINE, "AMARI_FACE_MODELS": str(faces)},
    )
    assert done.returncode == 1
    for name in (SMALL, "RealESRGAN_x4plus"):
        [said] = [line for line in lines_about(done.stderr, f"{name}: not pulled")]
        assert "failed its checksum" in said and "nothing was kept" in said
    assert list(faces.iterdir()) == []
    assert not models_dir().exists() or list(models_dir().iterdir()) == []


def test_pull_offline_says_in_one_line_per_missing_model_where_to_put_it():
    done = amari("models", "pull", str(STUDY_2022), env={"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1
    said = [line for line in done.stderr.splitlines() if ": not pulled: " in line]
    assert [line.split(":")[0] for line in said] == ["CompVis/stable-diffusion-v1-4", "RealESRGAN_x4plus", "GFPGANv1.4"]
    assert "offline" in said[0] and "models--CompVis--stable-diffusion-v1-4" in said[0]
    assert str(models_dir() / "RealESRGAN_x4plus.pth") in said[1] and "offline" in said[1]
    assert not models_dir().exists() or list(models_dir().iterdir()) == []


def test_pull_of_a_local_path_is_explained_not_attempted(tmp_path):
    with pytest.raises(ModelError, match="cannot download a local path"):
        pull(Need(str(tmp_path / "sd-v1-4.ckpt"), "Stable Diffusion", "file"))


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Answers at once, then sends the body a byte at a time, a quarter of a second apart, for ever;
    `/moved/NAME` redirects to the same server under another host name."""

    asked: list[float] = []

    def do_GET(self):
        if self.path.startswith("/moved/"):
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/{self.path[7:]}")
            self.end_headers()
            return
        type(self).asked.append(time.monotonic())
        self.send_response(200)
        self.send_header("Content-Length", str(DLIB_MODELS[SMALL].size))
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.25)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def trickle():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_server_that_trickles_ends_the_pull_within_its_timeout(trickle, tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    _Trickle.asked.clear()
    done = amari(
        "models", "pull", SMALL, "--mirror", trickle, "--timeout", "2", env={**ONLINE, "AMARI_FACE_MODELS": str(faces)}
    )
    ended = time.monotonic()
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"{SMALL}: not pulled: ") and "stalled" in line and "2 s" in line, line
    assert ended - _Trickle.asked[0] < 2 + 2.5  # the timeout, and the process ending
    assert list(faces.iterdir()) == []


def test_a_redirect_to_another_host_is_refused(trickle, tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    done = amari(
        "models", "pull", SMALL, "--mirror", trickle + "/moved", env={**ONLINE, "AMARI_FACE_MODELS": str(faces)}
    )
    [line] = done.stderr.strip().splitlines()
    assert done.returncode == 1 and "redirects to another host (localhost)" in line, line


def test_a_download_killed_before_its_rename_leaves_nothing_once_pulled_again(server, tmp_path):
    from crashhooks import crash_command

    served, url = server
    shutil.copyfile(model_dir() / DLIB_MODELS[SMALL].filename, served / DLIB_MODELS[SMALL].filename)
    faces = tmp_path / "faces"
    faces.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **ONLINE, "AMARI_FACE_MODELS": str(faces)}
    args = ["models", "pull", SMALL, "--mirror", url]
    killed = subprocess.run(
        crash_command("amari.models.download:download", 1, "after", *args), env=env, capture_output=True, timeout=300
    )
    assert killed.returncode == -9 and [p.name for p in faces.iterdir() if p.name.endswith(".part")]
    assert amari(*args, env={**ONLINE, "AMARI_FACE_MODELS": str(faces)}).returncode == 0
    assert [p.name for p in faces.iterdir()] == [DLIB_MODELS[SMALL].filename]
