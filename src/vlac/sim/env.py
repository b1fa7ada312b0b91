"""A simulated robot: one Meta-World v3 task, camera images, actions in the text template's units.

Observation (a dict):
    ``images``  {camera key: (H, W, 3) uint8, upright}; ``main`` always, plus extra cameras of the variant
    ``state``   (4,) float32: end-effector x, y, z in millimetres and gripper opening in 0..1
    ``success`` the simulator's success flag: ground truth for measurement, never a model input

Action: (4,) float: end-effector displacement dx, dy, dz in millimetres (at most ``MAX_STEP_MM`` per
axis and step) and ``open`` in 0..1 (1 = open the gripper, 0 = close it), the units of the text
action template ``x: 5mm, y: -3mm, z: 0mm, open: 1``.

    >>> env = SimRobotEnv(SimEnvConfig(task="reach-v3"))
    >>> obs = env.reset(seed=0)
    >>> obs = env.step(np.array([5.0, 0.0, -2.0, 1.0]))
    >>> snap = env.snapshot(); ...; env.restore(snap)   # exact: same actions give the same frames
    >>> env.close()
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlac.data.tasks import TASKS, TaskSpec, resolve_tasks
from vlac.sim.variants import SceneVariant, parse_variant

os.environ.setdefault("MUJOCO_GL", "egl")

MAX_STEP_MM = 10.0
"""Meta-World moves its mocap target by 0.01 m per unit of normalised action: 1.0 == 10 mm."""
FPS = 80
"""Control steps per simulated second: Meta-World advances 12.5 ms per step (5 substeps of 2.5 ms)."""
CLOSED_EFFORT = 0.6
"""Grip effort sent for ``open = 0``. A full 1.0 squeezes thin objects out of the fingers in several
tasks (assembly, basketball); 0.6 keeps every suite task's expert >= 0.9 with a binary gripper."""
FLIPPED_CAMERAS = {"corner", "corner2", "corner3", "corner4"}
"""Meta-World's corner cameras render upside down; their frames are rotated 180 degrees."""
CAMERA_KEYS = {"gripperPOV": "gripper", "behindGripper": "behind"}


@dataclass
class SimEnvConfig:
    task: str = "reach-v3"
    """Meta-World v3 task name (see ``vlac.data.tasks.TASKS``)."""
    image_size: int = 96
    """Square image side in pixels (96 px keeps pucks and goal markers 2-3 px wide; see README)."""
    camera: str = "corner4"
    """Main camera: one of the model's cameras (topview, corner, corner2, corner3, corner4, ...)."""
    variant: str = "default"
    """Scene variant, names joined with '+' (see ``vlac.sim.variants.VARIANTS``)."""
    max_steps: int = 150
    """Episode limit in steps."""
    fast_render: bool = True
    """No shadows and no multisampling: 60-80 rendered steps/s instead of 7-12 (platform notes)."""

    def __post_init__(self) -> None:
        resolve_tasks(self.task)  # raises with the list of valid names
        parse_variant(self.variant)
        if not 32 <= self.image_size <= 480:
            raise ValueError(f"image_size={self.image_size} is outside 32..480 pixels")
        if self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps} must be at least 1")


def action_to_metaworld(action: np.ndarray) -> np.ndarray:
    """(4,) [dx mm, dy mm, dz mm, open 0..1] -> Meta-World's normalised (4,) action in [-1, 1]."""
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (4,):
        raise ValueError(f"action must have shape (4,) [dx_mm, dy_mm, dz_mm, open], got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action contains NaN or inf: {a}")
    xyz = np.clip(a[:3] / MAX_STEP_MM, -1.0, 1.0)
    open_ = np.clip(a[3], 0.0, 1.0)
    # Piecewise linear: open=1 -> -1 (open), open=0.5 -> 0 (no effort), open=0 -> +0.6 (grip).
    effort = (1.0 - 2.0 * open_) * (CLOSED_EFFORT if open_ < 0.5 else 1.0)
    return np.concatenate([xyz, [effort]])


