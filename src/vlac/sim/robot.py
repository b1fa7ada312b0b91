"""``vlac robot sim``: one simulated robot (Meta-World) as its own process, speaking exactly the
protocol a real robot's driver speaks. A real robot replaces this process.

    vlac robot sim --task reach-v3 --connect tcp://127.0.0.1:5555

Control loop, per step: capture an observation and send it; wait for the action that answers
it, at most ``--period`` seconds (a real robot's control period) or, with ``--period 0``
(simulation only, lock-step), until it comes; execute it, or hold still if none came in time
(counted as idle). Observations flow whatever the learner does: the learner never talks to
robots, inference workers do. The gateway ends an episode with a ``reset`` (the critic judged
it done, or the loop wants a new start); the robot ends it itself at ``--max-steps``. A
``takeover`` hands the robot to an operator for some steps: here the task's scripted expert stands
in for the person, drives from the current state, and each observation after an operator's
action says so (``operator_action``), as a real robot with a teleoperation device would.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlac.transport.client import RobotClient


@dataclass
class SimRobotConfig:
    connect: str
    """Gateway address, e.g. tcp://127.0.0.1:5555."""
    task: str = "reach-v3"
    """Meta-World task of this robot."""
    robot_id: str = ""
    """Unique robot id (default: the key file's name with --keys, as `vlac robot keys --name ID`
    wrote it and the gateway admits it; else sim-<task>-<pid>)."""
    episodes: int = 0
    """Episodes to run before exiting (0: until stopped)."""
    max_steps: int = 150
    """Episode limit in steps (the robot ends the episode with reason "limit")."""
    period: float = 0.0
    """Control period in seconds: how long the robot waits for an action before holding still.
    0: lock-step (wait until the action comes; simulation only)."""
    seed: int = 0
    """Base seed of the episodes' object and goal positions."""
    variant: str = "default"
    """Scene variant."""
    image_size: int = 96
    """Camera image side."""
    server_key: str = ""
    """File with the gateway's CURVE public key (required for non-loopback addresses)."""
    keys: str = ""
    """This robot's CURVE key file (default: a fresh key pair)."""
    resend_after: float = 2.0
    """Lock-step mode: send the observation again if no action came within this many seconds."""
    welcome_timeout: float = 60.0
    """Give up if no gateway answers within this many seconds."""
    start_repeats: int = 1
    """Episodes run from one start (object and goal positions) before the next is drawn. Above 1 the
    starts come from the seed, the task and the episode's index alone, so robots of one task given the
    same --seed share them (robot A's and B's episodes 0 and 1 begin alike with 2): groups of episodes
    from one start, which ``--learner.outcome-groups scene`` compares with each other. Every
    episode_start names its start (``scene``)."""
    keep_snapshots: int = 20
    """Return-and-explore: episodes whose every step's exact simulator state is kept, so the gateway
    can send the robot back to any of them (``return_to``)."""
    parent_pid: int = 0
    """Stop when this process ends (set by `vlac rl` for the robots it starts, so none outlives a
    killed run); 0: live on its own."""


