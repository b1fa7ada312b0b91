"""``vlac rl`` (the RL loop) and ``vlac robot sim | keys`` (robots and their link)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlac.utils.cli import parse_config


def rl_main(argv: list[str]) -> None:
    from vlac.rl.loop import RLConfig, run

    cfg = parse_config(RLConfig, argv, prog="vlac rl",
                       description="Asynchronous RL on Ray: gateway, simulated robots, inference, critic, learner.")
    summary = run(cfg)
    print(f"{summary['episodes']} episodes in {summary['wall_seconds']:.0f} s; report: {Path(cfg.out) / 'report.md'}")


def sim_main(argv: list[str]) -> None:
    from vlac.robots.sim import main

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
