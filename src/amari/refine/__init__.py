"""`amari refine`: identity-guided mining, rounds of mining with the identity learned so far and training
on the group it grew, until a round's fresh candidates agree with the group.

- `config`: the loop's own settings (`RefineConfig`; the study's [mine], [train], [prepare] do the rest);
- `measure`: a round's numbers from the workspace (acceptance, means, pose spread);
- `loop`: the resumable rounds (`run`), `refine.json`, `rounds.csv`.
"""

from amari.lazy import lazy_exports
from amari.refine.config import RefineConfig

__getattr__ = lazy_exports(__name__, {"run": "amari.refine.loop:run", "RefineResult": "amari.refine.loop:RefineResult"})

__all__ = ["RefineConfig", "RefineResult", "run"]