def run_sim_robot(cfg: SimRobotConfig) -> dict:
    from vlac.sim.behaviours import make_behaviour
    from vlac.sim.env import SimEnvConfig, SimRobotEnv
    from vlac.sim.rollout import episode_seed
    from vlac.data.lerobot_format import SIM_ACTION_NAMES, SIM_STATE_NAMES
    from vlac.data.tasks import TASKS
    from vlac.transport.link import CurveKeys

    if cfg.start_repeats < 1:
        raise SystemExit(f"error: --start-repeats {cfg.start_repeats} must be >= 1 (episodes from one start)")
    stop = _Stop(cfg.parent_pid)
    env = SimRobotEnv(SimEnvConfig(task=cfg.task, image_size=cfg.image_size, variant=cfg.variant,
                                   max_steps=cfg.max_steps))
    robot_id = cfg.robot_id or (Path(cfg.keys).stem if cfg.keys else f"sim-{cfg.task}-{os.getpid()}")
    server_key = CurveKeys.load(cfg.server_key).public if cfg.server_key else None
    keys = CurveKeys.load(cfg.keys) if cfg.keys else None
    task = TASKS[cfg.task].instruction

    def start_seed(episode: int) -> int:
        """The seed of an episode's start (object and goal positions)."""
        if cfg.start_repeats > 1:  # shared by the robots of this task given the same --seed
            return episode_seed(cfg.seed, cfg.task, episode // cfg.start_repeats)
        return episode_seed(cfg.seed, robot_id, episode)

    client = RobotClient(cfg.connect, robot_id, embodiment="sim-arm", cameras=env.camera_keys, task=task,
                         state_dim=4, action_dim=4, server_key=server_key, keys=keys,
                         state_names=SIM_STATE_NAMES, action_names=SIM_ACTION_NAMES)
    print(f"robot {robot_id}: waiting for a gateway at {cfg.connect} (up to {cfg.welcome_timeout:.0f} s)", flush=True)
    stats = {"episodes": 0, "steps": 0, "idle_steps": 0, "successes": 0, "wait_s": 0.0, "operator_steps": 0,
             "takeovers": 0, "returns": 0}
    snapshots: dict[int, list] = {}  # episode -> the exact state at each of its steps (the newest episodes)
    try:
        end = time.monotonic() + cfg.welcome_timeout
        while not stop.now and time.monotonic() < end and not client.wait_welcome(0.2):
            if client.refused:
                raise SystemExit(f"error: the gateway at {cfg.connect} turned robot {robot_id} away: {client.refused}")
        if stop.now:
            return stats
        if client.session is None:
            raise SystemExit(f"error: no gateway answered at {cfg.connect} within {cfg.welcome_timeout:.0f} s; "
                             "start `vlac rl` first or check the address")
        print(f"robot {robot_id}: connected to {cfg.connect} (session {client.session})", flush=True)
        episode = 0
        hold = np.array([0, 0, 0, 1], dtype=np.float32)
        operator = make_behaviour("expert")  # the simulated operator: the task's scripted expert
        while not stop.now and (cfg.episodes == 0 or episode < cfg.episodes):
            seed = start_seed(episode)
            client.poll(0)
            back = _return_point(client, snapshots)
            if back is None:
                obs = env.reset(seed)
            else:  # return-and-explore: that episode's scene (goal, objects), in the state it reached
                env.reset(start_seed(back[0]))
                obs = env.start_from(snapshots[back[0]][back[1]])
                stats["returns"] += 1
            client.resets.clear()
            client.takeovers.clear()
            client.start_episode(episode, task, returned_to=back, scene=str(seed))
            snapshots[episode] = []
            for old in sorted(snapshots)[:-cfg.keep_snapshots]:
                del snapshots[old]
            step, reason, last, executed = 0, "limit", hold, None
            operated, operator_left = None, 0  # the operator's action into this observation; steps it still drives
            while not stop.now:
                snapshots[episode].append(env.snapshot())  # the state at this step (a possible return point)
                sim = {"reward": env.reward, "success": env.success}  # measurement / oracle arms only
                operator_left = _take_over(client, operator, env, episode, seed + step, operator_left, stats)
                oid = client.send_obs(obs["images"], obs["state"], episode, step, executed=executed, sim=sim,
                                      operator_action=operated, driving="operator" if operator_left else "policy")
                t0 = sent = time.monotonic()
                action, operated = None, None
                while not stop.now and action is None and not client.resets and not operator_left \
                        and not client.takeovers:
                    left = 0.2 if cfg.period <= 0 else min(0.2, cfg.period - (time.monotonic() - t0))
                    action = client.wait_action(oid, max(left, 0.0))
                    stale = [t for t in client.takeovers if t["episode"] != episode]
                    for t in stale:  # a takeover of an earlier episode arrived late: not this one's
                        client.takeovers.remove(t)
                    now = time.monotonic()
                    if action is None and cfg.period > 0 and now - t0 >= cfg.period:
                        break  # a real robot cannot wait: hold still this period
                    if action is None and cfg.period <= 0 and now - sent >= cfg.resend_after:
                        # lock-step: the gateway may have restarted or dropped it; send a fresh one
                        oid = client.send_obs(obs["images"], obs["state"], episode, step, executed=executed, sim=sim)
                        sent = now
                stats["wait_s"] += time.monotonic() - t0
                mine = [r for r in client.resets if r["episode"] == episode]  # ignore stale ones
                client.resets.clear()
                if mine:
                    reason = "done" if mine[-1]["reason"] == "done" else "reset"
                    break
                operator_left = _take_over(client, operator, env, episode, seed + step, operator_left, stats)
                if operator_left and action is None:  # the operator drives this step, not the policy
                    action = operated = operator.act(env)
                    operator_left -= 1
                    stats["operator_steps"] += 1
                    executed = -1  # no policy action ran
                else:
                    # which action ran (told with the next observation); -1: held still
                    executed = int(client.last_action_msg["obs_id"]) if action is not None else -1
                if action is None:
                    stats["idle_steps"] += 1
                    action = np.array([0, 0, 0, last[3]], dtype=np.float32)  # hold still, keep the grip
                last = action
                obs = env.step(np.clip(action, [-10, -10, -10, 0], [10, 10, 10, 1]))
                step += 1
                stats["steps"] += 1
                if cfg.period > 0:
                    time.sleep(max(0.0, cfg.period - (time.monotonic() - t0)))
                if env.done:
                    break
            success = env.reached  # at any step, as evaluation counts it (an arm may leave the goal)
            client.end_episode(episode, "abort" if stop.now else reason, success=success)
            stats["episodes"] += 1
            stats["successes"] += int(success)
            episode += 1
        client.poll(50)
    finally:
        client.close()
        env.close()
    # observations the link dropped (gateway away or behind), and episode starts / ends it never got out
    stats.update(dropped_obs=client.dropped, unsent_starts_ends=len(client.pending) + client.lost_control)
    print(f"robot {robot_id}: {stats}", flush=True)
    return stats


def robot_command(address: str, task: str, robot_id: str, max_steps: int, period: float, seed: int,
                  start_repeats: int = 1) -> list[str]:
    """The command line of a simulated robot that `vlac rl` starts; it stops when the starting
    process ends, even by SIGKILL (``--parent-pid``), so no robot outlives its run."""
    return [sys.executable, "-m", "vlac.scripts.cli", "robot", "sim", "--connect", address, "--task", task,
            "--robot-id", robot_id, "--max-steps", str(max_steps), "--period", str(period), "--seed", str(seed),
            "--start-repeats", str(start_repeats), "--parent-pid", str(os.getpid())]


def _return_point(client: RobotClient, snapshots: dict) -> tuple | None:
    """The newest return point the gateway asked for that this robot still holds, or None."""
    asked = list(client.returns)
    client.returns.clear()
    for msg in reversed(asked):
        episode, step = int(msg["episode"]), int(msg["step"])
        if step < len(snapshots.get(episode, [])):
            return episode, step
    return None


def _take_over(client: RobotClient, operator, env, episode: int, seed: int, left: int, stats: dict) -> int:
    """Steps the simulated operator still drives, after any takeover the gateway asked for in this
    episode (a new one restarts the scripted expert from the current state)."""
    asked = [t for t in client.takeovers if t["episode"] == episode]
    client.takeovers.clear()
    if asked:
        operator.reset(env, np.random.default_rng(seed))
        stats["takeovers"] += 1
        return int(asked[-1]["steps"])
    return left


class _Stop:
    """Whether the robot should stop: SIGTERM, or the parent named by ``parent_pid`` is gone. On
    Linux the kernel sends SIGTERM when the parent dies (even by SIGKILL); elsewhere the parent's
    pid is watched, as it is on Linux too in case the parent died before the request was made."""

    def __init__(self, parent_pid: int):
        self.signalled = False
        self.parent_pid = parent_pid
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "signalled", True))
        if parent_pid and sys.platform.startswith("linux"):
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)

    @property
    def now(self) -> bool:
        return self.signalled or bool(self.parent_pid and os.getppid() != self.parent_pid)


def main(argv: list[str]) -> None:
    from vlac.utils.cli import parse_config

    cfg = parse_config(SimRobotConfig, argv, prog="vlac robot sim",
                       description="One simulated robot connecting to a gateway (the real-robot protocol).")
    from vlac.data.tasks import resolve_tasks

    from vlac.transport.link import is_loopback

    resolve_tasks(cfg.task)
    if not cfg.server_key and not is_loopback(cfg.connect):
        raise SystemExit(f"error: --connect {cfg.connect} is not loopback: a robot link off this machine needs CURVE "
                         "encryption; pass --server-key FILE (the gateway's public key) and --keys FILE (this "
                         "robot's key pair, from `vlac robot keys --name ID`)")
    run_sim_robot(cfg)
    sys.stdout.flush()
