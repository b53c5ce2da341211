"""The miner's `diffusers` source: end to end offline with a tiny model, early rejection on real faces
(photographs stand in for generated images), seeds across runs, options."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from PIL import Image

from amari import mine
from amari.cli import main
from amari.errors import UsageError
from amari.generate import DiffusersSource, preset_config
from amari.mine import MineConfig
from amari.mine.policy import rejects_early
from amari.provenance.png import read_provenance
from amari.storage.images import image_files, load_rgb
from amari.storage.layout import WorkspaceLayout
from amari.testing.enhance import build_random_esrgan
from amari.testing.photos import PhotoGenerator, face_photos

PROMPT = "a photo of a woman"


@pytest.fixture(scope="module")
def tiny_esrgan(tmp_path_factory):
    return build_random_esrgan(tmp_path_factory.mktemp("esrgan") / "tiny_x4.pth", num_filters=8)


def mine_config(tiny_sd, esrgan=None, **extra) -> MineConfig:
    enhance = {"upscaler": str(esrgan), "face_restorer": "none"} if esrgan else {"enhance": False}
    own = ("seed", "preset", "reference", "max_batches", "engine", "cpus", "tolerance", "target", "ray")
    fields = {key: extra.pop(key) for key in own if key in extra}  # the rest go through --option
    options = tuple((key, str(value)) for key, value in {"steps": 2, **enhance, **extra}.items())
    return MineConfig(prompt=PROMPT, model=str(tiny_sd), options=options, **fields)


def mine_args(workspace, tiny_sd, *extra):
    return [
        "mine",
        "--workspace",
        str(workspace),
        "--source",
        "diffusers",
        "--model",
        str(tiny_sd),
        "--prompt",
        PROMPT,
        "--option",
        "steps=2",
        "--quiet",
        *extra,
    ]


def test_mine_runs_end_to_end_offline(tiny_sd, tiny_esrgan, data_dir, tmp_path, capsys):
    workspace = tmp_path / "ws"
    code = main(
        mine_args(
            workspace,
            tiny_sd,
            "--reference",
            str(data_dir / "astronaut.png"),
            "--max-batches",
            "2",
            "--seed",
            "1000",
            "--gen-batch",
            "4",
            "--option",
            f"upscaler={tiny_esrgan}",
            "--option",
            "face_restorer=none",
        )
    )
    assert code == 0, capsys.readouterr().err
    generated = image_files(workspace / "unknown-person")
    assert len(generated) >= 4  # tiny random models draw no faces
    assert image_files(workspace / "sim-group")  # the reference
    # Nothing half-written is left behind; what was made ahead waits, whole, for the next run.
    assert not [p for p in (workspace / "incoming").iterdir() if p.name.startswith(".")]
    seeds = set()
    for path in generated:
        found = read_provenance(path)
        assert found.synthetic and found.watermarked  # 128×128 after ×2 enhancement
        assert (found.width, found.height) == (128, 128)
        assert found.amari["model"] == tiny_sd.name and found.amari["steps"] == 2
        assert found.amari["enhance"]["upscaler"] == tiny_esrgan.name
        assert found.fields["Seed"] == str(found.amari["seed"])
        seeds.add(found.amari["seed"])
    assert seeds == set(range(1000, 1000 + len(generated)))


def _judged(workspace):
    return {p.name for f in ("sim-group", "almost-sim", "unknown-person") for p in (workspace / f).iterdir()}


@pytest.mark.parametrize("engine", ["serial", "streaming"])
def test_base_seed_carries_on_across_runs(tiny_sd, tmp_path, engine):
    workspace = tmp_path / "ws"
    for batches in ("1", "2"):
        assert (
            main(
                mine_args(
                    workspace,
                    tiny_sd,
                    "--seed",
                    "50",
                    "--max-batches",
                    batches,
                    "--gen-batch",
                    "2",
                    "--no-enhance",
                    "--engine",
                    engine,
                )
            )
            == 0
        )
    seeds = sorted(read_provenance(workspace / "unknown-person" / name).amari["seed"] for name in _judged(workspace))
    assert seeds == list(range(50, 58))  # two batches of four, the second run going on from the first
    rows = (
        sqlite3.connect(workspace / "mine.sqlite")
        .execute("SELECT idx, seed, name, final_digest FROM generated_candidates ORDER BY idx")
        .fetchall()
    )
    assert [(i, s) for i, s, _, _ in rows[:8]] == [(i, 50 + i) for i in range(8)]
    assert all(name == f"sd-{i:08d}-{50 + i}.png" and digest for i, _, name, digest in rows[:8])
    assert all(
        read_provenance(workspace / "unknown-person" / n).amari.get("enhance") is None for n in _judged(workspace)
    )


def test_random_seeds_are_recorded_and_named(tiny_sd, tmp_path):
    workspace = tmp_path / "ws"
    assert main(mine_args(workspace, tiny_sd, "--max-batches", "1", "--no-enhance", "--engine", "serial")) == 0
    names = sorted(_judged(workspace))
    seeds = [read_provenance(workspace / "unknown-person" / n).amari["seed"] for n in names]
    assert len(set(seeds)) == 4 and all(n.endswith(f"-{seed}.png") for n, seed in zip(names, seeds))


# Early rejection with real faces (photographs stand in for generated images) --------------------


@pytest.fixture(scope="module")
def people(data_dir, tmp_path_factory):
    """Two different people of t1.jpg, and the first one as the reference of the group."""
    photo = load_rgb(data_dir / "t1.jpg")
    person_a = np.ascontiguousarray(photo[200:480, 0:280])
    person_b = np.ascontiguousarray(photo[200:490, 360:650])
    reference = tmp_path_factory.mktemp("people") / "a.png"
    Image.fromarray(person_a).save(reference)
    return person_a, person_b, reference


def mine_photos(tiny_sd, esrgan, photos, workspace, engine="streaming", **fields):
    fields.setdefault("batch_size", 4)  # the generator's batch: one policy batch, nothing made beyond it
    config = mine_config(tiny_sd, esrgan, seed=0, max_batches=1, engine=engine, **fields)
    source = DiffusersSource(
        PROMPT, config.generate_config(), config.enhance_config(), seed=0, generate_step=PhotoGenerator(photos)
    )
    return mine.run(config, WorkspaceLayout(workspace), source)


def test_far_faces_are_judged_raw_and_near_ones_enhanced(tiny_sd, tiny_esrgan, people, tmp_path):
    person_a, person_b, reference = people
    near = np.ascontiguousarray(person_a[:, ::-1])
    workspace = tmp_path / "ws"
    mine_photos(
        tiny_sd,
        tiny_esrgan,
        [person_b, near, person_b, near],
        workspace,
        reference=(reference,),
        reject_margin=0.1,
        tolerance=0.3,
    )
    files = {
        name: read_provenance(path)
        for f in ("sim-group", "almost-sim", "unknown-person")
        for path in (workspace / f).iterdir()
        if (name := path.name) != "a.png"
    }
    far = [p for p in files.values() if p.amari["seed"] in (0, 2)]
    close = [p for p in files.values() if p.amari["seed"] in (1, 3)]
    assert len(far) == len(close) == 2
    for found in far:  # judged as generated: enhancing could not have changed the verdict
        assert (found.width, found.height) == (person_b.shape[1], person_b.shape[0])
        assert found.watermarked and "enhance" not in found.amari
    for found in close:
        assert (found.width, found.height) == (2 * near.shape[1], 2 * near.shape[0])
        assert found.amari["enhance"]["scale"] == 2.0
    # The variant not judged is gone from incoming/ (the miner made it); what the generator's last call
    # made beyond the batch waits there, whole, for the next run.
    assert not [p for p in (workspace / "incoming").iterdir() if p.name[:11] in {f"sd-0000000{i}" for i in range(4)}]


def test_every_image_the_miner_writes_carries_every_mark(tiny_sd, tiny_esrgan, people, tmp_path, capsys, monkeypatch):
    """Workers watermark, sign and fingerprint; the miner records each fingerprint in the workspace's and the
    cache's registry before the file appears, under where it appeared and never a path of this machine."""
    from amari.provenance.credentials import is_available, read_credentials
    from amari.provenance.fingerprint import Registry
    from amari.provenance.registries import default_registry_path

    signing = is_available()  # with c2pa-python, sign with a fresh key; without, no credentials
    if signing:
        assert main(["keygen"]) == 0
    _person_a, person_b, reference = people
    workspace = tmp_path / "ws"
    photos = [np.asarray(Image.fromarray(person_b).resize((256, 256)))] * 4
    mine_photos(tiny_sd, tiny_esrgan, photos, workspace, cpus=2, reference=(reference,), early_reject=False)
    folders = ("sim-group", "almost-sim", "unknown-person", "incoming")
    written = [p for f in folders for p in (workspace / f).iterdir() if p.name.startswith("sd-")]
    assert len(written) >= 4
    with Registry(workspace / "provenance.sqlite") as local, Registry(default_registry_path()) as cache:
        assert len(local) == len(cache) >= len(written)  # discarded raw variants are recorded too
        for path in written:
            data, rgb = path.read_bytes(), load_rgb(path)
            found = read_provenance(path)
            assert found.watermark.method == "tile2" and found.watermarked and found.amari["synthetic"]
            assert local.match(rgb, data).path == f"incoming/{path.name}"  # where the file first appeared
            assert cache.match(rgb, data).path == f"ws/incoming/{path.name}"
            credentials = read_credentials(data, "image/png")
            if signing:
                assert credentials.synthetic and credentials.parameters["seed"] == found.amari["seed"]
            else:
                assert credentials is None
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    shown = written[0].relative_to(tmp_path)
    assert main(["verify", "--json", "--registry", "ws", str(shown)]) == 0
    out = capsys.readouterr().out
    record = json.loads(out)
    assert record["marks"][:2] == ["watermark", "fingerprint"] and str(tmp_path) not in out


