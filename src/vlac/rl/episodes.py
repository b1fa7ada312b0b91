"""Episodes as the RL loop records them, and how they become PPO batches.

A step is an observation, the action decoded for it (with its token log-probabilities and value
from the inference worker), and the critic's verdict on the transition to the next observation:
``reward`` = progress delta between the two frames (dense) and ``p_done`` of the next frame.
The last observation of an episode has no action; it only closes the final transition.

    >>> rec = EpisodeRecord("sim-1", "push the puck to the goal", 0)
    >>> rec.steps.append(Step(obs_id, t_obs, image, state)) ...
    >>> rewards, dones = rec.rewards("dense"), rec.terminals()
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


REWARDS = ("dense", "sparse", "final", "oracle-dense", "oracle-sparse", "oracle-final")
"""Reward sources of the learner. ``dense``/``sparse``/``final``: the critic's (the product). ``oracle-*``:
the simulator's shaped reward / success flag, reference arms that measure the learner's ceiling
and the baseline to beat; never a default, and only they let simulator fields reach the learner."""
ORACLE_REWARDS = ("oracle-dense", "oracle-sparse", "oracle-final")
FINAL_FRAMES = 10
"""Transitions at the end of an episode whose done probabilities make the ``final`` reward."""
ORACLE_DENSE_MAX = 10.0  # Meta-World v3's largest shaped reward of one step


def trained_return(reward: str) -> tuple[str, str]:
    """The episodes.jsonl field holding the return a learner with this reward mode trains on, and
    its name: the simulator's (scaled) in the oracle-dense arm, its success flag in the oracle-sparse
    arm (1 at the flag, else 0), the critic's end-of-episode verdict in the final arm, else the
    critic's dense sum (what the critic arms' reports show); the oracle-final arm's is the flag read at
    the episode's end (1 if it was on at any step)."""
    return {"oracle-dense": ("oracle_return", "simulator's return"),
            "oracle-sparse": ("success", "simulator success (return)"),
            "oracle-final": ("oracle_final", "simulator's flag at the end (return)"),
            "final": ("final_return", "critic's final verdict")}.get(reward, ("return", "critic return"))


@dataclass
class Step:
    obs_id: int
    t_obs: float
    image: np.ndarray  # (H, W, 3) uint8, the camera the actor sees
    state: np.ndarray  # (S,)
    sample: dict | None = None  # ActionSample.to_dict() once an inference worker answered
    t_action: float | None = None  # when the action was sent back
    reward: float | None = None  # critic progress delta of (this frame -> next frame), -1..1
    p_done: float | None = None  # critic done probability of the next frame
    version: int | None = None  # the policy update whose weights chose the action
    history: list | None = None  # executed actions the actor's prompt showed (serving and PPO alike)
    oracle_reward: float | None = None  # the simulator's shaped reward of this transition: oracle arms only
    oracle_success: bool | None = None  # the simulator's success flag after this transition: oracle arms only
    operator_action: list | None = None  # an operator's action ran from this step instead of the policy's
    cameras: dict | None = None  # every camera's frame as kept (``image`` is one of them); the dataset stores all
    robot_step: int | None = None  # the robot's own step number (what a return point names)
    resent: tuple = ()  # earlier obs_ids of this same state (a lock-step robot's resends): answers to them count
    requested: bool = False  # handed to an inference replica (a resend of it waits for that answer)

    @property
    def action(self) -> list | None:
        """The action that ran from this step: the policy's, an operator's, or None (none ran)."""
        return self.sample["action"] if self.sample is not None else self.operator_action

    @property
    def views(self) -> dict:
        """Every camera's frame kept for this step (``{"main": image}`` for a step rebuilt without them)."""
        return self.cameras or {"main": self.image}


