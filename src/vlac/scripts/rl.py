"""``vlac rl`` (the RL loop; ``vlac rl compare | report`` over finished runs) and ``vlac robot sim | keys`` (robots and their link)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from vlac.utils.cli import parse_config


@dataclass
class CompareConfig:
    runs: list[str]
    """`vlac rl` run folders."""
    out: str
    """PNG file to write."""
    names: list[str] = field(default_factory=list)
    """Labels (default: the run folders' names)."""


def compare_main(argv: list[str]) -> None:
    from vlac.rl.report import compare

    cfg = parse_config(CompareConfig, argv, prog="vlac rl compare",
                       description="Evaluation success of several `vlac rl` runs on one plot, each labelled with "
                                   "its reward source (oracle arms marked as references), and beside it the "
                                   "success of their training episodes (also for runs not evaluated).")
    runs, names = cfg.runs, cfg.names or None
    missing = [r for r in runs if not any((Path(r) / f).is_file() for f in ("eval.jsonl", "episodes.jsonl"))]
    if missing:
        raise SystemExit(f"error: no eval.jsonl or episodes.jsonl in {', '.join(missing)}: give folders written by "
                         "`vlac rl --out`")
    if names is not None and len(names) != len(runs):
        raise SystemExit(f"error: --names has {len(names)} labels for {len(runs)} runs")
    compare(runs, names, cfg.out)
    print(f"wrote {cfg.out}")


@dataclass
class ReportConfig:
    run: Annotated[str, tyro.conf.Positional]
    """A `vlac rl` run folder."""


def report_main(argv: list[str]) -> None:
    from vlac.rl.report import write_report

    cfg = parse_config(ReportConfig, argv, prog="vlac rl report",
                       description="Rebuild a run's report.md and curves.png from its logs (no model is run).")
    if not (Path(cfg.run) / "episodes.jsonl").is_file():
        raise SystemExit(f"error: no episodes.jsonl in {cfg.run}: give a folder written by `vlac rl --out`")
    print(f"wrote {write_report(cfg.run)}")


RL_TOOLS = {"compare": compare_main, "report": report_main}
"""``vlac rl compare | report``: tools over finished runs; anything else is the loop's flags."""


def rl_main(argv: list[str]) -> None:
    from vlac.rl.config import RLConfig
    from vlac.rl.loop import run

    if argv and argv[0] in RL_TOOLS:
        return RL_TOOLS[argv[0]](argv[1:])
    cfg = parse_config(RLConfig, argv, prog="vlac rl",
                       description="Asynchronous RL on Ray: gateway, simulated robots, inference, critic, learner.")
    summary = run(cfg)
    print(f"{summary['episodes']} episodes in {summary['wall_seconds']:.0f} s; report: {Path(cfg.out) / 'report.md'}")


def sim_main(argv: list[str]) -> None:
    from vlac.sim.robot import main

    main(argv)


@dataclass
class KeysConfig:
    out: str
    """Folder to write NAME.key (public + secret) and NAME.pub (public only)."""
    name: str = "gateway"
    """Key name: "gateway", or a robot id."""


def keys_main(argv: list[str]) -> None:
    from vlac.transport.link import CurveKeys

    cfg = parse_config(KeysConfig, argv, prog="vlac robot keys", description="Create a CURVE key pair for a robot link.")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    k = CurveKeys.generate()
    k.save(out / f"{cfg.name}.key")
    k.save(out / f"{cfg.name}.pub", public_only=True)
    (out / f"{cfg.name}.key").chmod(0o600)
    print(f"wrote {out / (cfg.name + '.key')} (keep secret) and {out / (cfg.name + '.pub')} (give to the other side)")


ROBOT_COMMANDS = {"sim": sim_main, "keys": keys_main}
