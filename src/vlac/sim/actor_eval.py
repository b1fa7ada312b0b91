"""``vlac actor eval``: roll actors out on simulated robots and report success (the simulator's
flag) and task progress (the critic's final value) per task and scene variant, in the layout of
the paper's Table 2, with several checkpoints side by side (e.g. with and without progress
pre-training).

    vlac actor eval --tasks reach-v3 push-v3 --episodes 10 --out runs/actor-eval
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vlac.utils.report import pyplot, fmt, markdown_table
from vlac.sim.env import SimEnvConfig, SimRobotEnv
from vlac.sim.rollout import episode_seed
from vlac.utils.imports import set_threads
from vlac.data.tasks import TASKS, resolve_tasks


@dataclass
class ActorEvalConfig:
    out: str
    """Report folder: report.md, report.json, episodes.jsonl, success.png."""
    tasks: list[str] = field(default_factory=lambda: ["reach-v3", "push-v3"])
    """Tasks (or a split name: train, heldout)."""
    episodes: int = 10
    """Episodes per task, actor and variant (new object and goal positions each)."""
    actor: list[str] = field(default_factory=lambda: ["builtin"])
    """Actors side by side: builtin (the built-in tiny actor) or checkpoint folders."""
    names: list[str] = field(default_factory=list)
    """Labels of the actors in the table (default: folder names)."""
    variants: list[str] = field(default_factory=lambda: ["default"])
    """Scene variants (see `vlac data collect --help`)."""
    max_steps: int = 150
    """Episode limit in steps."""
    post_success_steps: int = 3
    """Steps kept after the simulator first reports success (then the episode ends)."""
    temperature: float = 0.0
    """Sampling temperature of the numbers; 0 takes the most likely value (greedy)."""
    top_k: int = 0
    """Sample from the k most likely values only (0: all)."""
    mean: bool = False
    """Take each number nearest its expected value under the actor's distribution (at --temperature, 1
    when it is 0) instead of the most likely value or a sample: the average of what the policy would do,
    without the argmax's ties and stalls (actors whose tokenizer writes each number as one token)."""
    seed: int = 10_000
    """Base seed of the evaluation episodes (training data used 0-5000)."""
    critic: str = "builtin"
    """Critic scoring task progress: builtin, a checkpoint folder, or none (skip)."""
    record: str = ""
    """Also write every evaluation episode to this LeRobot-layout dataset (with videos)."""
    image_size: int = 96
    """Camera image side (must match what the actor was trained on)."""
    codec: bool = False
    """Pass every camera frame through the dataset's video codec (AV1, 4:2:0 colour) before the actor
    reads it, as the stored episodes it was cloned from were: measures what the gap between stored and
    raw frames costs an actor."""
    threads: int = 0
    """torch threads (0: torch's default)."""

    def __post_init__(self):
        actors = len(self.actor or ["builtin"])
        if self.names and len(self.names) != actors:
            raise ValueError(f"--names gives {len(self.names)} labels ({', '.join(self.names)}) for {actors} "
                             "actor(s): one label per --actor, in order (quote a label with spaces)")


@dataclass
class Rollout:
    task: str
    variant: str
    seed: int
    success: bool
    steps: int
    frames: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    flags: np.ndarray
    seconds_per_action: float
    remaining: np.ndarray | None = None  # per frame: the task's distance from done (measurement only)


