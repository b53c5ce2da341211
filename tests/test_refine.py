"""`amari refine` on the tiny model: two rounds, the table, round 2 mining with round 1's identity (and saying
so in every image: the rounds are pivotal, so round 1's embedding and its LoRA), warm starts, and SIGKILL in each round
resumed to the uninterrupted run's result.

Real photos of one person seed the group (`[mine] reference`): the tiny model draws noise, so no
candidate ever joins, but every step of every round runs for real."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from amari.cli import main
from amari.errors import UsageError
from amari.mine import MineConfig
from amari.provenance.png import read_provenance
from amari.refine import RefineConfig
from amari.storage.files import file_sha256
from amari.storage.images import image_files
from amari.storage.rounds import COLUMNS, read_rounds
from amari.study.config import load_refine
from crashhooks import crash_command

TIMINGS = ("mine_seconds", "train_seconds")


def study_toml(folder: Path, model: Path, references: list[Path], **refine) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    table = {"rounds": 2, "batches": 1, "steps": 2, "method": "ti", **refine}
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in table.items())
    path = folder / "study.toml"
    path.write_text(f"""
[study]
name = "refined"
out = {json.dumps(str(folder / "study"))}
model = {json.dumps(str(model))}
device = "cpu"

[mine]
prompt = "a photo of a woman"
reference = {json.dumps([str(p) for p in references])}
seed = 11
preset = "fast"
steps = 2
images_per_call = 4
enhance = false
engine = "serial"

[refine]
{lines}

[prepare]
size = 64
seed = 1

[train]
resolution = 64
repeats = 1
sample_seeds = [1]
sample_steps = 1
mixed_precision = "no"
""")
    return path


def refine(config: Path) -> None:
    """`amari refine CONFIG` in this process, on one torch thread as the killed runs have (OMP_NUM_THREADS=1):
    for models this small a second thread spins more than it computes, and a sum split over another number
    of threads rounds otherwise, which the comparison of identities would see."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["refine", str(config), "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def refined(tmp_path_factory, tiny_sd, people):
    """Two uninterrupted rounds (for the whole session: the crash test, in the slow lane, compares with it)."""
    config = study_toml(tmp_path_factory.mktemp("refined"), tiny_sd, people["obama"], method="pivotal")
    refine(config)
    return config.parent / "study"


def comparable(study: Path) -> dict:
    """What must not depend on kills and resumes: the table (not its clock times), every decision, the judged
    images' pixels, and each round's identity. Files are compared by what they hold, since safetensors
    writes its header's metadata in an order of its own in each process (and images name those files'
    hashes)."""
    from safetensors.torch import load_file

    from amari.storage.images import load_rgb

    rows = [{k: v for k, v in vars(r).items() if k not in TIMINGS} for r in read_rounds(study / "refine/rounds.csv")]
    conn = sqlite3.connect(study / "mine/mine.sqlite")
    try:
        decisions = conn.execute(
            "SELECT d.batch, i.folder, i.name, d.verdict, d.reason, d.score FROM decisions d "
            "JOIN images i ON i.id = d.image_id ORDER BY d.id"
        ).fetchall()
    finally:
        conn.close()
    pixels = {
        path.name: load_rgb(path).tobytes() for path in image_files(study / "mine") if "incoming" not in path.parts
    }
    identities = {
        path.relative_to(study).as_posix(): {key: value.tolist() for key, value in load_file(path).items()}
        for path in sorted((study / "refine").glob("round-*/train/*.safetensors"))
    }
    return {"rounds": rows, "decisions": decisions, "pixels": pixels, "identities": identities}


