"""`amari mine`: an adaptive sim-group search over generated or collected face images.

- `config`: the miner's settings (`MineConfig`), for the command line and a study alike;
- `policy`: the pure decision rules (numpy only);
- `workspace`: the folders, SQLite state, journal, archive CSV and lock;
- `curation`: references, and what the user does to the folders while or between runs;
- `source`: where candidate images come from (`FolderSource`; the diffusers one lives in `amari.generate`);
- `loop`: the resumable batch loop (`run`); `progress`: live progress on stderr.
"""

from amari.lazy import lazy_exports
from amari.mine.config import MineConfig

__getattr__ = lazy_exports(
    __name__,
    {
        "run": "amari.mine.loop:run",
        "MineResult": "amari.mine.loop:MineResult",
        "MiningProgress": "amari.mine.progress:MiningProgress",
        "BatchContext": "amari.mine.source:BatchContext",
        "FolderSource": "amari.mine.source:FolderSource",
        "Source": "amari.mine.source:Source",
    },
)

__all__ = ["BatchContext", "FolderSource", "MineConfig", "MineResult", "MiningProgress", "Source", "run"]
