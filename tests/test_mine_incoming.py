"""What waits in a workspace's incoming/ across runs: the streaming engine's early rejections, resuming
with other enhancement settings, the user's own files, names too long for a file system.

Photographs stand in for generated images (`amari.testing.photos.PhotoGenerator`), so faces are real
and early rejection happens; every run is a real streaming run with its generator thread.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3

import numpy as np
import pytest
from PIL import Image

from amari import mine
from amari.generate import DiffusersSource
from amari.provenance.png import read_provenance
from amari.storage.layout import WorkspaceLayout
from amari.testing.enhance import build_random_esrgan
from amari.testing.photos import PhotoGenerator, face_photos
from test_mine_diffusers import PROMPT, _end_state, mine_config

FOLDERS = ("sim-group", "almost-sim", "unknown-person")


@pytest.fixture(scope="module")
def esrgan(tmp_path_factory):
    return build_random_esrgan(tmp_path_factory.mktemp("esrgan") / "tiny_x4.pth", num_filters=8)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread(one_thread):
    """The tiny models compute faster on one thread than on two that spin."""


@pytest.fixture(scope="module")
def strangers(tmp_path_factory):
    """Photos of five people, and a reference image of a sixth: every candidate is far from the group."""
    photos = [photo for i, photo in enumerate(face_photos(10, side=96, seed=3)) if i % 6]
    reference = tmp_path_factory.mktemp("reference") / "reference.png"
    Image.fromarray(face_photos(1, side=96, seed=5)[0]).save(reference)
    return photos, reference


def mine_strangers(tiny_sd, esrgan, strangers, workspace, batches, **fields):
    photos, reference = strangers
    fields = {"engine": "streaming", "cpus": 1, "reject_margin": 0.0, "batch_size": 4, **fields}
    config = mine_config(tiny_sd, esrgan, seed=0, max_batches=batches, reference=(reference,), **fields)
    source = DiffusersSource(
        PROMPT, config.generate_config(), config.enhance_config(), seed=0, generate_step=PhotoGenerator(photos)
    )
    return mine.run(config, WorkspaceLayout(workspace), source)


def judged_names(workspace) -> set[str]:
    return {p.name for folder in FOLDERS for p in (workspace / folder).iterdir()}


def leftovers_of_judged(workspace) -> list[str]:
    """Files in incoming/ that belong to a candidate judged already (its raw or its enhanced image)."""
    judged = {name.removesuffix(".png") for name in judged_names(workspace)}
    return [p.name for p in (workspace / "incoming").iterdir() if p.name.split(".")[0] in judged]


@pytest.mark.slow
def test_an_early_rejection_leaves_nothing_behind_and_a_resume_ends_as_one_run(tiny_sd, esrgan, strangers, tmp_path):
    """The streaming generator enhances a batch after making the next one, so the policy judges a far
    candidate on its raw image and commits before its enhanced image comes back: that image is dropped,
    never written into incoming/ where no run would ever take it."""
    resumed = tmp_path / "resumed"
    mine_strangers(tiny_sd, esrgan, strangers, resumed, 3)
    assert leftovers_of_judged(resumed) == []
    mine_strangers(tiny_sd, esrgan, strangers, resumed, 4)
    mine_strangers(tiny_sd, esrgan, strangers, tmp_path / "whole", 4)
    assert _end_state(resumed) == _end_state(tmp_path / "whole")
    assert leftovers_of_judged(resumed) == leftovers_of_judged(tmp_path / "whole") == []
    decisions = _end_state(resumed)["decisions"]
    assert len(decisions) >= 12 and {row[3] for row in decisions} - {"reference"} == {"too far"}, decisions


@pytest.mark.slow
def test_a_workspace_mined_with_enhancement_resumes_without(tiny_sd, esrgan, strangers, tmp_path):
    """Raw images made ahead by a run that enhanced are judged as they are by one that does not."""
    workspace = tmp_path / "ws"
    mine_strangers(tiny_sd, esrgan, strangers, workspace, 2, batch_size=8)  # makes batches ahead of judging
    waiting = sorted(p.name for p in (workspace / "incoming").iterdir())
    assert any(name.endswith(".raw.png") for name in waiting)
    result = mine_strangers(tiny_sd, esrgan, strangers, workspace, 4, enhance=False, batch_size=8)
    assert result.stopped == "max-batches"
    judged = {name.removesuffix(".png") for name in judged_names(workspace)}
    taken = [name for name in waiting if name.removesuffix(".png").removesuffix(".raw") in judged]
    assert any(name.endswith(".raw.png") for name in taken)  # the run went on where the last one stopped
    left = {p.name for p in (workspace / "incoming").iterdir()}
    assert set(waiting) - set(taken) <= left  # the rest wait for the next run: nothing lost
    for name in (name for name in taken if name.endswith(".raw.png")):  # judged at the size generated
        judged_as = name.replace(".raw", "")
        found = next(workspace / f / judged_as for f in FOLDERS if (workspace / f / judged_as).is_file())
        assert read_provenance(found).width == 96 and "enhance" not in read_provenance(found).amari
    assert leftovers_of_judged(workspace) == []


@pytest.mark.slow
def test_a_workspace_mined_without_enhancement_resumes_with(tiny_sd, esrgan, strangers, tmp_path):
    workspace = tmp_path / "ws"
    mine_strangers(tiny_sd, None, strangers, workspace, 3, batch_size=8)  # some made ahead, not judged
    waiting = sorted(p.name for p in (workspace / "incoming").iterdir())
    assert waiting and not any(name.endswith(".raw.png") for name in waiting)
    result = mine_strangers(tiny_sd, esrgan, strangers, workspace, 4, batch_size=8)
    assert result.stopped == "max-batches"
    taken = set(waiting) & judged_names(workspace)
    assert taken  # the run went on where the last one stopped: no wedge
    assert set(waiting) - taken <= {p.name for p in (workspace / "incoming").iterdir()}  # nothing lost
    assert leftovers_of_judged(workspace) == []


class DroppingGenerator(PhotoGenerator):
    """Photographs as generated images; while it makes the batch of seed `when`, the user drops files
    into incoming/ under the names that batch's images are about to be written to."""

    def __init__(self, photos, incoming, drops: dict[str, bytes], when: int):
        super().__init__(photos)
        self.incoming, self.drops, self.when = incoming, drops, when

    def __call__(self, prompt, seeds, config):
        if self.when in seeds:
            for name, data in self.drops.items():
                (self.incoming / name).write_bytes(data)
        return super().__call__(prompt, seeds, config)


