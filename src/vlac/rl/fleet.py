"""The robots' side of the RL loop as plain bookkeeping: each robot's open episode and done rule,
the observations waiting for an action, the transitions waiting for the critic, the finished
episodes waiting to be saved, and holding robots at an episode's start for the learner.

No Ray and no sockets: the loop feeds it the gateway's events and the workers' answers, and
carries out what it asks for (resets go through ``send_reset``; transitions to score pile up in
``to_score``; finished episodes in ``finishing``), so each rule here is unit-tested on its own.

    >>> fleet = Fleet(FleetRules(read_preprocess(actor_path)), send_reset=gateway.send_reset)
    >>> fleet.episode_start("arm-1", "open the drawer", 0)
    >>> fleet.observation("arm-1", msg, now=time.monotonic())    # queued for an action
    >>> fleet.scored(("arm-1", 0, 0), reward=0.1, p_done=0.2)    # the critic's verdict on 0 -> 1

An operator at the console can pause a robot (its observations wait, unanswered) or drive it
(``take_manual`` / ``drive`` / ``hand_back``): then each of its observations is answered by the
operator's next action instead of the policy's, and the step is stored as an operator's.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from vlac.critic.metrics import DoneRule, value_step
from vlac.model.preprocess import Preprocess
from vlac.rl.episodes import EpisodeRecord, Step
from vlac.rl.messages import ActRequest, ScoreRequest


@dataclass
class FleetRules:
    """What the loop's configuration says about robots' episodes."""

    preprocess: Preprocess = field(default_factory=Preprocess)
    """The models' observation pipeline: which camera they read, and frames kept as they read them
    (a robot's 15 MB frame costs 27 KB a step)."""
    done_threshold: float = 0.9
    done_patience: int = 4
    done_min_value: float = 0.0
    oracle: str = ""
    """"oracle-dense" / "oracle-sparse" / "oracle-final" in a reference arm (the simulator's reward and
    flag are kept; with oracle-sparse its flag ends the episode), "" in the critic's arms."""
    scored: bool = True
    """False: an oracle arm without a critic (no transition is queued for scoring)."""
    max_steps: int = 1000
    """An open episode is ended (and kept) at this many steps ..."""
    max_mb: float = 512.0
    """... or when its frames hold this many MiB, whatever the robot does."""
    history_len: int = 0
    """Executed actions the actor's prompt shows."""
    wait_for_learner: bool = False
    """Hold robots at an episode's start while the learner is due (every episode on-policy)."""
    takeover_after: int = 0
    """Human-guided exploration: ask for an operator once the critic's value has risen less than
    ``takeover_gain`` over this many scored transitions of the policy (0: never)."""
    takeover_gain: float = 0.02
    takeover_steps: int = 20
    """Steps the operator drives per takeover."""
    takeovers_per_episode: int = 1


@dataclass
class RobotState:
    rec: EpisodeRecord | None = None
    done: DoneRule | None = None  # the critic's done rule over the open episode's transitions
    first_seen: float = field(default_factory=time.monotonic)
    wait_s: float = 0.0  # time its observations waited for an action
    values: list = field(default_factory=list)  # the open episode's value after each scored policy transition
    takeovers: int = 0  # operator takeovers asked for in the open episode
    announced: bool = False  # the open episode was opened by the robot's episode_start


@dataclass
class Waiting:
    """A robot's newest observation, waiting for an inference replica."""

    robot: str
    step: Step
    t_recv: float


class Fleet:
    def __init__(self, rules: FleetRules, send_reset: Callable[[str, int, str], None], counters: dict | None = None,
                 send_takeover: Callable[[str, int, int], None] | None = None):
        self.rules = rules
        self.send_reset, self.send_takeover = send_reset, send_takeover
        self.robots: dict[str, RobotState] = {}
        self.waiting: deque[Waiting] = deque()
        self.to_score: list[ScoreRequest] = []  # transitions waiting for the critic
        self.finishing: list[EpisodeRecord] = []  # closed, waiting for their last scores and the data service
        self.counters = counters if counters is not None else {}
        for k in ("unexecuted_actions", "episodes_capped", "late_answers", "takeovers", "operator_steps",
                  "after_end", "held_still", "transitions"):
            self.counters.setdefault(k, 0)
        self.hold_since: float | None = None
        self.holds: list[float] = []  # seconds robots were held for the learner, per hold
        self.paused: set[str] = set()  # robots an operator paused: their observations wait unanswered
        self.manual: dict[str, deque] = {}  # robots an operator drives: the actions queued for them
        self.ended: dict[str, int] = {}  # robot -> the episode the loop ended with a reset (cap, operator)

    # ------------------------------------------------------------------ robot events
    def _open(self, robot: str, task: str, episode: int) -> RobotState:
        r = self.robots.setdefault(robot, RobotState())
        self.close(robot, "abort")  # a robot that restarted without ending its episode: kept as aborted
        r.rec, r.values, r.takeovers, r.announced = EpisodeRecord(robot, task, episode), [], 0, False
        r.done = DoneRule(self.rules.done_threshold, self.rules.done_patience, self.rules.done_min_value)
        return r

    def episode_start(self, robot: str, task: str, episode: int, start: tuple | None = None,
                      scene: str | None = None) -> None:
        """``start``: the (episode, step) return point the robot says it started from; ``scene``: the
        id it gives the start it was set up in."""
        self.ended.pop(robot, None)
        r = self.robots.get(robot)
        if r is None or r.rec is None or r.rec.episode != episode or r.rec.task != task or r.announced:
            r = self._open(robot, task, episode)  # (a restarted robot announcing its episode again: a new one)
        # else its first observations came before its start (a driver that announces late): the same episode
        r.announced = True
        r.rec.start, r.rec.scene = (tuple(start) if start is not None else None), scene

    def observation(self, robot: str, msg: dict, now: float, task: str) -> None:
        """A robot's observation ``msg`` (gateway format: obs_id, t, images, state, episode, and
        optionally executed and sim); ``task``: the robot's task, for an episode it never announced."""
        r = self.robots.setdefault(robot, RobotState())
        if self.ended.get(robot) == msg["episode"]:
            self.counters["after_end"] += 1  # sent before the robot read the reset: not a new episode
            return
        if r.rec is None or r.rec.episode != msg["episode"]:
            r = self._open(robot, task, msg["episode"])
        rec = r.rec
        pre = self.rules.preprocess
        frames = {cam: np.array(pre.frame(image)) for cam, image in msg["images"].items()}
        step = Step(msg["obs_id"], msg["t"], pre.view(frames), np.array(msg["state"], np.float32), cameras=frames,
                    robot_step=msg.get("step"))
        prev = rec.steps[-1] if rec.steps else None
        if prev is not None and prev.action is None and msg.get("step") is not None and msg["step"] == prev.robot_step:
            # the same state sent again (a lock-step robot waiting while paused, or for an answer slower than
            # its resend): one step, and an answer already on its way is the answer to it (not computed again)
            gone = rec.steps.pop()
            rec.frame_bytes -= sum(f.nbytes for f in gone.views.values())
            step.resent, step.requested, step.history = gone.resent + (gone.obs_id,), gone.requested, gone.history
            prev = None  # the transition into this state was handled (scored once) when it first came
        if prev is not None:
            self.counters["transitions"] += 1
            if msg.get("executed") == -1 and msg.get("operator_action") is None and robot not in self.paused:
                self.counters["held_still"] += 1  # no action came within its control period: it held still
        if prev is not None and prev.operator_action is not None and msg.get("operator_action") is None:
            if msg.get("executed", prev.obs_id) == prev.obs_id:  # the console operator's action ran
                self.counters["operator_steps"] += 1
            else:
                prev.operator_action = None  # it reached the robot too late: nothing ran
        if prev is not None and prev.sample is not None and msg.get("executed", prev.obs_id) != prev.obs_id:
            prev.sample = None  # its action reached the robot too late (it held still): never trained on
            self.counters["unexecuted_actions"] += int(msg.get("operator_action") is None)
        if prev is not None and msg.get("operator_action") is not None:
            prev.sample = None  # an operator drove this step: whatever the policy answered did not run
            prev.operator_action = [float(x) for x in msg["operator_action"]]
            if prev.history is None:  # what the actor's prompt would have shown there
                prev.history = rec.executed_actions(self.rules.history_len)
            self.counters["operator_steps"] += 1
        if self.rules.oracle and prev is not None:
            self._oracle_step(robot, rec, prev, msg.get("sim"))
        ran = prev is not None and (prev.sample is not None or prev.operator_action is not None)
        if ran and not self.rules.scored:
            prev.reward = prev.p_done = float("nan")  # an oracle arm without a critic: nothing to score
        elif ran:
            self.to_score.append(ScoreRequest((robot, rec.episode, len(rec.steps) - 1), rec.task, prev.image,
                                              step.image, now))
        rec.steps.append(step)
        rec.frame_bytes += sum(f.nbytes for f in frames.values())
        if len(rec.steps) >= self.rules.max_steps or rec.frame_bytes > self.rules.max_mb * 2**20:
            self.counters["episodes_capped"] += 1
            self.ended[robot] = rec.episode
            self.send_reset(robot, rec.episode, "limit")
            self.close(robot, "limit")
            return
        self._drop_waiting(robot)  # only the newest observation matters
        if rec.done_step is None and msg.get("driving", "policy") == "policy" and self.policy_drives(robot) \
                and not step.requested:
            self.waiting.append(Waiting(robot, step, now))  # not while an operator drives or it is paused

    def _oracle_step(self, robot: str, rec: EpisodeRecord, prev: Step, sim: dict | None) -> None:
        """Oracle arms: the simulator's shaped reward of the transition into this observation;
        with oracle-sparse, its success flag ends the episode there (the sparse baseline with a
        perfect success detector; oracle-final reads the flag at the episode's end instead). A robot that
        reports no simulator leaves them unset (its episodes are not trained on, and counted by the loop)."""
        if sim is None:
            return
        prev.oracle_reward, prev.oracle_success = float(sim["reward"]), bool(sim["success"])
        if self.rules.oracle == "oracle-sparse" and sim["success"] and rec.done_step is None:
            rec.done_step = len(rec.steps) - 1
            self.send_reset(robot, rec.episode, "done")

    def episode_end(self, robot: str, episode: int, reason: str, success: bool | None = None) -> None:
        r = self.robots.get(robot)
        if r is not None and r.rec is not None and r.rec.episode == episode:
            r.rec.success = success
            self.close(robot, reason)
        else:  # ended by the loop before the robot's own word (an operator's end): its flag still counts
            rec = self.find(robot, episode)
            if rec is not None and rec.success is None:
                rec.success = success

    def lost(self, robot: str) -> None:
        self.close(robot, "lost")
        self.robots.pop(robot, None)
        self.paused.discard(robot)
        self.manual.pop(robot, None)

    def close(self, robot: str, reason: str) -> None:
        """End a robot's open episode: ``done`` if the critic (or oracle-sparse's flag) declared it,
        else ``reason``; nothing after the frame judged done is kept."""
        r = self.robots.get(robot)
        if r is None or r.rec is None:
            return
        rec, r.rec = r.rec, None
        rec.reason = "done" if rec.done_step is not None else reason
        if rec.done_step is not None:
            rec.steps = rec.steps[:rec.done_step + 2]
        if rec.label is not None:
            rec.reason = "operator"  # an operator ended it and said how it went
        self._drop_waiting(robot)
        self.finishing.append(rec)

    def close_all(self, reason: str) -> None:
        for robot in list(self.robots):
            self.close(robot, reason)

    # ------------------------------------------------------------------ model results
    def find(self, robot: str, episode: int) -> EpisodeRecord | None:
        """The episode, open or closed but not yet handed on."""
        r = self.robots.get(robot)
        if r is not None and r.rec is not None and r.rec.episode == episode:
            return r.rec
        return next((e for e in self.finishing if e.robot == robot and e.episode == episode), None)

    def scored(self, key: tuple, reward: float, p_done: float) -> None:
        """The critic's verdict on transition ``key`` = (robot, episode, step index); results of
        one episode come in step order. The done rule may end the open episode (a reset is sent)."""
        robot, episode, idx = key
        rec = self.find(robot, episode)
        if rec is None or idx >= len(rec.steps):
            return
        rec.steps[idx].reward, rec.steps[idx].p_done = reward, p_done
        rec.value = value_step(rec.value, reward)
        r = self.robots.get(robot)
        if r is not None and r.rec is rec and rec.done_step is None and not self.rules.oracle:
            if r.done.step(p_done, rec.value):
                rec.done_step = idx
                self.send_reset(robot, episode, "done")
        if r is not None and r.rec is rec and rec.done_step is None and rec.steps[idx].sample is not None:
            r.values.append(rec.value)
            self._maybe_take_over(robot, r)

    def _maybe_take_over(self, robot: str, r: RobotState) -> None:
        """The takeover trigger, from the critic's readings only: the value rose less than
        ``takeover_gain`` over the last ``takeover_after`` scored policy transitions."""
        n = self.rules.takeover_after
        if not n or self.send_takeover is None or r.takeovers >= self.rules.takeovers_per_episode:
            return
        if len(r.values) > n and r.values[-1] - r.values[-1 - n] < self.rules.takeover_gain:
            r.takeovers += 1
            r.values.clear()
            self.counters["takeovers"] += 1
            self.send_takeover(robot, r.rec.episode, self.rules.takeover_steps)

    def answered(self, robot: str, obs_id: int, sample: dict, version: int, now: float, t_recv: float) -> Step | None:
        """An inference replica's action for a robot's observation: kept on its step (returned, to
        be sent to ``step.obs_id``: the same state's newest resend), or None when the robot is gone,
        has moved on to a newer state meanwhile, or the step was answered already."""
        r = self.robots.get(robot)
        if r is None or r.rec is None or not self.policy_drives(robot):
            return None  # gone, or an operator paused it or drives it now
        step = self._newest(robot, obs_id)
        if step is None or step.sample is not None:
            self.counters["late_answers"] += 1
            return None
        step.sample, step.t_action, step.version = sample, time.time(), version
        r.wait_s += now - t_recv
        return step

    def failed(self, robot: str, obs_id: int) -> None:
        """A replica could not answer ``obs_id``: the robot's next resend of that state asks again."""
        step = self._newest(robot, obs_id)
        if step is not None:
            step.requested = False

    def _newest(self, robot: str, obs_id: int) -> Step | None:
        """``robot``'s newest step if ``obs_id`` is its observation or one of its resends (None if the
        robot moved on, or has no open episode)."""
        r = self.robots.get(robot)
        step = r.rec.steps[-1] if r is not None and r.rec is not None and r.rec.steps else None
        return step if step is not None and (step.obs_id == obs_id or obs_id in step.resent) else None

    # ------------------------------------------------------------------ operators (the console)
    def policy_drives(self, robot: str) -> bool:
        return robot not in self.paused and robot not in self.manual

    def pause(self, robot: str) -> None:
        self.paused.add(robot)
        self._drop_waiting(robot)

    def resume(self, robot: str, now: float) -> None:
        self.paused.discard(robot)
        self._serve_latest(robot, now)

    def take_manual(self, robot: str) -> None:
        """An operator drives ``robot`` from its next observation on (a policy action on its way is
        not sent)."""
        self.manual[robot] = deque(maxlen=8)
        self._drop_waiting(robot)

    def drive(self, robot: str, action) -> None:
        self.manual[robot].append([float(x) for x in action])

    def hand_back(self, robot: str, now: float) -> None:
        self.manual.pop(robot, None)
        self._serve_latest(robot, now)

    def end_by_operator(self, robot: str, label: bool | None) -> int | None:
        """End ``robot``'s open episode with the operator's verdict (True: success, False: failure,
        stored with it); the robot is reset. Returns the episode, or None if none is open."""
        r = self.robots.get(robot)
        if r is None or r.rec is None:
            return None
        rec = r.rec
        rec.label = label
        self.ended[robot] = rec.episode
        self.send_reset(robot, rec.episode, "reset")
        self.close(robot, "operator")
        return rec.episode

    def operator_answers(self) -> list[tuple]:
        """(robot, obs_id, action, t_obs) for each driven robot whose newest observation has no
        action yet and whose operator has one queued: the step is the operator's from now on."""
        out = []
        for robot, queue in self.manual.items():
            r = self.robots.get(robot)
            if not queue or r is None or r.rec is None or not r.rec.steps or r.rec.done_step is not None:
                continue
            step = r.rec.steps[-1]
            if step.action is not None:
                continue
            step.operator_action = queue.popleft()
            step.history = r.rec.executed_actions(self.rules.history_len)  # what the actor's prompt would show
            out.append((robot, step.obs_id, step.operator_action, step.t_obs))
        return out

    def _serve_latest(self, robot: str, now: float) -> None:
        """Back to the policy: the robot's newest observation, if unanswered, waits for an action."""
        r = self.robots.get(robot)
        if not self.policy_drives(robot) or r is None or r.rec is None or not r.rec.steps:
            return
        step = r.rec.steps[-1]
        if step.action is None and r.rec.done_step is None and not any(w.robot == robot for w in self.waiting):
            self.waiting.append(Waiting(robot, step, now))

    # ------------------------------------------------------------------ dispatch
    def request(self, w: Waiting) -> ActRequest | None:
        """The inference request for a waiting observation (None if its episode closed); the action
        history its prompt shows is kept on the step, so the learner re-scores the very prompt."""
        r = self.robots.get(w.robot)
        if r is None or r.rec is None:
            return None
        w.step.history = r.rec.executed_actions(self.rules.history_len)
        w.step.requested = True
        return ActRequest(w.robot, w.step.obs_id, w.step.image, w.step.state, r.rec.task, w.step.history, w.t_recv)

    def at_episode_start(self, robot: str) -> bool:
        r = self.robots.get(robot)
        return r is not None and r.rec is not None and all(s.sample is None for s in r.rec.steps)

    def take(self, n: int, held: set) -> list[Waiting]:
        """Up to ``n`` waiting observations to serve, oldest first, none of the ``held`` robots'."""
        out, keep = [], deque()
        for w in self.waiting:
            (out if len(out) < n and w.robot not in held else keep).append(w)
        self.waiting = keep
        return out

    def requeue(self, items: list[Waiting]) -> None:
        """Observations whose replica failed go back to the front."""
        self.waiting.extendleft(reversed(items))

    def held(self, now: float, learner_due: bool) -> set:
        """With ``wait_for_learner``: the robots at an episode's start, held while the learner is
        due; on release, their observations count as received then (the assignment latency leaves
        the hold out) and the hold's length joins ``holds``."""
        if not self.rules.wait_for_learner:
            return set()
        if learner_due:
            self.hold_since = self.hold_since if self.hold_since is not None else now
            return {w.robot for w in self.waiting if self.at_episode_start(w.robot)}
        if self.hold_since is not None:
            self.holds.append(now - self.hold_since)
            self.hold_since = None
            for w in self.waiting:
                if self.at_episode_start(w.robot):
                    w.t_recv = now
        return set()

    def _drop_waiting(self, robot: str) -> None:
        self.waiting = deque(w for w in self.waiting if w.robot != robot)

    def idle_fractions(self, now: float) -> dict:
        """Per robot: the share of its time its observations waited for an action."""
        return {rb: r.wait_s / max(now - r.first_seen, 1e-9) for rb, r in self.robots.items()}