def run_batch(actor, task: str, variant: str, seeds: list[int], cfg: ActorEvalConfig) -> list[Rollout]:
    """Episodes with the given seeds, stepped in lockstep so the actor decodes them as one batch."""
    import torch

    from vlac.actor.actor import ActorInput
    from vlac.data.video import roundtrip

    env_cfg = SimEnvConfig(task=task, image_size=cfg.image_size, variant=variant, max_steps=cfg.max_steps)
    envs = [SimRobotEnv(env_cfg) for _ in seeds]
    instruction = TASKS[task].instruction
    try:
        obs = [env.reset(s) for env, s in zip(envs, seeds)]
        logs = [{"frames": [], "states": [], "actions": [], "flags": [], "remaining": []} for _ in envs]
        after = [None] * len(envs)
        live = list(range(len(envs)))
        gen = torch.Generator().manual_seed(seeds[0])
        act_time, n_actions = 0.0, 0
        while live:
            if cfg.codec:  # one frame through the codec: a key frame, as every other stored frame is
                for k in live:
                    obs[k]["images"] = {c: roundtrip(im[None])[0] for c, im in obs[k]["images"].items()}
            inputs = [ActorInput(actor.vlm.preprocess.view(obs[k]["images"]), obs[k]["state"], instruction,
                                 logs[k]["actions"][-actor.history:] if actor.history else []) for k in live]
            t0 = time.perf_counter()
            samples = actor.act(inputs, temperature=(cfg.temperature or 1.0) if cfg.mean else max(cfg.temperature, 1e-6),
                                top_k=cfg.top_k, greedy=cfg.temperature <= 0, generator=gen, mean=cfg.mean)
            act_time += time.perf_counter() - t0
            n_actions += 1
            still = []
            for k, s in zip(live, samples):
                log = logs[k]
                log["frames"].append(actor.vlm.preprocess.view(obs[k]["images"]))
                log["states"].append(obs[k]["state"])
                log["actions"].append(s.action)
                log["flags"].append(obs[k]["success"])
                log["remaining"].append(envs[k].remaining())
                if obs[k]["success"] and after[k] is None:
                    after[k] = 0
                if after[k] is not None:
                    after[k] += 1
                if (after[k] is not None and after[k] > cfg.post_success_steps) or envs[k].done:
                    continue
                obs[k] = envs[k].step(s.action)
                still.append(k)
            live = still
    finally:
        for env in envs:
            env.close()
    per_action = act_time / max(n_actions, 1)
    # steps: actions executed (the last frame's action is recorded for the dataset but never run,
    # so --max-steps 60 reports 60, not 61)
    return [Rollout(task, variant, s, bool(np.any(log["flags"])), env.steps, np.stack(log["frames"]),
                    np.stack(log["states"]), np.stack(log["actions"]), np.asarray(log["flags"]), per_action,
                    np.asarray(log["remaining"]))
            for s, log, env in zip(seeds, logs, envs)]


def evaluate(cfg: ActorEvalConfig) -> dict:

    from vlac.actor.actor import Actor

    if cfg.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {cfg.episodes}")
    set_threads(cfg.threads)
    tasks = [t.name for t in resolve_tasks(cfg.tasks)]
    variants = cfg.variants
    for v in variants:
        SimEnvConfig(variant=v)  # fails early with the list of valid variants
    ckpts = cfg.actor or ["builtin"]
    names = cfg.names or [c if c == "builtin" else Path(c).name for c in ckpts]
    critic = None
    if cfg.critic != "none":
        from vlac.critic.critic import Critic

        critic = Critic.load(cfg.critic)
    writer = None
    if cfg.record:
        from vlac.sim.env import FPS
        from vlac.data.lerobot_format import SIM_ACTION_NAMES, SIM_STATE_NAMES, make_features
        from vlac.data.writer import DatasetWriter

        feats = make_features(["main"], (cfg.image_size, cfg.image_size), SIM_STATE_NAMES, SIM_ACTION_NAMES)
        writer = DatasetWriter(cfg.record, feats, fps=FPS, robot_type="sawyer-metaworld")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    jobs = [(n, c, v, t) for n, c in zip(names, ckpts) for v in variants for t in tasks]
    bar = tqdm(total=len(jobs) * cfg.episodes, desc="actor eval", unit="ep")
    actors: dict[str, object] = {}
    with open(out / "episodes.jsonl", "w") as f:
        for name, ckpt, variant, task in jobs:
            if name not in actors:
                actors.clear()  # one actor in memory at a time
                actors[name] = Actor.load(ckpt)
            actor = actors[name]
            seeds = [episode_seed(cfg.seed, task, i) for i in range(cfg.episodes)]
            for r in run_batch(actor, task, variant, seeds, cfg):
                rec = {"checkpoint": name, "task": task, "variant": variant, "seed": r.seed, "success": r.success,
                       "steps": r.steps, "seconds_per_action": r.seconds_per_action}
                if critic is not None and len(r.frames) >= 2:
                    s = critic.score_trajectory(r.frames, TASKS[task].instruction, skip=3, with_done=False)
                    rec["progress"] = float(s.values[-1])
                if writer is not None:
                    from vlac.data.episode import Episode

                    writer.add_episode(Episode(TASKS[task].instruction, {"main": r.frames}, r.states.astype(np.float32),
                                               r.actions.astype(np.float32), r.flags,
                                               {"behaviour": f"actor:{name}", "seed": r.seed, "scene_variant": variant,
                                                "env_task": task, "success": r.success}))
                records.append(rec)
                f.write(json.dumps(rec) + "\n")
                f.flush()
                bar.update(1)
                bar.set_postfix(success=f"{np.mean([x['success'] for x in records]):.2f}")
    bar.close()
    if writer is not None:
        writer.close()
    report = _summarise(records, names, tasks, variants)
    report["config"] = asdict(cfg)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(_markdown(report, names, tasks, variants))
    _plot(report, names, tasks, variants, out / "success.png")
    print(f"wrote {out / 'report.md'}, {out / 'report.json'} and {out / 'success.png'}")
    for name in names:
        print(f"  {name}: success {fmt(report['overall'][name]['success'])} over "
              f"{report['overall'][name]['episodes']} episodes")
    return report