@pytest.mark.slow
def test_the_users_files_in_incoming_are_never_overwritten_and_are_judged(tiny_sd, esrgan, strangers, tmp_path):
    photos, reference = strangers
    workspace = tmp_path / "ws"
    own = {}
    for name, photo in (("sd-00000005-5.png", photos[0]), ("sd-00000006-6.raw.png", photos[1])):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(photo[::-1])).save(buffer, format="PNG")  # the user's own picture
        own[name] = buffer.getvalue()
    config = mine_config(
        tiny_sd, esrgan, seed=0, max_batches=2, reference=(reference,), engine="streaming", cpus=1, batch_size=4
    )
    generator = DroppingGenerator(photos, workspace / "incoming", own, when=5)
    source = DiffusersSource(PROMPT, config.generate_config(), config.enhance_config(), seed=0, generate_step=generator)
    mine.run(config, WorkspaceLayout(workspace), source)
    mine_strangers(tiny_sd, esrgan, strangers, workspace, 3)  # what the first run left is judged first
    contents = {hashlib.sha256(data).hexdigest() for data in own.values()}
    with sqlite3.connect(workspace / "mine.sqlite") as conn:
        rows = {row[0]: row[1:] for row in conn.execute("SELECT content_hash, folder, name, origin FROM images")}
        made = [row[0] for row in conn.execute("SELECT name FROM generated_candidates WHERE idx IN (5, 6)")]
    for digest in contents:  # the user's files were judged, and are where the database says
        folder, name, _origin = rows[digest]
        assert hashlib.sha256((workspace / folder / name).read_bytes()).hexdigest() == digest
    for name in made:  # and so were the generator's images of those names
        assert name in judged_names(workspace) or any(n.startswith(name[:-4]) for n in judged_names(workspace))
