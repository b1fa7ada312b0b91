"""Return-and-explore (paper 3.2.3): a bank of states reached in earlier episodes that a robot is
sent back to, so the policy practises where it tends to fail. Plain Python, unit-tested on its own.

The paper picked return points by an operator's intuition; here a documented rule picks them from
the critic's readings only (never the simulator's flag):

- **Offered**: an episode that the critic did not call done, whose value (Eq. 7 over the critic's
  rewards) peaked at ``min_value`` or more within its first ``within`` share of steps, and never rose
  ``gain`` above that peak in the rest of the episode, at least ``stall_steps`` steps. The point is
  the state right after the peak: the policy got there and then stalled or regressed.
- **Kept while informative**: each episode started from a point counts as a try; the critic's done
  (not the simulator's flag) says whether it ended in success. After ``judge_after`` tries a point
  whose done rate is at most ``hard`` or at least ``easy`` is retired (the paper found too-easy and
  too-hard points were where return-and-explore helped least).
- **Chosen**: at the end of an episode, with probability ``prob``, a robot is sent back to one of
  its own points of its current task (a snapshot lives on the robot that took it), the least tried
  first. The robot applies it to the next episode it begins (in lock-step, the one after the
  episode it is already in). Points older than ``max_age`` of the robot's episodes are dropped
  (a simulated robot keeps its last 20 episodes' states), and all of a robot's points when it
  restarts.
- **Marked by an operator** at the console (``mark``): kept like the rule's points, never retired
  by it (the operator decides), and sent to only when the operator says so.

    >>> bank = ReturnBank(ReturnRules(prob=0.5))
    >>> bank.offer(rec)                     # a finished episode, scored by the critic
    >>> point = bank.choose("sim-0", task, rng)   # None, or where its next episode starts
    >>> bank.outcome(point, done=True)      # how an episode started there ended
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vlac.critic.metrics import value_curve
from vlac.rl.episodes import EpisodeRecord


@dataclass
class ReturnRules:
    prob: float = 0.5
    """Chance that a robot's next episode starts from one of its return points (when it has any)."""
    min_value: float = 0.1
    """The peak value an episode must reach before it stalls (it made some progress)."""
    gain: float = 0.02
    """A rise smaller than this after the peak counts as no progress."""
    stall_steps: int = 15
    """Steps after the peak without that rise."""
    within: float = 0.8
    """The peak must come in this first share of the episode's steps (room left to explore)."""
    max_points: int = 32
    """Points kept per robot (the oldest go first)."""
    max_age: int = 20
    """Points from more than this many of the robot's episodes ago are dropped: the robot no longer
    holds their states (`vlac robot sim --keep-snapshots`, 20)."""
    judge_after: int = 3
    """Tries from a point before its done rate can retire it."""
    hard: float = 0.1
    easy: float = 0.9