def _cell(recs: list[dict]) -> dict:
    prog = [r["progress"] for r in recs if "progress" in r]
    return {"episodes": len(recs), "success": float(np.mean([r["success"] for r in recs])) if recs else float("nan"),
            "progress": float(np.mean(prog)) if prog else float("nan"),
            "seconds_per_action": float(np.mean([r["seconds_per_action"] for r in recs])) if recs else float("nan")}


def _summarise(records: list[dict], names, tasks, variants) -> dict:
    cells = {}
    for n in names:
        for v in variants:
            for t in tasks:
                cells[f"{n}|{v}|{t}"] = _cell([r for r in records if (r["checkpoint"], r["variant"], r["task"]) == (n, v, t)])
    overall = {n: _cell([r for r in records if r["checkpoint"] == n]) for n in names}
    by_variant = {f"{n}|{v}": _cell([r for r in records if r["checkpoint"] == n and r["variant"] == v])
                  for n in names for v in variants}
    return {"cells": cells, "overall": overall, "by_variant": by_variant}


def _markdown(report: dict, names, tasks, variants) -> str:
    scored = any(np.isfinite(c["progress"]) for c in report["cells"].values())
    metrics = ("success", "progress") if scored else ("success",)
    label = {"success": "success", "progress": "critic's progress estimate"}
    header = ["task / variant"] + [f"{n} {label[m]}" for n in names for m in metrics]

    def cells(c: dict) -> list:
        return [fmt(c[m]) for m in metrics]

    rows = []
    for v in variants:
        for t in tasks:
            rows.append([f"{t} / {v}"] + [x for n in names for x in cells(report["cells"][f"{n}|{v}|{t}"])])
        if len(tasks) > 1:
            rows.append([f"**mean / {v}**"] + [x for n in names for x in cells(report["by_variant"][f"{n}|{v}"])])
    n_ep = report["cells"][f"{names[0]}|{variants[0]}|{tasks[0]}"]["episodes"]
    speed = ", ".join(f"{n} {1000 * report['overall'][n]['seconds_per_action']:.0f} ms" for n in names)
    what = ("Success rate (the simulator's success flag at any step)" +
            (" and the critic's progress estimate (its final value, 0..1: how far the critic judges the "
             "episode got, not a success rate; a failed episode can read high)" if scored else "") +
            " per task and scene variant; the paper's Table 2 layout. " +
            ("Every camera frame went through the dataset's video codec before the actor read it. "
             if report.get("config", {}).get("codec") else "") + _decoding(report.get("config", {})))
    return ("# Actor evaluation\n\n" + what + f"{n_ep} episodes per cell.\n\n" + markdown_table(header, rows) +
            f"\n\nAverage time per batched action call (all live episodes of a task at once): {speed}.\n")


def _decoding(cfg: dict) -> str:
    """How the numbers were read, in words."""
    temp = cfg.get("temperature", 0.0)
    if cfg.get("mean"):
        return f"Each number nearest its expected value under the actor's distribution (temperature {temp or 1:g}). "
    if temp > 0:
        return f"Numbers sampled at temperature {temp:g}. "
    return "Greedy: the most likely value of each number. "


def _plot(report: dict, names, tasks, variants, path: Path) -> None:
    plt = pyplot()
    labels = [f"{t}\n{v}" if len(variants) > 1 else t for v in variants for t in tasks]
    x = np.arange(len(labels))
    w = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(labels)), 3.5))
    for k, n in enumerate(names):
        vals = [report["cells"][f"{n}|{v}|{t}"]["success"] for v in variants for t in tasks]
        bars = ax.bar(x + (k - (len(names) - 1) / 2) * w, vals, w, label=n)
        ax.bar_label(bars, labels=[fmt(v) for v in vals], fontsize=7)  # a 0.00 bar is visible as a number
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("success rate")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
