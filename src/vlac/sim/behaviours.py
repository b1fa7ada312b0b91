"""Scripted behaviours that produce successful and failed episodes on every suite task.

Each behaviour wraps Meta-World's scripted expert for the task (``metaworld.policies``) and reads
the simulator's privileged state; it is a data generator, never a learner. Every emitted action
is quantised to the text action template (integer millimetres, binary gripper) by error
diffusion, so a dataset's actions are exactly what a text action can express.

    expert          the scripted expert
    noisy           expert + Gaussian noise (``sigma`` in normalised action units)
    random-bursts   expert interrupted by bursts of uniformly random actions
    stall           expert that freezes early and never moves again
    regression      expert until progress, then its own path retraced backwards (objects carried
                    or pushed back, doors and drawers returned), undoing the progress
    other-task      the expert of a different task run in this task's scene
    miss            the expert aiming at an object and goal moved 4-10 cm sideways: the whole
                    routine of a success run beside the object, which mostly stays put (on
                    lever-pull the arm ends low beside the lever, not raised as after a pull)
    stop-short      the expert frozen just before it would succeed (85-99% of its own time to
                    success): the hand at the object, a button half pressed, a lever part raised;
                    the paper's stagnation close to the goal, the failure a policy learns first
                    when its reward cannot tell it from success

    >>> b = make_behaviour("noisy", sigma=0.5)
    >>> b.reset(env, rng); action = b.act(env)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from vlac.sim.env import MAX_STEP_MM, SimRobotEnv, metaworld_to_action
from vlac.data.tasks import TASKS

BEHAVIOURS = ("expert", "noisy", "random-bursts", "stall", "regression", "other-task", "miss", "stop-short")

DEFAULT_MIX = {
    "expert": 0.5, "stall": 0.15, "noisy": 0.1, "random-bursts": 0.1, "regression": 0.1, "other-task": 0.05,
}
"""Default proportions: half expert demonstrations, half deliberately imperfect episodes. The
order matters for small counts: 2 episodes per task give one expert and one stall."""


def _policy(task: str):
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[task]()


def _expert_mw(policy, raw_obs: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # "Constant(s) may be too high": the env clips anyway
        warnings.simplefilter("ignore", UserWarning)
        return np.clip(policy.get_action(raw_obs), -1.0, 1.0)


class Behaviour:
    """Base class: ``reset`` once per episode, then ``act`` every step. ``keeps_going_after_success``
    tells the rollout not to end the episode at the first success."""

    name = "base"
    keeps_going_after_success = False

    def reset(self, env: SimRobotEnv, rng: np.random.Generator) -> None:
        self.policy = _policy(env.config.task)
        self.rng = rng
        self.t = 0
        self._residual = np.zeros(3)

    def act(self, env: SimRobotEnv) -> np.ndarray:
        """The next action, quantised to whole millimetres by error diffusion: the rounding error
        is carried to the next step, so sub-millimetre corrections of the experts' proportional
        controllers still add up (plain rounding leaves the hand stuck up to 1 cm short)."""
        a = self._act(env)
        self.t += 1
        wanted = a[:3] + self._residual
        xyz = np.clip(np.round(wanted), -MAX_STEP_MM, MAX_STEP_MM)
        self._residual = np.clip(wanted - xyz, -1.0, 1.0)
        return np.array([*xyz, 1.0 if a[3] >= 0.5 else 0.0], dtype=np.float32)

    def _act(self, env: SimRobotEnv) -> np.ndarray:
        """Unquantised action in template units."""
        return metaworld_to_action(_expert_mw(self.policy, env.raw_obs), quantise=False)


class Expert(Behaviour):
    name = "expert"


@dataclass
class Noisy(Behaviour):
    sigma: float = 0.5
    """Standard deviation of the Gaussian noise, in normalised action units (1.0 = 10 mm)."""
    name = "noisy"

    def _act(self, env):
        a = _expert_mw(self.policy, env.raw_obs) + self.rng.normal(0.0, self.sigma, size=4)
        return metaworld_to_action(a, quantise=False)


@dataclass
class RandomBursts(Behaviour):
    p_start: float = 0.08
    """Per-step probability that a burst starts."""
    length: tuple[int, int] = (8, 25)
    """Burst length range in steps."""
    name = "random-bursts"

    def reset(self, env, rng):
        super().reset(env, rng)
        self.burst_left = 0

    def _act(self, env):
        if self.burst_left == 0 and self.rng.random() < self.p_start:
            self.burst_left = int(self.rng.integers(self.length[0], self.length[1] + 1))
        if self.burst_left > 0:
            self.burst_left -= 1
            return metaworld_to_action(self.rng.uniform(-1.0, 1.0, size=4), quantise=False)
        return super()._act(env)


def _expert_until(b: Behaviour, env: SimRobotEnv, step: int) -> np.ndarray:
    """The expert's action before ``step``, then no motion for good, the gripper held as it was."""
    if b.t < step:
        a = Behaviour._act(b, env)
        b.grip = float(a[3])
        return a
    return np.array([0.0, 0.0, 0.0, b.grip], dtype=np.float32)


@dataclass
class Stall(Behaviour):
    start: tuple[int, int] = (3, 15)
    """The step range in which the robot freezes (before any suite task's expert succeeds)."""
    name = "stall"

    def reset(self, env, rng):
        super().reset(env, rng)
        self.stall_at = int(rng.integers(self.start[0], self.start[1] + 1))
        self.grip = 1.0

    def _act(self, env):
        return _expert_until(self, env, self.stall_at)


