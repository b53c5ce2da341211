"""Checkpoint samples scored beside the training: the score lands in the checkpoint and the run's summary,
a checkpoint a killed run left unscored is scored when the run resumes, and a miner's sim-group is read
with the faces the miner found (from its workspace's database, which stays untouched)."""

from __future__ import annotations

import hashlib
import json
import shutil

from amari.storage.layout import TrainLayout
from amari.train import TrainConfig, run
from test_train import face_crop, train_images  # noqa: F401 - a fixture


def test_an_unscored_checkpoint_is_scored_on_resume(tmp_path, tiny_sd, train_images, data_dir, one_thread):  # noqa: F811
    reference = tmp_path / "reference"
    reference.mkdir()
    face_crop(data_dir, 0, half=140).save(reference / "r1.png")
    face_crop(data_dir, 2, half=140).save(reference / "r2.png")
    layout = TrainLayout(train_images, tmp_path / "out")
    config = TrainConfig(
        model=str(tiny_sd),
        resolution=64,
        max_steps=2,
        checkpoint_every=2,
        sample_seeds=(11, 12),
        sample_steps=1,
        reference_group=reference,
    )
    said: list[str] = []
    result = run(config, layout, log=said.append)
    saved = next(i for i, m in enumerate(said) if m.startswith("step 2/2") and m.endswith("checkpoint saved"))
    assert said[saved + 1 :] == ["step 2 samples: faces 0/2, sim-score n/a (best so far)"]  # the tiny model draws noise
    state_file = layout.out / "checkpoints" / "step-000002" / "state.json"
    scored = json.loads(state_file.read_text())["validation"]
    assert scored["images"] == 2 and scored["score"] == 1.0 and result.best["step"] == 2

    # What a run killed before the score came back leaves: a complete checkpoint, no score, no summary.
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "validation": None}))
    (layout.out / "best.json").unlink()
    (layout.out / "validation.csv").unlink()
    said.clear()
    again = run(config, layout, log=said.append)
    assert again.resumed_from == 2 and "step 2 samples: faces 0/2, sim-score n/a (best so far)" in said
    assert json.loads(state_file.read_text())["validation"] == scored
    assert again.best == result.best and (layout.out / "validation.csv").is_file()


def test_a_miners_sim_group_is_read_with_the_faces_the_miner_found(tmp_path, t1_people):
    from amari.faces.embeddings import EmbeddingCache, FaceEncoder
    from amari.mine.workspace import Workspace
    from amari.storage.layout import WorkspaceLayout
    from amari.train.validation import reference_encoder, reference_group

    layout = WorkspaceLayout(tmp_path / "ws")
    with Workspace.open(layout.root) as workspace:  # the miner's database, and its faces as the miner caches them
        layout.sim_group.mkdir(parents=True, exist_ok=True)
        for person in t1_people[:2]:
            shutil.copy(person, layout.sim_group / person.name)
        mined = FaceEncoder(cache=EmbeddingCache(connection=workspace.conn))
        mined.faces_many(sorted(layout.sim_group.iterdir()))
        assert mined.encoded == 2
    before = hashlib.sha256(layout.database.read_bytes()).hexdigest()

    encoder = reference_encoder(layout.sim_group)
    group = reference_group(layout.sim_group, encoder)
    assert len(group) == 2 and encoder.encoded == 0 and encoder.cache_hits == 2  # dlib did not run again
    assert hashlib.sha256(layout.database.read_bytes()).hexdigest() == before  # read, never written

    elsewhere = tmp_path / "copy"
    shutil.copytree(layout.sim_group, elsewhere)
    other = reference_encoder(elsewhere)  # not a workspace's sim-group: found and cached as any folder
    assert len(reference_group(elsewhere, other)) == 2 and other.encoded == 2
