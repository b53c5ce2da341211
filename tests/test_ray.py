"""`--ray` on a local Ray cluster (offline, 127.0.0.1 only): mining and evaluation end as the local
engine's runs do, also when a model actor dies in the middle of a batch."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# Before Ray is imported: a loopback-only cluster with a token of its own, and no telemetry.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", "amari-tests-" + os.urandom(8).hex())
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.pop("RAY_ADDRESS", None)
ray = pytest.importorskip("ray")

from PIL import Image  # noqa: E402

from amari import mine  # noqa: E402
from amari.cli import main  # noqa: E402
from amari.generate import DiffusersSource  # noqa: E402
from amari.storage.layout import WorkspaceLayout  # noqa: E402
from amari.study.config import replace  # noqa: E402
from amari.testing.photos import PhotoGenerator, face_photos  # noqa: E402
from test_evaluate import digest, embedding, evaluate, make_config, sim_group, three_methods  # noqa: E402, F401 - fixtures
from test_mine_diffusers import PROMPT, _end_state, mine_args, mine_config, tiny_esrgan  # noqa: E402, F401
from test_mine_run import mine_args as folder_args  # noqa: E402
from test_mine_run import mined, photos, snapshot  # noqa: E402, F401 - fixtures

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def same_threads(one_thread):
    """Ray's actors compute with one torch thread; local runs here too, so CPU results match bit for bit."""


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local cluster for the module (starting one takes seconds); amari joins it in-process."""
    temp = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths have a length limit
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 << 20,
        log_to_driver=False,
        _temp_dir=temp,
    )
    yield
    ray.shutdown()


def test_the_cluster_listens_on_loopback_only():
    from amari.execution.cluster import Cluster

    with Cluster("") as joined:
        assert "1 node(s), 2 CPUs" in joined.describe()
    loopback = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
    # Ray's own ports (the GCS, the raylet's two) listen on 127.0.0.1 only.
    gcs_port = int(ray.get_runtime_context().gcs_address.rsplit(":", 1)[1])
    ports = {gcs_port} | {node[key] for node in ray.nodes() for key in ("NodeManagerPort", "ObjectManagerPort")}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port = local.split(":")
                if state == "0A" and int(port, 16) in ports:
                    assert address in loopback, (address, int(port, 16))
                    ports.discard(int(port, 16))
    assert not ports  # each was found listening


def test_folder_source_on_ray_ends_as_the_local_run(mined, photos, tmp_path):  # noqa: F811
    folder, reference, _ = photos
    assert main(folder_args(tmp_path / "ws", folder, reference, "--ray")) == 0
    assert snapshot(tmp_path / "ws") == snapshot(mined)


def local_and_on_ray(tiny_sd, esrgan, data_dir, tmp_path, batches: int, *ray: str) -> list[dict]:
    """The end states of the same mining run on the tiny model, locally and with `--ray RAY...`."""
    states = []
    for extra in ([], ["--ray", *ray]):
        workspace = tmp_path / str(len(extra))
        args = mine_args(workspace, tiny_sd, "--reference", str(data_dir / "astronaut.png"), "--seed", "3")
        args += ["--max-batches", str(batches), "--gen-batch", "3", "--option", f"upscaler={esrgan}"]
        args += ["--option", "face_restorer=none", *extra]
        assert main(args) == 0
        states.append(_end_state(workspace))
    return states


def test_tiny_model_on_ray_ends_as_the_local_run(tiny_sd, tiny_esrgan, data_dir, tmp_path):  # noqa: F811
    states = local_and_on_ray(tiny_sd, tiny_esrgan, data_dir, tmp_path, 3, "--ray-actors", "2")
    assert states[0] == states[1]


def test_a_model_actor_killed_in_a_batch_changes_nothing(tiny_sd, tiny_esrgan, tmp_path):  # noqa: F811
    """Photographs stand in for generated images; the first batch kills its actor, which Ray restarts
    and which does the batch again."""
    reference = tmp_path / "reference.png"
    Image.fromarray(face_photos(1, side=160, seed=5)[0]).save(reference)
    states = []
    for ray_address, die_once in ((None, None), ("local", str(tmp_path / "died"))):
        workspace = tmp_path / f"ws-{die_once is not None}"
        config = mine_config(
            tiny_sd, tiny_esrgan, seed=0, max_batches=3, reference=(reference,), tolerance=0.3, ray=ray_address
        )
        step = PhotoGenerator((12, 160, 0), die_once=die_once)
        source = DiffusersSource(PROMPT, config.generate_config(), config.enhance_config(), seed=0, generate_step=step)
        mine.run(config, WorkspaceLayout(workspace), source)
        states.append(_end_state(workspace))
    assert (tmp_path / "died").is_file()  # the actor did die
    assert states[0] == states[1]
    assert {row[3] for row in states[0]["decisions"]} >= {"accepted", "too far"}


def test_evaluate_on_ray_writes_the_local_results(tmp_path, tiny_sd, sim_group, embedding):  # noqa: F811
    local = evaluate(make_config(tmp_path / "local", tiny_sd, sim_group, embedding))
    spread = evaluate(make_config(tmp_path / "ray", tiny_sd, sim_group, embedding, ray="local", ray_actors=2))
    assert local.generated == spread.generated == 8
    assert local.csv.read_text() == spread.csv.read_text()


def test_evaluate_on_ray_loads_and_unloads_each_units_lora(three_methods, tmp_path):  # noqa: F811
    """One actor makes the passes of ti, lora, pivotal and the control group in turn: each LoRA is swapped in
    and out of the actor's one pipeline as the local run's are, so every image and score is the same."""
    config, local = three_methods
    spread = evaluate(replace(config, "evaluate", results=tmp_path / "ray", ray="local", ray_actors=1))
    assert spread.generated == local.generated == 16
    assert spread.csv.read_text() == local.csv.read_text()
    for cell in local.cells:  # the tiny model draws no face to score: the images themselves are compared
        assert digest(spread.results_dir / cell.image) == digest(local.results_dir / cell.image), cell.image


def test_ray_missing_is_one_line(tmp_path):
    script = "import sys; sys.modules['ray'] = None; from amari.cli import main; sys.exit(main(sys.argv[1:]))"
    folder = tmp_path / "folder"
    folder.mkdir()
    args = ["mine", "--workspace", str(tmp_path / "ws"), "--source", f"folder:{folder}", "--ray"]
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True)
    assert done.returncode != 0
    expected = 'amari mine: error: --ray needs Ray, an optional extra: pip install "amari[ray]"'
    assert done.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "ws").exists()


def test_a_killed_driver_leaves_none_of_its_clusters_processes(photos, tmp_path):  # noqa: F811
    """SIGKILL of `amari mine --ray` in the middle of a run: the local cluster it started (GCS, raylet,
    agents, workers) is gone within seconds, not the minute Ray's agents take to notice by themselves."""
    from crashhooks import crash_command
    from test_failures import _session_members

    folder, reference, _ = photos
    args = folder_args(tmp_path / "ws", folder, reference, "--ray")
    command = crash_command("amari.mine.engine:Engine._pump", 2, "before", *args)
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}  # a cluster of its own
    miner = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    _, err = miner.communicate(timeout=300)
    assert miner.returncode == -9, err.decode()[-2000:]
    deadline = time.monotonic() + 20
    while _session_members(miner.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session_members(miner.pid) == []


def test_a_seed_gives_the_same_pixels_on_ray_as_a_local_run_on_as_many_threads(
    tiny_sd,
    tiny_esrgan,  # noqa: F811
    data_dir,
    tmp_path,
):
    """Model actors compute with the driver's torch threads (two here), not the one Ray gives an actor
    without CPUs: a single thread sums in another order, and a few pixel values come out a level apart."""
    import torch

    torch.set_num_threads(2)
    try:
        states = local_and_on_ray(tiny_sd, tiny_esrgan, data_dir, tmp_path, 2)
    finally:
        torch.set_num_threads(1)
    assert states[0]["files"] == states[1]["files"] and len(states[0]["files"]) >= 4


def test_a_model_actor_killed_while_it_loads_is_restarted_and_loads_again(tmp_path):
    """The first warm-up call kills its actor, as a GPU worker lost while it loads the models."""
    from amari.execution.cluster import Cluster, ModelPool
    from amari.generate import GenerateConfig

    step, config = PhotoGenerator((1, 64, 0), die_once=str(tmp_path / "died")), GenerateConfig(steps=1)
    with Cluster("") as cluster:
        pool = ModelPool(cluster, 1)
        try:
            pool.warm_up(step, PROMPT, [0], config)
            assert (tmp_path / "died").is_file() and pool.redone >= 1
            assert len(pool.submit(step, PROMPT, [1], config).result(timeout=120)) == 1
        finally:
            pool.shutdown()


def test_a_cluster_address_where_nothing_listens_is_one_line_at_once(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    folder = tmp_path / "folder"
    folder.mkdir()
    args = ["mine", "--workspace", str(tmp_path / "ws"), "--source", f"folder:{folder}", "--ray", f"127.0.0.1:{port}"]
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "amari", *args], capture_output=True, text=True, timeout=120)
    assert time.monotonic() - began < 60
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"amari mine: error: cannot join the Ray cluster at 127.0.0.1:{port}: nothing answers at 127.0.0.1:{port} "
        "(Connection refused)"
    ]


def _carrying(name: str, value: str) -> list[int]:
    """Live processes whose environment holds name=value (inherited however they were started)."""
    found = []
    wanted = f"{name}={value}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_driver_killed_while_it_starts_its_cluster_leaves_none_of_its_processes(photos, tmp_path):  # noqa: F811
    """SIGKILL once ray.init() has started the cluster's processes and before it returns: the reaper,
    started first, stops them and the agents they started (in sessions of their own) within seconds."""
    from crashhooks import crash_command

    folder, reference, _ = photos
    args = folder_args(tmp_path / "ws", folder, reference, "--ray")
    command = crash_command("ray._private.worker:connect", 1, "before", *args)
    tag = os.urandom(8).hex()  # every process the driver starts, and they start, inherits it
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    # Its output to a file: a pipe would be waited on until every process holding it ended.
    with open(tmp_path / "stderr", "wb") as err:
        miner = subprocess.run(command, env={**env, "AMARI_TEST_RUN": tag}, stdout=subprocess.DEVNULL, stderr=err)
    assert miner.returncode == -9, (tmp_path / "stderr").read_text()[-2000:]
    deadline = time.monotonic() + 20
    while _carrying("AMARI_TEST_RUN", tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _carrying("AMARI_TEST_RUN", tag) == []