def test_nothing_is_rejected_early_without_a_group_or_when_switched_off(tiny_sd, tiny_esrgan, people, tmp_path):
    _person_a, person_b, reference = people
    for fields in ({}, {"reference": (reference,), "early_reject": False}):
        workspace = tmp_path / str(len(fields))
        mine_photos(tiny_sd, tiny_esrgan, [person_b] * 4, workspace, **fields)
        judged = [
            workspace / f / n
            for f in ("almost-sim", "unknown-person", "sim-group")
            for n in ((workspace / f).iterdir() and [p.name for p in (workspace / f).iterdir()])
        ]
        enhanced = [p for p in judged if p.name != "a.png" and read_provenance(p).width == 2 * person_b.shape[1]]
        assert len(enhanced) == 4


def test_rejection_rule():
    assert rejects_early(0.71, upper_bound=0.4, almost_band=0.1, margin=0.2)
    assert not rejects_early(0.7, upper_bound=0.4, almost_band=0.1, margin=0.2)
    assert not rejects_early(None, upper_bound=0.4, almost_band=0.1, margin=0.0)  # no face: enhance it


# Options ----------------------------------------------------------------------------------------


def test_options_choose_preset_and_overrides(tiny_sd):
    config = mine_config(tiny_sd, preset="study", scheduler="unipc", guidance="6.5", compile="false")
    generate = config.generate_config()
    assert (generate.scheduler, generate.steps, generate.guidance_scale) == ("unipc", 2, 6.5)
    assert generate.batch_size == 4 and config.preset == "study"
    assert config.enhance_config() is None


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"stepz": 3}, "unknown source option"),
        ({"steps": "many"}, "expects int"),
        ({"compile": "maybe"}, "true or false"),
        ({"reject_margin": -1}, "reject_margin"),
        ({"scheduler": "nope"}, "unknown scheduler"),
        ({"scale": 0}, "scale"),
    ],
)
def test_bad_options_are_usage_errors(tiny_sd, extra, message):
    with pytest.raises(UsageError, match=message):
        MineConfig(prompt=PROMPT, model=str(tiny_sd), options=tuple((k, str(v)) for k, v in extra.items()))


