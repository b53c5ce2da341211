"""`amari compare`: the face_recognition command-line tool's comparison, with amari's cache.

- `config`: the settings (`CompareConfig`); `stage`: known people, output lines (`run`).
"""

from amari.compare.config import CompareConfig
from amari.lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {"run": "amari.compare.stage:run"})

__all__ = ["CompareConfig", "run"]