@pytest.mark.slow
def test_two_rounds_write_their_table_and_round_2_names_round_1s_identity(refined, people):
    rounds = read_rounds(refined / "refine/rounds.csv")
    assert [(r.round, r.guided_by, r.trained, r.candidates) for r in rounds] == [
        (1, "", "amari-r1", 4),
        (2, "amari-r1", "amari-r2", 4),
    ]
    first = rounds[0]
    assert first.accepted == 0 and first.acceptance == 0 and first.group_size == len(people["obama"])
    assert 0 < first.group_mean < 0.4 and first.yaw_sd is not None and first.mine_seconds > 0
    assert first.train_seconds > 0 and not first.target_reached
    header = (refined / "refine/rounds.csv").read_text().splitlines()[0].split(",")
    assert header == COLUMNS + ["acceptance", "seconds_per_accepted"]
    assert (refined / "refine/rounds.png").read_bytes()[:4] == b"\x89PNG"

    named = set()
    for path in image_files(refined / "mine/unknown-person"):
        found = read_provenance(path)
        lora = re.sub("[0-9a-f]{12}$", "HASH", found.fields.get("Lora hashes") or "")
        named.add((found.fields.get("TI hashes"), lora, found.amari["prompt"]))
    embedding = file_sha256(refined / "refine/round-01/train/amari-r1.safetensors")[:12]
    assert named == {  # A1111 finds each file by its name
        (None, "", "a photo of a woman"),  # round 1: the plain prompt
        (f"amari-r1: {embedding}", "amari-r1-lora: HASH", "a photo of a amari-r1"),
    }


@pytest.mark.slow
def test_each_round_starts_from_the_last_and_a_finished_loop_does_nothing_more(refined):
    before = refined / "refine/round-01/train"
    record = json.loads((refined / "refine/round-02/train/run.json").read_text())
    assert record["settings"]["warm_start"] == "+".join(  # the token's vectors and the LoRA, both
        file_sha256(before / name) for name in ("learned_embeds.safetensors", "pytorch_lora_weights.safetensors")
    )
    assert "warm_start" not in json.loads((refined / "refine/round-01/train/run.json").read_text())["settings"]
    finished = comparable(refined)
    refine(refined.parent / "study.toml")
    assert comparable(refined) == finished


def test_what_the_rounds_cannot_work_with_is_refused(tmp_path, tiny_sd, people, capsys):
    config = study_toml(tmp_path / "a", tiny_sd, people["obama"])
    text = config.read_text()
    config.write_text(text.replace('prompt = "a photo of a woman"', 'prompt = "a photo of a person"'))
    assert main(["refine", str(config)]) == 2
    assert "must hold the init word 'woman'" in capsys.readouterr().err
    config.write_text(text.replace("[mine]\n", f'[mine]\nsource = "folder:{tmp_path}"\n'))
    assert main(["refine", str(config)]) == 2
    assert "a folder source cannot be steered" in capsys.readouterr().err
    config.write_text(re.sub(r"reference = .*\n", "identities = 2\n", text))
    assert main(["refine", str(config)]) == 2
    assert "refine grows a single identity" in capsys.readouterr().err
    with pytest.raises(UsageError, match="steer a single identity"):
        MineConfig(source=f"folder:{tmp_path}", identities=2, start="cluster")
    with pytest.raises(UsageError, match="lower-case"):
        RefineConfig(name="Amari")
    assert load_refine(config).refine.rounds == 2  # a study's other tables are not needed


@pytest.mark.slow
def test_killed_in_each_round_resumes_to_the_uninterrupted_result(refined, tmp_path, tiny_sd, people):
    config = study_toml(tmp_path, tiny_sd, people["obama"], method="pivotal")
    args = ("refine", str(config), "--quiet")
    # Round 1: after its mining's first batch is written, before the loop notes that the round has mined.
    # Round 2: in its first training step (round 1 trains two steps first, in the resumed run).
    for target, calls in (("amari.mine.workspace:Workspace.commit", 2), ("amari.train.loop:train_step", 3)):
        command = crash_command(target, calls, "after", *args)
        killed = subprocess.run(command, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    state = json.loads((config.parent / "study/refine/refine.json").read_text())
    assert state["steps"]["2"]["mined"] and not state["steps"]["2"]["trained"]  # killed where intended
    refine(config)
    assert comparable(config.parent / "study") == comparable(refined)
