"""The VLAC vision-language model (``vlm``), its observation pipeline (``preprocess``), prompts and
the tiny preset's tokenizer; and how every command names a model.

Importing this package needs no torch; ``vlac.model.vlm`` does.

Every model flag (``--critic``, ``--actor``) takes ``builtin`` (the shipped default of that role),
a checkpoint folder, or, where the role is optional, ``none``; ``--init`` of the trainers takes
``scratch`` (a new tiny model), ``critic`` or ``actor`` (the built-in one), or a folder.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
BUILTIN = {"critic": CHECKPOINTS / "critic-tiny", "actor": CHECKPOINTS / "actor-tiny"}


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete or unreadable."""


def model_path(value: str | Path | None, role: str) -> Path:
    """The folder a model flag names: ``builtin`` (also None or empty) is the shipped checkpoint of
    ``role`` ("critic" or "actor"); anything else is a folder."""
    if value is None or str(value) in ("", "builtin"):
        path = BUILTIN[role]
        if not (path / "config.json").is_file():
            raise CheckpointError(f"the built-in {role} checkpoint is missing from {path}; reinstall vlac or pass "
                                  f"--{role} DIR (train one with `vlac {role} train`)")
        return path
    if str(value) == "none":
        raise CheckpointError(f"--{role} none: this command needs a {role}; pass builtin or a checkpoint folder")
    return Path(value)
