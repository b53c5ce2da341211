"""Names a package exports without importing the heavy modules behind them until first use.

A stage's package imports only its light config module eagerly, so that building the command line
(which needs every stage's config) imports no numpy, torch or dlib; `run` and the rest come on use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` resolving `name` to "module:attribute" from `exports` on first use."""

    def __getattr__(name: str):
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    return __getattr__