def metaworld_to_action(mw_action: np.ndarray, quantise: bool = True) -> np.ndarray:
    """Meta-World's normalised action -> our units; ``quantise`` rounds to the template's grid
    (integer millimetres, binary gripper), so recorded actions are exactly what text can express."""
    a = np.clip(np.asarray(mw_action, dtype=np.float64), -1.0, 1.0)
    xyz = a[:3] * MAX_STEP_MM
    open_ = 0.5 - a[3] / (2.0 * CLOSED_EFFORT) if a[3] >= 0 else 0.5 - a[3] / 2.0
    if quantise:
        xyz = np.round(xyz)
        open_ = 0.0 if open_ < 0.5 else 1.0
    return np.concatenate([xyz, [np.clip(open_, 0.0, 1.0)]]).astype(np.float32)


class SimRobotEnv:
    """One Meta-World task with fresh random object/goal positions at every seeded reset."""

    def __init__(self, config: SimEnvConfig):
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS  # heavy import, done on first use
        import mujoco

        self.config = config
        self.spec: TaskSpec = TASKS[config.task]
        self.variant: SceneVariant = parse_variant(config.variant)
        env = ALL_V3_ENVIRONMENTS[config.task]()
        # Goal-observable 39-d state (the scripted experts read it) and fresh random positions per
        # reset drawn from the env's own seeded generator, instead of MT1's 50 frozen variants.
        env._partially_observable = False
        del env.sawyer_observation_space
        env._set_task_called = True
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        env.max_path_length = 10**9  # we enforce the episode limit ourselves
        self._env = env
        model = env.model
        cam_names = [model.camera(i).name for i in range(model.ncam)]
        for cam in (config.camera, *self.variant.extra_cameras):
            if cam not in cam_names:
                raise ValueError(f"camera {cam!r} not in task {config.task}; cameras: {cam_names}")
        if config.fast_render:
            model.vis.quality.offsamples = 0
            model.vis.quality.shadowsize = 256
            model.light_castshadow[:] = 0
        self.variant.apply(model, config.camera)
        self._cameras = {"main": config.camera}
        self._cameras.update({CAMERA_KEYS.get(c, c): c for c in self.variant.extra_cameras})
        self._renderer = mujoco.Renderer(model, config.image_size, config.image_size)
        self._mujoco = mujoco
        self._raw_obs: np.ndarray | None = None
        self._success = False
        self._reward = 0.0
        self._reached = False
        self.steps = 0

    # ------------------------------------------------------------------ properties
    @property
    def camera_keys(self) -> list[str]:
        return list(self._cameras)

    @property
    def raw_obs(self) -> np.ndarray:
        """Meta-World's privileged 39-d state vector (object and goal positions): for scripted
        behaviours only, never a model input."""
        assert self._raw_obs is not None, "call reset() first"
        return self._raw_obs

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int) -> dict[str, Any]:
        self._env.seed(int(seed))
        obs, _ = self._env.reset()
        # Meta-World places the new goal marker and fixed objects (site and body positions) after its
        # last forward pass, so without this the first frame shows them where the previous episode
        # had them (15 of the 25 suite tasks: reach's goal, the lever, the drawer, the window...).
        self._mujoco.mj_forward(self._env.model, self._env.data)
        self._raw_obs = obs
        # Meta-World reports success only from step(); evaluating it at reset is wrong for some
        # tasks (window-close reads as solved), and no suite task starts solved.
        self._success = self._reached = False
        self._reward = 0.0
        self.steps = 0
        return self.observe()

    def step(self, action: np.ndarray, render: bool = True) -> dict[str, Any] | None:
        """Apply ``action`` in template units; returns the new observation (None with
        ``render=False``, for look-ahead). Raises once the episode limit is reached."""
        if self._raw_obs is None:
            raise RuntimeError("step() before reset()")
        if self.steps >= self.config.max_steps:
            raise RuntimeError(f"episode limit of {self.config.max_steps} steps reached; call reset()")
        obs, reward, _, _, info = self._env.step(action_to_metaworld(action))
        self._raw_obs = obs
        self._reward = float(reward)
        self._success = bool(info["success"])
        self._reached = self._reached or self._success
        self.steps += 1
        return self.observe() if render else None

    @property
    def success(self) -> bool:
        """The simulator's success flag for the current state (measurement only)."""
        return self._success

    @property
    def reward(self) -> float:
        """Meta-World's own shaped reward of the last step (0 after ``reset``): ground truth for the
        oracle reference arms and measurement, never a model input."""
        return self._reward

    @property
    def reached(self) -> bool:
        """Whether the success flag was on at any step since ``reset`` (how evaluation counts
        success; measurement only)."""
        return self._reached

    def remaining(self) -> float:
        """How far the task is from done, from the simulator's state (measurement only, never a
        model input): the lever's angle from upright (radians) for lever-pull, else Meta-World's
        own ``obj_to_target`` distance (metres; hand to goal for reach, object to goal for push,
        pick-place, sweep-into, ...). True progress of a frame is 1 - remaining / remaining at reset."""
        assert self._raw_obs is not None, "call reset() first"
        env = self._env
        if self.config.task == "lever-pull-v3":  # its obj_to_target is the hand's distance to the lever
            return float(abs(-env.data.joint("LeverAxis").qpos[0] - np.pi / 2))
        _, info = env.evaluate_state(self._raw_obs, np.zeros(4, dtype=np.float32))
        return float(info["obj_to_target"])

    @property
    def done(self) -> bool:
        return self.steps >= self.config.max_steps

    def observe(self) -> dict[str, Any]:
        images = {}
        for key, cam in self._cameras.items():
            self._renderer.update_scene(self._env.data, camera=cam)
            img = self._renderer.render()
            images[key] = np.ascontiguousarray(img[::-1, ::-1]) if cam in FLIPPED_CAMERAS else img
        raw = self._raw_obs
        state = np.array([raw[0] * 1000.0, raw[1] * 1000.0, raw[2] * 1000.0, raw[3]], dtype=np.float32)
        return {"images": images, "state": state, "success": self._success}

    # ------------------------------------------------------------------ exact snapshot / restore
    def snapshot(self) -> dict[str, Any]:
        """The full integration state (incl. the mocap hand target, which ``get_env_state`` and
        pickling lose) plus the env's step counter and cached observations."""
        mj = self._mujoco
        m, d = self._env.model, self._env.data
        state = np.empty(mj.mj_stateSize(m, mj.mjtState.mjSTATE_INTEGRATION))
        mj.mj_getState(m, d, state, mj.mjtState.mjSTATE_INTEGRATION)
        e = self._env
        return {
            "mj_state": state,
            "curr_path_length": e.curr_path_length,
            "prev_obs": e._prev_obs.copy(),
            "last_stable_obs": None if e._last_stable_obs is None else e._last_stable_obs.copy(),
            "did_see_sim_exception": e._did_see_sim_exception,
            "raw_obs": self._raw_obs.copy(),
            "success": self._success,
            "reached": self._reached,
            "steps": self.steps,
            "task": self.config.task,
        }

    def restore(self, snap: dict[str, Any], render: bool = True) -> dict[str, Any] | None:
        if snap.get("task") != self.config.task:
            raise ValueError(f"snapshot of task {snap.get('task')!r} cannot be restored into {self.config.task!r}")
        mj = self._mujoco
        e = self._env
        mj.mj_setState(e.model, e.data, snap["mj_state"], mj.mjtState.mjSTATE_INTEGRATION)
        mj.mj_forward(e.model, e.data)
        e.curr_path_length = snap["curr_path_length"]
        e._prev_obs = snap["prev_obs"].copy()
        e._last_stable_obs = None if snap["last_stable_obs"] is None else snap["last_stable_obs"].copy()
        e._did_see_sim_exception = snap["did_see_sim_exception"]
        self._raw_obs = snap["raw_obs"].copy()
        self._success = snap["success"]
        self._reached = snap.get("reached", self._success)
        self.steps = snap["steps"]
        return self.observe() if render else None

    def start_from(self, snap: dict[str, Any]) -> dict[str, Any]:
        """Begin an episode in a snapshot's state (return-and-explore): as ``restore``, except that
        the episode's "reached the goal at some step" starts from the state's own flag, not from
        the earlier episode's history."""
        obs = self.restore(snap)
        self._reached = self._success
        return obs

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._env.close()

    def __enter__(self) -> "SimRobotEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
