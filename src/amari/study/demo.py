"""A toy-scale study that runs offline in a few minutes: the whole pipeline, no downloads.

The model is a tiny random-weight Stable Diffusion built locally (it draws noise, not faces), and the
miner's source is a folder of real face photos made from a sample image shipped with amari: one person
in several variants (the identity to mine), two other people, and a picture of no one. Every stage runs
for real — mining, selection, preparation, training, evaluation and the report — at toy scale.
"""

from __future__ import annotations

import json
from pathlib import Path

from amari.errors import UsageError

SAMPLE = Path(__file__).parents[1] / "data" / "sample-people.jpg"
# dlib's face boxes (top, right, bottom, left) in the sample photo: six different people.
SAMPLE_FACES = (
    (283, 1226, 390, 1118),
    (283, 175, 390, 67),
    (367, 832, 474, 724),
    (295, 557, 402, 450),
    (67, 999, 196, 870),
    (176, 364, 265, 275),
)
IDENTITY = 3

PROMPTS = ("a photo of amari", "a side profile image of amari")
COMMANDS = (("sd1", 335728730), ("sd2", 691007764))
GROUPS = ("g_all", "g_2", "ctrl")


def face_crop(photo, box):
    top, right, bottom, left = box
    margin = (bottom - top) // 2 + 20
    return photo.crop(
        (
            max(0, left - margin),
            max(0, top - margin),
            min(photo.width, right + margin),
            min(photo.height, bottom + margin),
        )
    )


def write_face_folder(folder: Path, sample: Path = SAMPLE) -> Path:
    """The miner's input: variants of one person, two other people, one image without a face.

    Returns the reference image of the person to mine (written beside the folder).
    """
    from PIL import Image, ImageEnhance, ImageOps

    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(sample) as photo:
        photo = photo.convert("RGB")
        person = face_crop(photo, SAMPLE_FACES[IDENTITY])
        ImageOps.mirror(person).save(folder / "f1.png")
        ImageEnhance.Brightness(person).enhance(1.15).save(folder / "f2.png")
        ImageEnhance.Contrast(person).enhance(0.85).save(folder / "f3.png")
        person.crop((10, 6, person.width - 8, person.height - 4)).save(folder / "f4.png")
        for index in (0, 1):
            face_crop(photo, SAMPLE_FACES[index]).save(folder / f"other{index}.png")
    Image.new("RGB", (120, 120), (128, 128, 128)).save(folder / "noface.png")
    reference = folder.parent / "reference.png"
    person.save(reference)
    return reference


def study_toml(out: Path, model: Path, faces: Path, reference: Path) -> str:
    commands = "".join(f'\n[[evaluate.commands]]\nname = "{n}"\nseed = {s}\n' for n, s in COMMANDS)
    return f"""# A toy-scale study: tiny random-weight model, a folder of real face photos as the miner's source.
[study]
name = "demo"
out = {json.dumps(str(out))}
model = {json.dumps(str(model))}
device = "cpu"
demo = true    # the report says that this model has random weights

[mine]
source = {json.dumps("folder:" + str(faces))}
reference = [{json.dumps(str(reference))}]
target = 3

[[select.groups]]
name = "g_all"
images = "all"

[[select.groups]]
name = "g_2"
images = 2

[prepare]
size = 64
seed = 1

[train]
resolution = 64
repeats = 1
max_steps = 3
checkpoint_every = 3
sample_seeds = [1]
sample_steps = 2
mixed_precision = "no"

[evaluate]
prompts = {json.dumps(list(PROMPTS))}
sampler = "k_lms"
steps = 3
width = 64
height = 64
{commands}
[report]
thumbnail = 64
"""


def write_demo(folder: str | Path, model: Path | None = None) -> Path:
    """Write the demo's model, face folder and `study.toml` under `folder`; returns the config's path.

    An existing demo folder is reused as it is, so running the demo again resumes it.
    """
    folder = Path(folder).resolve()
    config = folder / "study.toml"
    if config.is_file():
        return config
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"{folder} exists and is not an amari demo folder: choose an empty or new folder")
    if model is None:
        from amari.testing.sd import build_tiny_sd

        model = build_tiny_sd(folder / "tiny-sd")
    reference = write_face_folder(folder / "faces")
    config.write_text(study_toml(folder / "study", Path(model), folder / "faces", reference))
    return config
