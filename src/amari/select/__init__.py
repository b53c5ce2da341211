"""`amari select`: training groups of chosen sizes from a miner workspace's sim-group.

- `config`: the settings (`SelectConfig`, `GroupSpec`); `stage`: scoring, picking and writing (`run`).
"""

from amari.lazy import lazy_exports
from amari.select.config import NAME, STUDY_GROUPS, GroupSpec, SelectConfig, parse_groups

__getattr__ = lazy_exports(
    __name__, {"run": "amari.select.stage:run", "SelectResult": "amari.select.stage:SelectResult"}
)

__all__ = ["NAME", "STUDY_GROUPS", "GroupSpec", "SelectConfig", "SelectResult", "parse_groups", "run"]
