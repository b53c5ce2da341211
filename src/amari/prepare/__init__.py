"""`amari prepare`: training images from a folder (random or face-aware square crops, random names).

- `config`: the settings (`PrepareConfig`); `stage`: crops, names, the manifest (`run`).
"""

from amari.lazy import lazy_exports
from amari.prepare.config import CROP_MODES, PrepareConfig

__getattr__ = lazy_exports(
    __name__,
    {
        "run": "amari.prepare.stage:run",
        "PrepareResult": "amari.prepare.stage:PrepareResult",
        "source_images": "amari.prepare.stage:source_images",
    },
)

__all__ = ["CROP_MODES", "PrepareConfig", "PrepareResult", "run", "source_images"]
