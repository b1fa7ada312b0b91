"""``vlac critic train | score | eval | filter | calibrate-done | report | fidelity``: the progress critic."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from vlac.utils.cli import parse_config


def train_main(argv: list[str]) -> None:
    from vlac.train.trainer import TrainConfig, train

    cfg = parse_config(TrainConfig, argv, prog="vlac critic train",
                       description="Train the critic (multitask SFT) on LeRobot-layout datasets.")
    try:
        train(cfg)
    except (ValueError, FileNotFoundError) as e:  # bad input: one line, nothing written is lost
        raise SystemExit(f"error: {e}") from None


@dataclass
class ScoreConfig:
    out: str
    """Output folder: scores.json (deltas, values, done) and scores.png."""
    dataset: str = ""
    """Dataset folder to take the episode from (or use --video)."""
    episode: int = 0
    """Episode index in --dataset."""
    video: str = ""
    """A video file (mp4, ...) or a folder of frame images (png/jpg, scored in the numeric order of
    their names: frame_2 before frame_10) to score instead of a dataset episode."""
    task: str = ""
    """Task in words (default for --dataset: the episode's task)."""
    reference: str = ""
    """One-shot reference: a video file of a successful episode of the task."""
    reference_episode: int = -1
    """One-shot reference: an episode index of --dataset (>= 0 enables it)."""
    camera: str = ""
    """Camera key for --dataset (default: the first camera)."""
    skip: int = 3
    """Frame step between the two images of each scored pair."""
    decoding: str = "rich"
    """rich (expected value over number tokens) or greedy."""
    symmetric: bool = False
    """Score each pair both ways and average the readings (two forward passes per pair)."""
    critic: str = "builtin"
    """Critic: builtin (the built-in tiny critic) or a checkpoint folder."""
    threads: int = 0
    """torch threads (0: torch's default; set it to the cores this command may use, e.g. 1 beside a
    running `vlac rl`, or the model runs many times slower)."""


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _natural_key(name: str) -> list:
    """``frame_10.png`` after ``frame_2.png``: digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name)]


def _folder_frames(p: Path):
    """The image files of a folder as one trajectory, in natural (numeric) order of their names."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    files = sorted((f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES), key=lambda f: _natural_key(f.name))
    if len(files) < 2:
        raise SystemExit(f"error: folder {p} has {len(files)} frame image(s) ({', '.join(IMAGE_SUFFIXES)}); "
                         "scoring needs at least 2")
    frames = []
    for f in files:
        try:
            with Image.open(f) as im:
                frames.append(np.asarray(im.convert("RGB")))
        except (UnidentifiedImageError, OSError) as e:
            raise SystemExit(f"error: frame {f} cannot be read ({e}); remove or replace it") from None
        if frames[-1].shape != frames[0].shape:
            raise SystemExit(f"error: frame {f} is {frames[-1].shape[1]}x{frames[-1].shape[0]} but {files[0].name} is "
                             f"{frames[0].shape[1]}x{frames[0].shape[0]}; one trajectory's frames must share a size")
    return np.stack(frames)


def _video_frames(path: str):
    from vlac.data.video import VideoError, decode_video

    p = Path(path)
    if p.is_dir():
        return _folder_frames(p)
    if not p.is_file():
        raise SystemExit(f"error: video {p} does not exist")
    try:
        frames = decode_video(p)
    except VideoError as e:
        raise SystemExit(f"error: video {p} cannot be read ({e}); give an mp4/webm/avi file") from None
    if len(frames) < 2:
        raise SystemExit(f"error: video {p} has {len(frames)} frame(s); scoring needs at least 2")
    return frames


def score_main(argv: list[str]) -> None:
    from vlac.data.dataset import LeRobotDataset

    cfg = parse_config(ScoreConfig, argv, prog="vlac critic score",
                       description="Score one trajectory: pairwise deltas, value curve, done probability.")
    if bool(cfg.dataset) == bool(cfg.video):
        raise SystemExit("error: give exactly one of --dataset DIR (with --episode N) or --video FILE")
    # The model stack (the "model" extra) is imported after parsing, so --help always prints, and
    # before any data is read, so a missing extra is reported at once.
    from vlac.critic.critic import Critic
    from vlac.utils.report import plot_scores

    reference = None
    if cfg.dataset:
        ds = LeRobotDataset(cfg.dataset)
        cam = cfg.camera or ds.camera_keys[0]
        if not 0 <= cfg.episode < ds.num_episodes:
            raise SystemExit(f"error: --episode {cfg.episode} out of range; {cfg.dataset} has "
                             f"{ds.num_episodes} episodes (0..{ds.num_episodes - 1})")
        ep = ds.episode(cfg.episode)
        frames, task = ep.images[cam], cfg.task or ep.task
        m = ds.meta(cfg.episode)
        outcome = "" if "success" not in m else ", successful" if m["success"] else ", failed"
        source = f"{cfg.dataset} episode {cfg.episode} ({m.get('behaviour') or 'no behaviour'}{outcome})"
        if cfg.reference_episode >= 0:
            reference = ds.episode(cfg.reference_episode).images[cam]
    else:
        frames, task = _video_frames(cfg.video), cfg.task
        source = cfg.video
        if not task.strip():
            raise SystemExit("error: --task is required with --video (the task in words, e.g. 'open the drawer')")
    if cfg.reference:
        reference = _video_frames(cfg.reference)
    if len(frames) < 2:
        raise SystemExit(f"error: the trajectory has {len(frames)} frame(s); scoring needs at least 2")
    from vlac.critic.metrics import pair_indices

    pairs = len(pair_indices(len(frames), cfg.skip)) - 1 if cfg.skip >= 1 else 0
    if 0 < pairs < 3:
        print(f"warning: {len(frames)} frames with --skip {cfg.skip} give only {pairs} pair(s) to score; the value "
              f"curve says little (use a smaller --skip)", file=sys.stderr)
    from vlac.utils.imports import set_threads

    set_threads(cfg.threads)
    critic = Critic.load(cfg.critic, symmetric=cfg.symmetric)
    from vlac.model.tokenizer import unknown_words

    unknown = unknown_words(critic.vlm.tokenizer, task)
    if unknown:
        print(f"warning: the critic's vocabulary lacks {len(unknown)} word(s) of the task ({', '.join(unknown)}); it "
              "reads them as unknown, so the score cannot depend on them (word the task as the critic's training "
              "tasks do, or train the critic on it)", file=sys.stderr)
    s = critic.score_trajectory(frames, task, skip=cfg.skip, reference=reference, decoding=cfg.decoding)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    how = (f"{'symmetric' if cfg.symmetric else 'plain'} reading, skip {cfg.skip}, "
           f"{'one-shot' if reference is not None else 'zero-shot'}, critic {cfg.critic}")
    result = {"task": task, "source": source, "critic": cfg.critic,
              "one_shot": reference is not None, "skip": cfg.skip, "symmetric": cfg.symmetric, **s.to_dict()}
    (out / "scores.json").write_text(json.dumps(result, indent=1))
    plot_scores(s, f"{task}\n{source}\n{how}", out / "scores.png")
    print(f"{len(s.deltas)} pairs scored; final value {s.values[-1]:.2f}; "
          f"done probability at the end {s.done[-1]:.2f}; wrote {out / 'scores.json'} and {out / 'scores.png'}")


def eval_main(argv: list[str]) -> None:
    from vlac.eval.critic_eval import EvalConfig, evaluate

    cfg = parse_config(EvalConfig, argv, prog="vlac critic eval",
                       description="VOC / VROC / VOC-F1 / NR and done accuracy (paper Table 1 layout).")
    evaluate(cfg)


def filter_main(argv: list[str]) -> None:
    from vlac.eval.critic_eval import FilterConfig, filter_dataset

    cfg = parse_config(FilterConfig, argv, prog="vlac critic filter",
                       description="Flag episodes with low VOC or a high negative rate.")
    filter_dataset(cfg)


def calibrate_done_main(argv: list[str]) -> None:
    from vlac.eval.calibrate import CalibrateConfig, calibrate

    cfg = parse_config(CalibrateConfig, argv, prog="vlac critic calibrate-done",
                       description="Choose the done threshold and value gate on `vlac critic eval` output "
                                   "of a validation collection (no model is run).")
    try:
        calibrate(cfg)
    except (ValueError, FileNotFoundError) as e:  # bad paths, records or grids: one line, not a traceback
        raise SystemExit(f"error: {e}") from None


def fidelity_main(argv: list[str]) -> None:
    from vlac.eval.fidelity import FidelityConfig, fidelity

    cfg = parse_config(FidelityConfig, argv, prog="vlac critic fidelity",
                       description="Reward fidelity on an actor's own rollouts, as the RL loop runs and scores "
                                   "them: value vs true progress, return AUC, done precision/recall, policy ranking.")
    try:
        fidelity(cfg)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


@dataclass
class ReportConfig:
    eval: str
    """A folder written by `vlac critic eval --out` (episodes.jsonl + report.json)."""


def report_main(argv: list[str]) -> None:
    from vlac.eval.critic_eval import rebuild_report

    cfg = parse_config(ReportConfig, argv, prog="vlac critic report",
                       description="Rebuild report.md / report.json / plots of an eval folder from its "
                                   "episodes.jsonl (no model is run).")
    try:
        rebuild_report(cfg.eval)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


COMMANDS = {"train": train_main, "score": score_main, "eval": eval_main, "filter": filter_main,
            "calibrate-done": calibrate_done_main, "report": report_main, "fidelity": fidelity_main}
