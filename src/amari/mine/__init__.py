"""`amari mine`: an adaptive sim-group search over generated or collected face images.

- `policy`: the pure decision rules (numpy only);
- `workspace`: the folders, SQLite state, journal, archive CSV and lock;
- `source`: where candidate images come from (`folder:PATH`, `diffusers`);
- `run`: the resumable batch loop; `progress`: live progress on stderr.
"""
