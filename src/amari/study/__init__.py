"""A whole study from one TOML file: settings, the evaluation grid, identity scorers, the report.

- `config`: typed, frozen settings of every step, loaded and checked from TOML (`load_study`);
- `evaluate`: the prompt × command × group grid, generated and scored, resumable;
- `scorers`: dlib's sim-score (and its CNN second pass) and ArcFace, behind one `Scorer` shape;
- `results`: the results CSV and manifest the report reads;
- `report`: charts (PNG), summary.json and the self-contained HTML page;
- `run`: mine → select → prepare → train → evaluate → report with completion markers.
"""
