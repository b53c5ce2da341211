"""`amari serve`: a browser workbench over a workspace (and a study) to watch, curate and inspect.

- `config`: the server's settings (`ServeConfig`); `stage`: `run`, and `Server` (the app on a socket);
- `app`: the routes (`create_app`); `security`: the token gate, same-origin checks, safe paths;
- `gallery`: each folder's images with their scores; `thumbnails`: made once, kept in the cache folder;
- `curation`: moves, the trash, restores, as a file manager does them; `live`: the live panel's numbers;
- `chart`: the mining curve; `study`: the study's grids, its report and verify;
- `templates/` and `static/`: the pages and their small script.
"""

from amari.lazy import lazy_exports
from amari.serve.config import ServeConfig

__getattr__ = lazy_exports(
    __name__,
    {
        "run": "amari.serve.stage:run",
        "Server": "amari.serve.stage:Server",
        "ServeResult": "amari.serve.stage:ServeResult",
        "create_app": "amari.serve.app:create_app",
        "exposure_warning": "amari.serve.stage:exposure_warning",
    },
)

__all__ = ["ServeConfig", "ServeResult", "Server", "create_app", "exposure_warning", "run"]