def _steps_to_success(env: SimRobotEnv, act, limit: int) -> int:
    """Steps ``act`` (the expert) needs from the current state to the simulator's success, at most
    ``limit``, walked on a snapshot that is then restored: the episode starts from the very same state."""
    snap = env.snapshot()
    n = 0
    while not env.done and n < limit:
        env.step(act(env), render=False)
        n += 1
        if env.success:
            break
    env.restore(snap, render=False)
    return n


@dataclass
class StopShort(Behaviour):
    fraction: tuple[float, float] = (0.85, 0.99)
    """Fraction of the expert's time to success walked before the robot freezes for good."""
    name = "stop-short"

    def reset(self, env, rng):
        super().reset(env, rng)
        self.stop_at, self.grip = env.config.max_steps + 1, 1.0
        n = _steps_to_success(env, self.act, env.config.max_steps)  # the very actions the episode will take
        super().reset(env, rng)  # the walk's clock and rounding residual
        self.stop_at = max(1, int(n * rng.uniform(*self.fraction)))
        self.grip = 1.0

    def _act(self, env):
        return _expert_until(self, env, self.stop_at)


@dataclass
class Regression(Behaviour):
    progress_fraction: tuple[float, float] = (0.6, 1.0)
    """Fraction of the expert's path to success walked before turning back."""
    name = "regression"
    keeps_going_after_success = True

    def reset(self, env, rng):
        super().reset(env, rng)
        n = _steps_to_success(env, super()._act, env.config.max_steps // 2)
        lo, hi = self.progress_fraction
        self.turn_at = max(2, int(round(n * rng.uniform(lo, hi))))
        self.path: list[np.ndarray] = []

    def _act(self, env):
        if self.t < self.turn_at:
            a = super()._act(env)
            self.path.append(a)
            return a
        k = self.t - self.turn_at
        if k < len(self.path):
            fwd = self.path[-1 - k]
            return np.array([-fwd[0], -fwd[1], -fwd[2], fwd[3]], dtype=np.float32)
        return np.array([0.0, 0.0, 0.0, self.path[0][3]], dtype=np.float32)


class OtherTask(Behaviour):
    """The partner task's expert (``TaskSpec.partner``) run on this scene's observations."""

    name = "other-task"

    def reset(self, env, rng):
        super().reset(env, rng)
        self.policy = _policy(TASKS[env.config.task].partner)


@dataclass
class Miss(Behaviour):
    """The expert fed this episode's state with the first object's position and the goal moved by
    one horizontal offset (drawn once per episode, ``offset`` metres long, any direction): it runs
    its whole routine in the wrong place: motion without progress, a hand hovering off the goal.
    An offset can still catch the object (lever-pull: 12 of 62 succeeded); rollouts label those by
    the simulator's flag as any other."""

    offset: tuple[float, float] = (0.04, 0.10)
    """Range of the offset's length in metres."""
    name = "miss"

    def reset(self, env, rng):
        super().reset(env, rng)
        length, angle = rng.uniform(*self.offset), rng.uniform(0.0, 2.0 * np.pi)
        self.shift = np.array([length * np.cos(angle), length * np.sin(angle), 0.0])

    def _act(self, env):
        obs = np.array(env.raw_obs, dtype=np.float64)
        obs[4:7] += self.shift  # the first object, as every expert reads it
        obs[-3:] += self.shift  # the goal
        return metaworld_to_action(_expert_mw(self.policy, obs), quantise=False)


_CLASSES = {
    "expert": Expert, "noisy": Noisy, "random-bursts": RandomBursts, "stall": Stall,
    "regression": Regression, "other-task": OtherTask, "miss": Miss, "stop-short": StopShort,
}


def make_behaviour(name: str, **kwargs) -> Behaviour:
    if name not in _CLASSES:
        raise ValueError(f"unknown behaviour {name!r}; valid: {', '.join(BEHAVIOURS)}")
    return _CLASSES[name](**kwargs)


def parse_mix(spec: str | list[str] | dict[str, float]) -> dict[str, float]:
    """``["expert:0.6", "stall:0.4"]`` (or ``"expert:0.6,stall:0.4"``, or a dict) -> normalised
    proportions, order kept."""
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        items = []
        parts = spec.split(",") if isinstance(spec, str) else spec
        for part in (p.strip() for p in parts if p.strip()):
            name, _, w = part.partition(":")
            try:
                items.append((name.strip(), float(w) if w else 1.0))
            except ValueError:
                raise ValueError(f"behaviour weight in {part!r} is not a number; write e.g. 'expert:0.5'") from None
    if not items:
        raise ValueError("empty behaviour mix; write e.g. 'expert:0.5,stall:0.5'")
    for name, w in items:
        if name not in _CLASSES:
            raise ValueError(f"unknown behaviour {name!r} in mix; valid: {', '.join(BEHAVIOURS)}")
        if w < 0:
            raise ValueError(f"behaviour {name!r} has a negative weight {w}")
    total = sum(w for _, w in items)
    if total <= 0:
        raise ValueError("behaviour weights sum to zero")
    return {n: w / total for n, w in items}


def schedule(mix: dict[str, float], n: int) -> list[str]:
    """Deterministic assignment of ``n`` episodes to behaviours that tracks the proportions at
    every prefix (episode j goes to the behaviour furthest behind its quota)."""
    counts = {b: 0 for b in mix}
    out = []
    for j in range(n):
        b = max(mix, key=lambda k: mix[k] * (j + 1) - counts[k])  # ties: first in mix order
        counts[b] += 1
        out.append(b)
    return out
