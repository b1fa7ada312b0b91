"""The robots' side of the RL loop (`vlac.rl.fleet`) as plain bookkeeping: episodes, the done
rule, caps, late and unexecuted actions, holding robots for the learner. No Ray, no sockets:
events are the gateway's message dicts, resets are recorded as the gateway would send them."""

import numpy as np
import pytest

from vlac.rl.fleet import Fleet, FleetRules

TASK = "reach the red goal point with the gripper"


def _fleet(**rules):
    resets = []
    fleet = Fleet(FleetRules(**rules), send_reset=lambda robot, episode, reason: resets.append((robot, episode, reason)))
    return fleet, resets


def _obs(k, episode=0, side=96, executed=None, sim=None):
    msg = {"obs_id": k, "t": float(k), "images": {"main": np.full((side, side, 3), k % 255, np.uint8)},
           "state": [0.0, 600.0, 200.0, 1.0], "episode": episode}
    if executed is not None:
        msg["executed"] = executed
    if sim is not None:
        msg["sim"] = sim
    return msg


def _act(fleet, robot="r0", now=0.0):
    """Serve every waiting observation of ``robot`` with a made-up action, as a replica would."""
    for w in fleet.take(8, held=set()):
        assert fleet.answered(w.robot, w.step.obs_id, {"action": [1.0, 0.0, 0.0, 1.0]}, 0, now, w.t_recv) is not None


def test_the_done_rule_ends_an_episode_with_a_reset_and_cuts_what_follows():
    fleet, resets = _fleet(done_threshold=0.9, done_patience=2)
    fleet.episode_start("r0", TASK, 0)
    for k in range(5):
        fleet.observation("r0", _obs(k), now=k, task=TASK)
        _act(fleet)
    assert [it["key"] for it in fleet.to_score] == [("r0", 0, k) for k in range(4)]  # every acted transition
    for k, p in enumerate([0.95, 0.2, 0.95, 0.97]):  # the 0.2 breaks the first streak
        fleet.scored(("r0", 0, k), reward=0.1, p_done=p)
    assert resets == [("r0", 0, "done")]
    fleet.observation("r0", _obs(5), now=5, task=TASK)  # arrives before the robot obeyed the reset
    assert not fleet.waiting  # a done episode asks for no more actions
    fleet.episode_end("r0", 0, "reset")
    [rec] = fleet.finishing
    assert rec.reason == "done" and rec.done_step == 3 and len(rec.steps) == 5  # frames up to the one judged done
    assert rec.value == pytest.approx(1 - 0.9 ** 4)  # Eq. 7 over the four rewards


def test_oracle_arms_never_use_the_critics_done_and_sparse_ends_at_the_flag():
    fleet, resets = _fleet(oracle="oracle-sparse", scored=False)
    fleet.episode_start("r0", TASK, 0)
    for k, ok in enumerate([False, False, True]):
        fleet.observation("r0", _obs(k, sim={"reward": 1.0 + k, "success": ok}), now=k, task=TASK)
        _act(fleet)
    assert resets == [("r0", 0, "done")] and not fleet.to_score  # no critic in this arm
    rec = fleet.robots["r0"].rec
    assert [s.oracle_reward for s in rec.steps[:2]] == [2.0, 3.0] and rec.done_step == 1
    assert np.isnan(rec.steps[0].reward)


def test_late_and_unexecuted_actions_and_a_restarted_robot():
    fleet, _ = _fleet()
    fleet.episode_start("r0", TASK, 0)
    fleet.observation("r0", _obs(0), now=0, task=TASK)
    [w] = fleet.take(8, held=set())
    fleet.observation("r0", _obs(1), now=1, task=TASK)  # the robot moved on before the answer
    assert fleet.answered("r0", w.step.obs_id, {"action": [0, 0, 0, 1]}, 0, 1.0, 0.0) is None
    assert fleet.counters["late_answers"] == 1
    _act(fleet)
    fleet.observation("r0", _obs(2, executed=-1), now=2, task=TASK)  # it held still: the action came too late
    assert fleet.robots["r0"].rec.steps[1].sample is None and fleet.counters["unexecuted_actions"] == 1
    assert not fleet.to_score  # neither transition had an executed policy action
    fleet.episode_start("r0", TASK, 1)  # restarted without ending episode 0: kept as aborted
    assert fleet.finishing[0].reason == "abort" and len(fleet.finishing[0].steps) == 3
    fleet.lost("r0")
    assert fleet.finishing[1].reason == "lost" and "r0" not in fleet.robots


def test_caps_end_and_keep_an_episode_and_frames_are_kept_at_the_model_size():
    fleet, resets = _fleet(max_steps=3, frame_side=64)
    fleet.episode_start("r0", TASK, 0)
    for k in range(3):
        fleet.observation("r0", _obs(k, side=200), now=k, task=TASK)
    assert resets == [("r0", 0, "limit")] and fleet.counters["episodes_capped"] == 1
    [rec] = fleet.finishing
    assert rec.reason == "limit" and len(rec.steps) == 3 and rec.steps[0].image.shape == (64, 64, 3)


def test_robots_wait_for_the_learner_only_at_an_episode_start():
    fleet, _ = _fleet(wait_for_learner=True)
    for robot in ("r0", "r1"):
        fleet.episode_start(robot, TASK, 0)
        fleet.observation(robot, _obs(0), now=0.0, task=TASK)
    _act(fleet, now=0.5)  # both act once: r1 will be mid-episode, r0 starts a new one
    fleet.observation("r1", _obs(1), now=1.0, task=TASK)
    fleet.episode_start("r0", TASK, 1)
    fleet.observation("r0", _obs(2, episode=1), now=1.0, task=TASK)
    held = fleet.held(now=2.0, learner_due=True)
    assert held == {"r0"} and [w.robot for w in fleet.take(8, held)] == ["r1"]  # mid-episode: never held
    assert fleet.held(now=5.0, learner_due=True) == {"r0"}
    assert fleet.held(now=7.0, learner_due=False) == set() and fleet.holds == [5.0]
    [w] = fleet.take(8, set())
    assert w.robot == "r0" and w.t_recv == 7.0  # counted from the release: the hold is not assignment latency
