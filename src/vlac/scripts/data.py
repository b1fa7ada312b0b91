"""``vlac data collect | info | render``: simulated data collection and dataset inspection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import tyro

from vlac.utils.cli import parse_config


def collect_main(argv: list[str]) -> None:
    from vlac.data.collect import CollectConfig, collect

    cfg = parse_config(CollectConfig, argv, prog="vlac data collect",
                       description="Collect scripted episodes from simulated robots into a LeRobot v3.0 dataset.")
    s = collect(cfg)
    print(f"{s['committed']} episodes collected ({s['skipped']} already present), "
          f"{s['episodes']} episodes / {s['frames']} frames in {s['path']}")


@dataclass
class InfoConfig:
    root: Annotated[str, tyro.conf.Positional]
    """Dataset directory (LeRobot v3.0 layout)."""
    check: bool = False
    """Also decode every episode, reporting any unreadable file by path."""


def info_main(argv: list[str]) -> None:
    from tqdm import tqdm

    from vlac.data.dataset import LeRobotDataset
    from vlac.data.inspect import summary_text

    cfg = parse_config(InfoConfig, argv, prog="vlac data info", description="Summarise a dataset.")
    ds = LeRobotDataset(cfg.root)
    print(summary_text(ds))
    if cfg.check:
        for i in tqdm(range(ds.num_episodes), desc="check", unit="ep"):
            ds.episode(i)
        print(f"check     all {ds.num_episodes} episodes decode")


@dataclass
class RenderConfig:
    root: Annotated[str, tyro.conf.Positional]
    """Dataset directory."""
    out: str
    """Output file: .png for a contact sheet, .mp4 for a video of all cameras."""
    episode: int = 0
    """Episode index."""
    frames: int = 8
    """Frames on a contact sheet."""


def render_main(argv: list[str]) -> None:
    from vlac.data.dataset import LeRobotDataset
    from vlac.data.inspect import render_episode

    cfg = parse_config(RenderConfig, argv, prog="vlac data render",
                       description="Render one episode to a contact-sheet PNG or an mp4.")
    path = render_episode(LeRobotDataset(cfg.root), cfg.episode, cfg.out, cfg.frames)
    print(f"wrote {path}")


COMMANDS = {"collect": collect_main, "info": info_main, "render": render_main}