@dataclass
class EpisodeRecord:
    robot: str
    task: str
    episode: int
    steps: list[Step] = field(default_factory=list)
    reason: str = ""  # done (critic), limit (robot's step limit), reset, abort, lost (robot vanished), operator
    success: bool | None = None  # the simulator's flag, measurement only (never used for learning)
    done_step: int | None = None  # transition at which the critic declared done
    value: float = 0.0  # running value: Eq. 7 over the critic's rewards scored so far
    frame_bytes: int = 0  # memory its frames hold while open (the loop caps it)
    start: tuple | None = None  # (episode, step) of the return point it started from; None: a fresh start
    label: bool | None = None  # an operator's verdict when ending it at the console (success / failure)
    scene: str | None = None  # the robot's id of the start it was set up in (one task, one id: alike starts)

    def executed_actions(self, n: int) -> list:
        """The last ``n`` actions the robot executed before the newest observation (the actor's
        action history; actions it never executed are not part of it)."""
        if n <= 0:
            return []
        return [s.action for s in self.steps[:-1] if s.action is not None][-n:]

    def actor_inputs(self) -> list:
        """What the actor saw at each acted step, as the inference worker built it (the PPO
        learner re-scores exactly these prompts)."""
        from vlac.actor.actor import ActorInput

        return [ActorInput(s.image, s.state, self.task, s.history or []) for s in self.acted]

    @property
    def acted(self) -> list[Step]:
        """Steps whose policy action was executed and whose transition was scored (PPO's samples)."""
        return [s for s in self.steps if s.sample is not None and s.reward is not None]

    @property
    def operated(self) -> list[Step]:
        """Steps an operator drove (human-guided exploration): demonstrations for the replay
        buffer, never PPO samples."""
        return [s for s in self.steps if s.operator_action is not None and s.reward is not None]

    @property
    def executed(self) -> list[Step]:
        """Every step whose action ran and whose transition was scored, the policy's and the
        operator's, in order: what the data service persists."""
        return [s for s in self.steps if (s.sample is not None or s.operator_action is not None) and s.reward is not None]

    @property
    def terminal(self) -> bool:
        """Only the critic's done ends an episode for the learner, and only when the policy took the
        transition judged done; a step limit, a reset, an abort, a lost robot or a done the
        operator reached is a truncation (its value is bootstrapped)."""
        ran = self.executed
        return self.reason == "done" and bool(ran) and ran[-1].sample is not None

    def rewards(self, mode: str = "dense", done_bonus: float = 0.0) -> np.ndarray:
        """``dense``: the critic's progress delta per transition (plus ``done_bonus`` at done);
        ``sparse``: 1 at the transition the critic declared done, else 0 (the baseline); ``final``:
        the critic's verdict on how the episode ended, the mean done probability of its last
        ``FINAL_FRAMES`` transitions, at the last step (0 elsewhere; a success detector that judges
        the end of a fixed-horizon episode and need not fire on time). Reference arms: ``oracle-dense``
        (the simulator's shaped reward, scaled), ``oracle-sparse`` (1 at the simulator's flag, which
        ended the episode) and ``oracle-final`` (1 at the last step if the flag was on at any step:
        ``final``'s fixed-horizon verdict made perfect, the episode running on after the flag)."""
        steps = self.acted
        if mode == "dense":
            r = np.array([s.reward for s in steps], dtype=np.float64)
            if self.terminal and len(r):
                r[-1] += done_bonus
        elif mode in ("sparse", "oracle-sparse"):  # 1 at the done: the critic's, or the simulator's flag
            r = np.zeros(len(steps))
            if self.terminal and len(r):
                r[-1] = 1.0
        elif mode == "final":
            r = np.zeros(len(steps))
            if len(r):
                r[-1] = float(np.mean([s.p_done for s in steps[-FINAL_FRAMES:]]))
        elif mode == "oracle-final":
            r = np.zeros(len(steps))
            if len(r):
                r[-1] = float(self.oracle_flag())
        elif mode == "oracle-dense":  # Meta-World's shaped reward is 0..10 a step: scaled to the critic's 0..1
            r = np.array([np.nan if s.oracle_reward is None else s.oracle_reward for s in steps], dtype=np.float64)
            r /= ORACLE_DENSE_MAX
            if np.isnan(r).any():
                raise ValueError(f"episode {self.episode} of robot {self.robot} has steps without the simulator's "
                                 "reward: oracle-dense needs robots that report it (`vlac robot sim`)")
        else:
            raise ValueError(f"reward mode {mode!r} is not one of {', '.join(REWARDS)}")
        return r

    def oracle_flag(self) -> bool:
        """Whether the simulator's success flag was on after any transition of this episode (the
        oracle-final verdict; raises where a robot reported no flag)."""
        flags = [s.oracle_success for s in self.acted]
        if any(f is None for f in flags):
            raise ValueError(f"episode {self.episode} of robot {self.robot} has steps without the simulator's "
                             "success flag: oracle-final needs robots that report it (`vlac robot sim`)")
        return any(s.oracle_success for s in self.steps if s.oracle_success is not None)

    def terminals(self) -> np.ndarray:
        """Per acted step: whether the episode ended there for the learner (only the last, and
        only at a done)."""
        dones = np.zeros(len(self.acted), dtype=bool)
        if self.terminal and len(dones):
            dones[-1] = True
        return dones

    def advantages(self, values: np.ndarray, last_value: float, mode: str, gamma: float, lam: float,
                   done_bonus: float = 0.0, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """GAE advantages and value targets of the acted steps, rewards divided by ``scale``."""
        from vlac.rl.ppo import gae  # here, not at the top: the data service's process holds episodes, not torch

        r = self.rewards(mode, done_bonus) / scale
        return gae(r, values, self.terminals(), last_value=0.0 if self.terminal else last_value, gamma=gamma, lam=lam)

    def summary(self) -> dict:
        """One line of episodes.jsonl: ``return`` is the critic's dense sum (NaN in an oracle arm run
        without a critic), ``final_return`` the critic's verdict on the episode's end (the ``final``
        reward; where the critic scored every step), ``oracle_return`` the simulator's scaled reward
        sum and ``oracle_final`` the flag at the episode's end (oracle arms only)."""
        acted = self.acted
        r = [s.reward for s in acted]
        out = {"robot": self.robot, "task": self.task, "episode": self.episode, "steps": len(acted),
               "reason": self.reason, "success": self.success, "return": float(np.sum(r)) if r else 0.0,
               "final_p_done": acted[-1].p_done if acted else None, "operator_steps": len(self.operated),
               "start": list(self.start) if self.start is not None else None, "label": self.label,
               "scene": self.scene}
        if acted and all(s.p_done is not None for s in acted):
            out["final_return"] = float(self.rewards("final").sum())
        if acted and all(s.oracle_reward is not None for s in acted):
            out["oracle_return"] = float(self.rewards("oracle-dense").sum())
        if acted and all(s.oracle_success is not None for s in acted):
            out["oracle_final"] = float(self.oracle_flag())
        return out
