"""Collect scripted episodes from simulated robots into a LeRobot v3.0 dataset.

The collection plan is fixed by the config: episode j of task t gets behaviour ``schedule[j]``
and seed ``episode_seed(seed, t, j)``, whatever the number of workers. Episodes are committed
in plan order, one at a time; re-running the same command skips every committed episode, so a
killed collection resumes where it stopped.

    >>> collect(CollectConfig(out="runs/demo", tasks=["reach-v3", "push-v3"], episodes_per_task=2))
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass, field

from vlac.data.video import check_video_format
from vlac.data.lerobot_format import SIM_ACTION_NAMES, SIM_STATE_NAMES, make_features
from vlac.data.writer import DatasetWriter, remove_dataset
from vlac.sim.behaviours import DEFAULT_MIX, parse_mix, schedule
from vlac.sim.env import FPS
from vlac.data.tasks import resolve_tasks
from vlac.sim.variants import parse_variant


@dataclass
class CollectConfig:
    out: str
    """Output dataset directory (created, or appended to when it holds a dataset of the same schema)."""
    tasks: list[str] = field(default_factory=lambda: ["train"])
    """Meta-World task names, or a split: train, heldout, all."""
    episodes_per_task: int = 10
    """Episodes to collect for each task."""
    behaviours: list[str] = field(default_factory=lambda: [f"{k}:{v}" for k, v in DEFAULT_MIX.items()])
    """Behaviour mix as name:weight pairs (expert, noisy, random-bursts, stall, regression, other-task, miss,
    stop-short)."""
    variant: str = "default"
    """Scene variant, names joined with '+', e.g. dim+gripper-cam."""
    workers: int = 1
    """Simulator processes (rendering is the bottleneck: 2 gain little on 2 cores)."""
    seed: int = 0
    """Base seed; each episode's seed derives from it, the task and the episode's index."""
    image_size: int = 96
    """Square camera image side in pixels."""
    camera: str = "corner4"
    """Main camera name."""
    max_steps: int = 150
    """Episode limit in steps."""
    post_success_steps: int = 3
    """Frames kept after the first success before an episode ends."""
    video: str = "av1"
    """Video format of the camera streams: av1 (LeRobot's default: AV1, 4:2:0 colour, CRF 30) or h264-444
    (H.264 at full colour resolution: keeps 2 px coloured markers such as reach-v3's goal, which 4:2:0
    colour washes out at 96 px; about 1.4x the disk)."""
    overwrite: bool = False
    """Delete an existing dataset at --out first instead of resuming it."""

    def __post_init__(self) -> None:
        self.task_specs = resolve_tasks(self.tasks)
        self.mix = parse_mix(self.behaviours)
        self.scene = parse_variant(self.variant)
        check_video_format(self.video)
        if self.episodes_per_task < 1:
            raise ValueError(f"episodes_per_task={self.episodes_per_task} must be at least 1")
        if self.workers < 1:
            raise ValueError(f"workers={self.workers} must be at least 1")


@dataclass(frozen=True)
class PlanItem:
    task: str
    plan_index: int
    behaviour: str
    seed: int


def make_plan(cfg: CollectConfig) -> list[PlanItem]:
    from vlac.sim.rollout import episode_seed

    behaviours = schedule(cfg.mix, cfg.episodes_per_task)
    # round-robin over tasks, so a stopped collection has every task represented
    return [PlanItem(t.name, j, behaviours[j], episode_seed(cfg.seed, t.name, j))
            for j in range(cfg.episodes_per_task) for t in cfg.task_specs]


# ---------------------------------------------------------------- worker side
_ENVS: dict = {}


def _run(args):
    cfg, item = args
    from vlac.sim.behaviours import make_behaviour
    from vlac.sim.env import SimEnvConfig, SimRobotEnv
    from vlac.sim.rollout import rollout

    if item.task not in _ENVS:
        _ENVS[item.task] = SimRobotEnv(SimEnvConfig(task=item.task, image_size=cfg.image_size, camera=cfg.camera,
                                                    variant=cfg.variant, max_steps=cfg.max_steps))
    ep = rollout(_ENVS[item.task], make_behaviour(item.behaviour), item.seed, cfg.post_success_steps)
    ep.meta["plan_index"] = item.plan_index
    return ep


def _close_envs() -> None:
    for env in _ENVS.values():
        env.close()
    _ENVS.clear()


# ---------------------------------------------------------------- main side
def collect(cfg: CollectConfig, progress: bool = True) -> dict:
    """Run the plan; returns a summary {committed, skipped, successes, path}."""
    from tqdm import tqdm

    if cfg.overwrite:
        remove_dataset(cfg.out)
    from vlac.sim.env import CAMERA_KEYS

    cams = ["main", *(CAMERA_KEYS.get(c, c) for c in cfg.scene.extra_cameras)]
    features = make_features(cams, (cfg.image_size, cfg.image_size), SIM_STATE_NAMES, SIM_ACTION_NAMES)
    writer = DatasetWriter(cfg.out, features, fps=FPS, robot_type="sawyer-metaworld", video=cfg.video)
    done = {(t, v, p) for t, v, p in zip(writer.episode_meta("env_task"), writer.episode_meta("scene_variant"),
                                         writer.episode_meta("plan_index"))}
    plan = make_plan(cfg)
    todo = [it for it in plan if (it.task, cfg.scene.name, it.plan_index) not in done]
    summary = {"committed": 0, "skipped": len(plan) - len(todo), "successes": 0, "path": cfg.out}
    bar = tqdm(total=len(todo), desc="collect", unit="ep", disable=not progress)
    jobs = [(cfg, it) for it in todo]
    pool = None
    try:
        if cfg.workers > 1 and len(todo) > 1:
            pool = mp.get_context("spawn").Pool(cfg.workers)
            results = pool.imap(_run, jobs)  # ordered: commits follow the plan
        else:
            results = map(_run, jobs)
        for ep in results:
            writer.add_episode(ep)
            summary["committed"] += 1
            summary["successes"] += int(bool(ep.is_success))
            bar.update(1)
            bar.set_postfix(success=f"{summary['successes'] / summary['committed']:.2f}", frames=writer.num_frames)
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted: {writer.num_episodes} episodes are safely in {cfg.out}; "
              "run the same command again to resume.")
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        _close_envs()
    summary["episodes"] = writer.num_episodes
    summary["frames"] = writer.num_frames
    return summary