def test_prompt_is_required(tiny_sd):
    with pytest.raises(UsageError, match="prompt"):
        DiffusersSource("", preset_config(model=str(tiny_sd)))
    with pytest.raises(UsageError, match="prompt"):
        MineConfig(prompt="", model=str(tiny_sd))


# Both engines decide the same ------------------------------------------------------------------


def _end_state(workspace):
    """What the engines must agree on: the judged files and the database's verdicts (made-ahead images
    waiting in incoming/ are the streaming engine's own)."""
    from test_mine_run import snapshot

    state = snapshot(workspace)
    state["files"] = {name: digest for name, digest in state["files"].items() if not name.startswith("incoming/")}
    return state


def test_serial_and_streaming_end_the_same_on_the_tiny_model(tiny_sd, tiny_esrgan, data_dir, tmp_path):
    states = []
    for engine in ("serial", "streaming"):
        workspace = tmp_path / engine
        args = mine_args(workspace, tiny_sd, "--reference", str(data_dir / "astronaut.png"), "--seed", "7")
        args += ["--max-batches", "3", "--gen-batch", "3", "--engine", engine, "--cpus", "2"]
        args += ["--option", f"upscaler={tiny_esrgan}", "--option", "face_restorer=none"]
        assert main(args) == 0
        states.append(_end_state(workspace))
    assert states[0] == states[1]
    assert len(states[0]["decisions"]) >= 8


