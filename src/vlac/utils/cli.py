"""Command-line plumbing: every command is a dataclass config parsed by tyro, and every command
also takes ``--config FILE`` (YAML or JSON) whose values become the defaults that flags override;
a file may start from another (``inherit: base.yaml``) and set only what differs.

    >>> cfg = parse_config(CollectConfig, ["--config", "collect.yaml", "--workers", "2"], prog="vlac data collect")
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``; nested maps (``learner:``) merge key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _load_file(path: str, seen: tuple = ()) -> dict:
    """A config file's values; ``inherit: FILE`` (relative to this file) takes another file's values
    first and overrides only what this one sets, so a variant states its difference alone."""
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: config file {p} does not exist" + (f" (inherited by {seen[-1]})" if seen else ""))
    if p.resolve() in seen:
        raise SystemExit(f"error: config file {p} inherits itself through {' -> '.join(str(x) for x in seen)}")
    data = _read_file(p)
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    return _merge(_load_file(str(p.parent / parent), (*seen, p.resolve())), data)


def _read_file(p: Path) -> dict:
    text = p.read_text()
    try:
        if p.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - yaml and json raise different types
        raise SystemExit(f"error: config file {p} does not parse: {e}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"error: config file {p} must hold a mapping of field: value")
    return {k.replace("-", "_"): v for k, v in data.items()}


def _flags(values: dict, prefix: str) -> list[str]:
    out: list[str] = []
    for k, v in values.items():
        name = prefix + k.replace("_", "-")
        if isinstance(v, dict):
            out += _flags(v, name + ".")
        elif isinstance(v, bool):
            out.append("--" + name if v else "--" + (prefix + "no-" + k.replace("_", "-")))
        elif isinstance(v, (list, tuple)):
            out += ["--" + name, *(str(x) for x in v)]
        else:
            out += ["--" + name, str(v)]
    return out


def _list_flags(cls: type, prefix: str = "") -> set[str]:
    """The flags of ``cls`` (nested configs too: ``--learner.demo-data``) that take a list."""
    import typing

    out: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        name = prefix + f.name.replace("_", "-")
        if dataclasses.is_dataclass(hint):
            out |= _list_flags(hint, name + ".")
        elif typing.get_origin(hint) in (list, tuple):
            out.add("--" + name)
    return out


def _split_lists(argv: list[str], flags: set[str]) -> list[str]:
    """A list flag takes its values space-separated (``--tasks reach-v3 push-v3``) or, as in the
    commands of earlier releases, comma-separated (``--tasks reach-v3,push-v3``): both are one list.
    A value with a space in it is free text (a plot label "replay, seed 1") and is kept whole."""
    out, in_list = [], False
    for arg in argv:
        if arg.startswith("--"):
            in_list = arg.split("=", 1)[0] in flags
            if in_list and "=" in arg:
                flag, value = arg.split("=", 1)
                out += [flag, *(v for v in value.split(",") if v)] if " " not in value else [flag, value]
                continue
            out.append(arg)
        elif in_list and "," in arg and " " not in arg:
            out += [v for v in arg.split(",") if v]
        else:
            out.append(arg)
    return out


def parse_config(cls: type[T], argv: list[str], prog: str, description: str | None = None) -> T:
    """Parse ``argv`` into ``cls``; ``--config FILE`` supplies defaults. A config that fails its
    own validation exits with its message instead of a traceback."""
    import tyro

    argv = list(argv)
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise SystemExit("error: --config needs a file path")
        values = _load_file(argv[i + 1])
        del argv[i : i + 2]
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise SystemExit(f"error: unknown field(s) {unknown} in config file; valid: {sorted(names)}")
        # The file's values go first as flags, so flags typed after them win; a nested map
        # (e.g. ``learner:``) becomes dotted flags (``--learner.lr``).
        prefix = _flags(values, "")
        argv = prefix + argv
    argv = _split_lists(argv, _list_flags(cls))
    try:
        with _one_line_value_errors(tyro):
            return tyro.cli(cls, args=argv, prog=prog, description=description)
    except ValueError as e:  # raised by the dataclass' __post_init__
        raise SystemExit(f"error: {e}") from None


def _one_line_value_errors(tyro):
    """tyro draws a config's own ``__post_init__`` ValueError (a rejected combination of flags) in a
    help box; this makes it the one line ``error: MESSAGE`` the other input errors give. It uses
    tyro's parse-error hook (``tyro._errors.on_parse_error``, experimental there); a tyro without
    it keeps its box, with the same message and exit status 2."""
    errors = getattr(tyro, "_errors", None)
    hook, failure = getattr(errors, "on_parse_error", None), getattr(errors, "InstantiationFailure", None)
    if hook is None or failure is None:
        return contextlib.nullcontext()

    def one_line(event):
        if isinstance(event, failure) and getattr(event, "message", None):
            print(f"error: {event.message}", file=sys.stderr, flush=True)
            raise SystemExit(2)  # tyro's own status for rejected input

    return hook(one_line)
