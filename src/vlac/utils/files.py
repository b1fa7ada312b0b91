"""Crash-safe folder writes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def replace_dir(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` to ``path`` by renames, so a kill at any moment leaves
    either the previous ``path`` or the new one (plus a stale ``.old`` removed next time)."""
    old = path.with_name(path.name + ".old")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
