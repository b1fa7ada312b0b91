"""Crash-safe folder writes."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path


def replace_dir(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` to ``path`` by renames, so a kill at any moment leaves
    either the previous ``path`` or the new one (plus a stale ``.old`` removed next time)."""
    old = path.with_name(path.name + ".old")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(path: str | Path):
    """A checkpoint folder written whole or not at all: fill the yielded folder beside ``path``;
    it replaces ``path`` only once the block finished, so a kill mid-save keeps the previous one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    replace_dir(tmp, path)