@dataclass
class ReturnPoint:
    robot: str
    task: str
    episode: int
    step: int  # the robot's step number in that episode: the state it is sent back to
    value: float  # the critic's running value there
    tries: int = 0
    dones: int = 0
    source: str = "critic"  # "critic": the rule above chose it; "operator": marked at the console
    embodiment: str = ""  # the robot's embodiment when marked ("" for the rule's points)
    frame: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The state's camera frame (what an operator carrying out a real robot's reset looks at)."""
    @property
    def key(self) -> tuple:
        return (self.robot, self.episode, self.step)


def value_peak(rec: EpisodeRecord) -> tuple[list[int], list[float]]:
    """The robot step after each scored transition and the running value (Eq. 7) there."""
    scored = [k for k, s in enumerate(rec.steps[:-1]) if s.reward is not None and np.isfinite(s.reward)]
    values = value_curve([rec.steps[k].reward for k in scored])[1:]
    after = [rec.steps[k + 1] for k in scored]
    return [s.robot_step if s.robot_step is not None else k + 1 for k, s in zip(scored, after)], values.tolist()


class ReturnBank:
    def __init__(self, rules: ReturnRules):
        self.rules = rules
        self.points: dict[str, list[ReturnPoint]] = {}
        self.retired: list[ReturnPoint] = []
        self.offered = 0

    def offer(self, rec: EpisodeRecord) -> ReturnPoint | None:
        """A finished episode: keep the state after its value peak if it stalled there (the rule
        above); returns the new point or None."""
        r = self.rules
        if rec.reason == "done" or rec.done_step is not None or rec.start is not None:
            return None  # the critic called it a success, or it already started from a point
        steps, values = value_peak(rec)
        n = len(values)
        if n <= r.stall_steps:
            return None
        peak = int(np.argmax(values[: max(1, int(r.within * n))]))
        if values[peak] < r.min_value or n - 1 - peak < r.stall_steps:
            return None
        if max(values[peak + 1:]) - values[peak] >= r.gain:
            return None  # it went on rising: not a stall
        frame = next((s.image for s in rec.steps if s.robot_step == steps[peak]), None)
        point = ReturnPoint(rec.robot, rec.task, rec.episode, steps[peak], float(values[peak]), frame=frame)
        mine = self.points.setdefault(rec.robot, [])
        mine.append(point)
        del mine[: max(0, len(mine) - r.max_points)]
        self.offered += 1
        return point

    def mark(self, robot: str, task: str, episode: int, step: int, value: float, embodiment: str = "",
             frame: np.ndarray | None = None) -> ReturnPoint:
        """An operator's return point: the state ``robot`` reached at ``step`` of ``episode``."""
        point = self.find(robot, episode, step)
        if point is None:
            point = ReturnPoint(robot, task, episode, step, value, source="operator", embodiment=embodiment,
                                frame=frame)
            mine = self.points.setdefault(robot, [])
            mine.append(point)
            del mine[: max(0, len(mine) - self.rules.max_points)]
        return point

    def forget(self, robot: str) -> None:
        """A robot that restarted holds none of its earlier states."""
        self.points.pop(robot, None)

    def choose(self, robot: str, task: str, rng: np.random.Generator, episode: int | None = None) -> ReturnPoint | None:
        """Where ``robot``'s next episode should start, or None (a fresh start); ``episode``: its
        newest episode, to drop points it no longer holds."""
        if episode is not None:
            self._prune(robot, episode)
        mine = [p for p in self.points.get(robot, []) if p.task == task and p.source == "critic"]
        if not mine or rng.random() >= self.rules.prob:
            return None
        fewest = min(p.tries for p in mine)
        least = [p for p in mine if p.tries == fewest]
        return least[int(rng.integers(len(least)))]

    def _prune(self, robot: str, episode: int) -> None:
        """Drop the points ``robot`` no longer holds, now that it is at ``episode``."""
        if robot in self.points:
            self.points[robot] = [p for p in self.points[robot] if p.episode > episode - self.rules.max_age]

    def find(self, robot: str, episode: int, step: int) -> ReturnPoint | None:
        return next((p for p in self.points.get(robot, []) if p.key == (robot, episode, step)), None)

    def outcome(self, point: ReturnPoint, done: bool) -> None:
        """An episode started from ``point`` ended, called done by the critic or not."""
        r = self.rules
        point.tries += 1
        point.dones += int(done)
        rate = point.dones / point.tries
        if point.source == "critic" and point.tries >= r.judge_after and (rate <= r.hard or rate >= r.easy):
            self.points[point.robot].remove(point)
            self.retired.append(point)

    def finished(self, rec: EpisodeRecord, rng: np.random.Generator, auto: bool = True) -> ReturnPoint | None:
        """A finished episode is judged (a try from its return point) or, with ``auto``, offered (a
        source of a new one); returns the point its robot should start a later episode from (the
        rule's choice, with ``auto``), or None."""
        if rec.start is not None:
            point = self.find(rec.robot, *rec.start)
            if point is not None:
                self.outcome(point, done=rec.reason == "done")
        elif auto:
            self.offer(rec)
        if not auto:
            self._prune(rec.robot, rec.episode)
            return None
        return self.choose(rec.robot, rec.task, rng, episode=rec.episode)

    def summary(self) -> dict:
        kept = [p for ps in self.points.values() for p in ps]
        tries = sum(p.tries for p in kept + self.retired)
        return {"return_points_offered": self.offered, "return_points_marked": sum(p.source == "operator" for p in kept),
                "return_points_kept": len(kept),
                "return_points_retired": len(self.retired), "return_episodes": tries}
