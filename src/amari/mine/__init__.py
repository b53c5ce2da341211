"""`amari mine`: an adaptive sim-group search over generated or collected face images.

- `config`: the miner's settings (`MineConfig`), for the command line and a study alike;
- `policy`: the pure decision rules (numpy only);
- `workspace`: the folders, SQLite state, journal, archive CSV and lock;
- `curation`: references, and what the user does to the folders while or between runs;
- `source`: where candidate images come from (`FolderSource`; the diffusers one lives in `amari.generate`);
- `engine`: how a source's steps run, serially or streaming (generator thread, worker processes);
- `work`: the CPU work on each image (watermark, PNG, faces) that a source hands to the workers;
- `judging`: a batch's verdicts as one change to commit;
- `loop`: the resumable batch loop (`run`); `progress`: live progress on stderr and in a status file;
- `view`: a workspace read by another process, read-only (`WorkspaceView`).
"""

from amari.lazy import lazy_exports
from amari.mine.config import MineConfig

__getattr__ = lazy_exports(
    __name__,
    {
        "run": "amari.mine.loop:run",
        "MineResult": "amari.mine.loop:MineResult",
        "MiningProgress": "amari.mine.progress:MiningProgress",
        "FolderSource": "amari.mine.source:FolderSource",
        "Source": "amari.mine.source:Source",
        "leftover_files": "amari.mine.source:leftover_files",
        "inspect_generated": "amari.mine.work:inspect_generated",
        "inspect_enhanced": "amari.mine.work:inspect_enhanced",
        "inspect_file": "amari.mine.work:inspect_file",
        "WorkspaceView": "amari.mine.view:WorkspaceView",
    },
)

__all__ = [
    "FolderSource",
    "MineConfig",
    "MineResult",
    "MiningProgress",
    "Source",
    "WorkspaceView",
    "inspect_enhanced",
    "inspect_file",
    "inspect_generated",
    "leftover_files",
    "run",
]
