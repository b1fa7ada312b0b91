"""``vlac data collect | info | render | repair``: simulated data collection, dataset inspection
and repair."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import tyro

from vlac.utils.cli import parse_config


def collect_main(argv: list[str]) -> None:
    from vlac.sim.collect import CollectConfig, collect

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
    """Also decode every episode; list every damaged one with its unreadable file (exit 1 if any)."""


def info_main(argv: list[str]) -> None:
    from vlac.data.dataset import LeRobotDataset
    from vlac.data.inspect import summary_text
    from vlac.data.lerobot_format import DatasetError, repair_hint
    from vlac.data.repair import find_damaged

    cfg = parse_config(InfoConfig, argv, prog="vlac data info", description="Summarise a dataset.")
    ds = LeRobotDataset(cfg.root)
    print(summary_text(ds))
    if not cfg.check:
        return
    damaged = find_damaged(ds, progress=True)
    if not damaged:
        print(f"check     all {ds.num_episodes} episodes decode")
        return
    print(f"check     {len(damaged)} of {ds.num_episodes} episodes are damaged:")
    for d in damaged:
        for reason in d.reasons:
            print(f"  episode {d.episode}: {reason}")
    raise DatasetError(f"{len(damaged)} damaged episode(s) in {cfg.root} (listed above); {repair_hint(cfg.root)}")


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


@dataclass
class RepairConfig:
    root: Annotated[str, tyro.conf.Positional]
    """Dataset directory (LeRobot v3.0 layout)."""
    dry_run: bool = False
    """Only list the damaged episodes; change nothing."""
    backup: bool = True
    """Keep the dataset as it was at ROOT.before-repair (hard links: costs only the rewritten files)."""


def repair_main(argv: list[str]) -> None:
    from vlac.data.repair import repair_dataset

    cfg = parse_config(RepairConfig, argv, prog="vlac data repair",
                       description="Drop damaged episodes (unreadable data or video files) and renumber the rest, "
                                   "as LeRobot's delete-episodes tool would; nothing else changes.")
    r = repair_dataset(cfg.root, dry_run=cfg.dry_run, backup=cfg.backup, progress=True)
    for d in r.damaged:
        for reason in d.reasons:
            print(f"  episode {d.episode}: {reason}")
    if not r.renumbered:
        print(f"nothing to repair: all {r.kept} episodes of {cfg.root} decode")
    elif cfg.dry_run:
        print(f"dry run: repair would drop {len(r.damaged)} episode(s) and keep {r.kept}; nothing changed")
    else:
        kept = f"; the dataset as it was is at {r.backup} (delete it when satisfied)" if r.backup else ""
        print(f"dropped {len(r.damaged)} episode(s), kept {r.kept} in {cfg.root}{kept}. "
              "`vlac data collect` with the flags that made the dataset collects the dropped ones again.")


COMMANDS = {"collect": collect_main, "info": info_main, "render": render_main, "repair": repair_main}
