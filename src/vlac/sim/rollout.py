"""Run one scripted episode and return it as arrays, ready to be written as a dataset episode.

Frame t holds the observation o_t and the action a_t taken from it; the observation after the
last action is not recorded. Episodes of behaviours that finish a task end a few frames after
the simulator first reports success (``post_success_steps``), as demonstrations in the paper end
at completion; the regression behaviour keeps going to undo its progress.

    >>> ep = run_episode(SimEnvConfig(task="push-v3"), "expert", seed=3)
    >>> ep.is_success, ep.length, ep.images["main"].shape
    (True, 61, (61, 96, 96, 3))
"""

from __future__ import annotations

import zlib

import numpy as np

from vlac.data.episode import Episode
from vlac.sim.behaviours import Behaviour, make_behaviour
from vlac.sim.env import SimEnvConfig, SimRobotEnv
from vlac.data.tasks import TASKS


def episode_seed(base_seed: int, task: str, index: int) -> int:
    """A reproducible seed per (base seed, task, episode index), independent of worker count."""
    return int(np.random.SeedSequence([base_seed, zlib.crc32(task.encode()), index]).generate_state(1)[0])


def rollout(env: SimRobotEnv, behaviour: Behaviour, seed: int, post_success_steps: int = 3) -> Episode:
    rng = np.random.default_rng(seed)
    obs = env.reset(seed)
    behaviour.reset(env, rng)
    images: dict[str, list] = {k: [] for k in obs["images"]}
    states, actions, success = [], [], []
    after_success = None
    while not env.done:
        action = behaviour.act(env)
        for k, img in obs["images"].items():
            images[k].append(img)
        states.append(obs["state"])
        actions.append(action)
        success.append(obs["success"])
        if obs["success"] and after_success is None and not behaviour.keeps_going_after_success:
            after_success = 0
        if after_success is not None:
            after_success += 1
            if after_success > post_success_steps:
                break
        obs = env.step(action)
    success = np.asarray(success, dtype=bool)
    return Episode(
        task=TASKS[env.config.task].instruction,
        images={k: np.stack(v) for k, v in images.items()},
        state=np.stack(states).astype(np.float32),
        action=np.stack(actions).astype(np.float32),
        success=success,
        meta={"behaviour": behaviour.name, "seed": int(seed), "scene_variant": env.variant.name,
              "env_task": env.config.task, "success": bool(success[-1])},
    )


def run_episode(config: SimEnvConfig, behaviour: str | Behaviour, seed: int, post_success_steps: int = 3) -> Episode:
    """Build an env, run one episode, close the env."""
    b = make_behaviour(behaviour) if isinstance(behaviour, str) else behaviour
    with SimRobotEnv(config) as env:
        return rollout(env, b, seed, post_success_steps)
