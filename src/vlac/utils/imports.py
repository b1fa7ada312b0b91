"""One place that imports optional heavy dependencies and, when one is missing, says which
``pip install`` extra brings it.

    >>> transformers = require("transformers", extra="model")
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it. The
    ``vlac`` command prints it as one line (it is a setup problem, not a bug)."""


def require(module: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(
            f"{module} is needed here but is not installed ({e}); install it with "
            f"`pip install 'vlac[{extra}]'` (or `make setup`, which installs every extra)"
        ) from None


def set_threads(n: int) -> None:
    """Size torch's CPU thread pool (0: leave torch's default). A model with the default pool
    beside another busy process runs many times slower, so every command that runs a model takes
    a threads setting."""
    if n:
        require("torch", extra="model").set_num_threads(int(n))
