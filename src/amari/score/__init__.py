"""`amari score`: each image's sim-score (mean face distance) against a group of images.

- `config`: the settings (`ScoreConfig`); `stage`: the group, the scores, the CSV (`run`).
"""

from amari.lazy import lazy_exports
from amari.score.config import ScoreConfig

__getattr__ = lazy_exports(__name__, {"run": "amari.score.stage:run", "label": "amari.score.stage:label"})

__all__ = ["ScoreConfig", "label", "run"]
