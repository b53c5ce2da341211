"""`amari evaluate`: the study's prompt × command × (method × group) grid, generated and scored against the
sim-group.

- `config`: the grid's settings (`EvaluateConfig`, `Command`);
- `scorers`: dlib's sim-score (and its CNN second pass) and ArcFace, behind one `Scorer` shape;
- `grid`: the cells, how each is generated and scored;
- `stage`: the resumable stage (`run`); results go to the study's results folder (`amari.storage.results`).
"""

from amari.evaluate.config import CONTROL, Command, EvaluateConfig
from amari.lazy import lazy_exports

__getattr__ = lazy_exports(
    __name__,
    {
        "Cell": "amari.evaluate.grid:Cell",
        "Scorers": "amari.evaluate.grid:Scorers",
        "UnitFiles": "amari.evaluate.grid:UnitFiles",
        "group_token": "amari.evaluate.grid:group_token",
        "plan_cells": "amari.evaluate.grid:plan_cells",
        "prompt_for": "amari.evaluate.grid:prompt_for",
        "EvaluateResult": "amari.evaluate.stage:EvaluateResult",
        "run": "amari.evaluate.stage:run",
    },
)

__all__ = [
    "CONTROL",
    "Cell",
    "Command",
    "EvaluateConfig",
    "EvaluateResult",
    "Scorers",
    "UnitFiles",
    "group_token",
    "plan_cells",
    "prompt_for",
    "run",
]