def test_serial_and_streaming_end_the_same_on_real_faces(tiny_sd, tiny_esrgan, tmp_path):
    """Photographs stand in for generated images: early rejections, enhancements and joins all happen."""
    photos = face_photos(14, side=192)
    reference = tmp_path / "reference.png"
    Image.fromarray(face_photos(1, side=192, seed=5)[0]).save(reference)
    states = []
    for engine in ("serial", "streaming"):
        workspace = tmp_path / engine
        config = mine_config(
            tiny_sd,
            tiny_esrgan,
            seed=0,
            max_batches=4,
            engine=engine,
            cpus=2,
            reference=(reference,),
            tolerance=0.3,
            batch_size=4,
        )
        source = DiffusersSource(
            PROMPT, config.generate_config(), config.enhance_config(), seed=0, generate_step=PhotoGenerator(photos)
        )
        mine.run(config, WorkspaceLayout(workspace), source)
        states.append(_end_state(workspace))
    assert states[0] == states[1]
    verdicts = {row[3] for row in states[0]["decisions"]}
    assert {"accepted", "too far"} <= verdicts, verdicts


@pytest.mark.slow
def test_the_miner_scores_what_amari_score_reads_in_the_written_file(tiny_sd, tmp_path):
    """The miner finds faces before the watermark goes in and describes them in the marked pixels; the
    watermark leaves the faces and what the detector reads around them alone, so `amari score` on the
    file it wrote finds the same faces and the same number."""
    from amari import score
    from amari.score import ScoreConfig

    photos = face_photos(4, side=512, seed=2)
    group = tmp_path / "group"
    group.mkdir()
    Image.fromarray(face_photos(1, side=512, seed=5)[0]).save(group / "reference.png")
    workspace = tmp_path / "ws"
    mine_photos(tiny_sd, None, photos, workspace, reference=(group / "reference.png",), tolerance=0.3)
    with sqlite3.connect(workspace / "mine.sqlite") as db:
        rows = db.execute(
            "SELECT i.folder, i.name, d.score FROM decisions d JOIN images i ON i.id = d.image_id "
            "WHERE d.score IS NOT NULL AND i.name != 'reference.png'"
        ).fetchall()
    assert len(rows) == 4
    files = [workspace / folder / name for folder, name, _ in rows]
    assert all(read_provenance(path).watermarked for path in files)
    scored = score.run(ScoreConfig(group=str(group), use_cache=False), files)
    assert [result.score for result in scored] == pytest.approx([row[2] for row in rows], abs=1e-9)


# Killed at exact moments (crash hooks), resumed: the end state of a run that never stopped -------------

DIFFUSERS_CRASH_POINTS = [
    ("amari.generate.source:DiffusersSource._generated", 1, "before"),  # generated, nothing written
    ("amari.mine.engine:FeedContext.accept", 2, "after"),  # raw images written, not enhanced
    ("amari.mine.engine:FeedContext.accept", 3, "before"),  # an enhancement lost with the run
]


@pytest.mark.slow
def test_sigkill_while_generating_and_enhancing_then_resume(tiny_sd, tiny_esrgan, data_dir, tmp_path):
    import signal
    import subprocess
    import sys

    from crashhooks import crash_command

    def args(workspace):
        extra = ["--reference", str(data_dir / "astronaut.png"), "--seed", "11", "--max-batches", "2"]
        extra += ["--gen-batch", "3", "--option", f"upscaler={tiny_esrgan}", "--option", "face_restorer=none"]
        return mine_args(workspace, tiny_sd, *extra)

    assert main(args(tmp_path / "uninterrupted")) == 0
    workspace = tmp_path / "ws"
    for target, calls, when in DIFFUSERS_CRASH_POINTS:
        crashed = subprocess.run(crash_command(target, calls, when, *args(workspace)), capture_output=True, text=True)
        assert crashed.returncode == -signal.SIGKILL, (target, crashed.stderr[-2000:])
    finished = subprocess.run([sys.executable, "-m", "amari", *args(workspace)], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert _end_state(workspace) == _end_state(tmp_path / "uninterrupted")
