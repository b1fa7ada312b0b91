"""The robots' side of the RL loop (`vlac.rl.fleet`) as plain bookkeeping: episodes, the done
rule, caps, late and unexecuted actions, holding robots for the learner. No Ray, no sockets:
events are the gateway's message dicts, resets are recorded as the gateway would send them."""

import numpy as np
import pytest

from vlac.model.preprocess import Preprocess
from vlac.rl.fleet import Fleet, FleetRules

TASK = "reach the red goal point with the gripper"


def _fleet(**rules):
    resets = []
    fleet = Fleet(FleetRules(**rules), send_reset=lambda robot, episode, reason: resets.append((robot, episode, reason)))
    return fleet, resets


def _obs(k, episode=0, side=96, executed=None, sim=None, step=None):
    msg = {"obs_id": k, "t": float(k), "images": {"main": np.full((side, side, 3), k % 255, np.uint8)},
           "state": [0.0, 600.0, 200.0, 1.0], "episode": episode}
    if step is not None:
        msg["step"] = step
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
    assert [it.key for it in fleet.to_score] == [("r0", 0, k) for k in range(4)]  # every acted transition
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


def test_a_resent_state_is_answered_once_by_the_answer_already_on_its_way():
    """A lock-step robot sends its state again when no action came within its resend time (2 s):
    on a busy machine an answer takes longer than that, and throwing it away as late for the resend's
    new obs_id, then computing the resend's, then throwing that away too, starved the robot (187 late
    answers in a 2-episode, 6-step run). The answer to the first send answers the newest resend."""
    fleet, _ = _fleet()
    fleet.episode_start("r0", TASK, 0)
    fleet.observation("r0", _obs(0, step=0), now=0, task=TASK)
    [w] = fleet.take(8, held=set())
    assert fleet.request(w).obs_id == 0
    fleet.observation("r0", _obs(1, step=0), now=2, task=TASK)  # no answer after 2 s: the same state again
    fleet.observation("r0", _obs(2, step=0), now=4, task=TASK)
    assert not fleet.take(8, held=set())  # nothing computed twice
    step = fleet.answered("r0", 0, {"action": [1.0, 0.0, 0.0, 1.0]}, 0, 5.0, 0.0)
    assert step is not None and step.obs_id == 2 and step.resent == (0, 1)  # sent to the robot's newest send
    assert len(fleet.robots["r0"].rec.steps) == 1 and fleet.counters["late_answers"] == 0
    assert fleet.answered("r0", 2, {"action": [0.0, 0.0, 0.0, 1.0]}, 0, 5.0, 0.0) is None  # answered already
    assert fleet.counters["late_answers"] == 1 and step.sample["action"] == [1.0, 0.0, 0.0, 1.0]
    # a replica that fails the request: the robot's next resend of that state is asked again
    fleet.observation("r0", _obs(3, step=1, executed=2), now=6, task=TASK)
    [w] = fleet.take(8, held=set())
    fleet.request(w)
    fleet.failed("r0", 3)
    fleet.observation("r0", _obs(4, step=1, executed=2), now=8, task=TASK)
    [w] = fleet.take(8, held=set())
    assert w.step.obs_id == 4 and w.step.resent == (3,)
    assert [it.key for it in fleet.to_score] == [("r0", 0, 0)]  # the answered transition, scored once


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


def test_steps_a_robot_held_still_for_want_of_an_action_are_counted():
    """A robot with a control period holds still when no action came in time (`executed` = -1): the
    run counts those steps against all its transitions, but not the steps an operator drove or the
    steps of a robot an operator paused (held still on purpose)."""
    fleet, _ = _fleet()
    fleet.episode_start("r0", TASK, 0)
    fleet.observation("r0", _obs(0), now=0, task=TASK)
    _act(fleet)
    fleet.observation("r0", _obs(1, executed=0), now=1, task=TASK)  # its action ran
    fleet.observation("r0", _obs(2, executed=-1), now=2, task=TASK)  # nothing came within the period
    fleet.observation("r0", _obs(3, executed=-1), now=3, task=TASK)
    msg = _obs(4, executed=-1)
    msg["operator_action"] = [1.0, 0.0, 0.0, 1.0]  # an operator drove this step
    fleet.observation("r0", msg, now=4, task=TASK)
    fleet.pause("r0")
    fleet.observation("r0", _obs(5, executed=-1), now=5, task=TASK)  # paused: held still on purpose
    assert fleet.counters["transitions"] == 5 and fleet.counters["held_still"] == 2


def test_caps_end_and_keep_an_episode_and_frames_are_kept_at_the_model_size():
    fleet, resets = _fleet(max_steps=3, preprocess=Preprocess(image_size=64))
    fleet.episode_start("r0", TASK, 0)
    for k in range(3):
        fleet.observation("r0", _obs(k, side=200), now=k, task=TASK)
    assert resets == [("r0", 0, "limit")] and fleet.counters["episodes_capped"] == 1
    [rec] = fleet.finishing
    assert rec.reason == "limit" and len(rec.steps) == 3 and rec.steps[0].image.shape == (64, 64, 3)
    fleet.observation("r0", _obs(3, side=200), now=3, task=TASK)  # sent before the robot read the reset
    assert fleet.robots["r0"].rec is None and fleet.counters["after_end"] == 1  # no second episode 0
    fleet.episode_start("r0", TASK, 1)
    fleet.observation("r0", _obs(4, episode=1, side=200), now=4, task=TASK)
    assert fleet.robots["r0"].rec.episode == 1


def test_the_models_camera_is_read_and_every_camera_is_kept():
    """A real robot's cameras, none called "main": the models read the one their pipeline names;
    every camera is kept (at the models' size) for the dataset."""
    fleet, _ = _fleet(preprocess=Preprocess(image_size=32, camera="front"))
    msg = _obs(0)
    msg["images"] = {"wrist": np.zeros((48, 64, 3), np.uint8), "front": np.full((96, 96, 3), 200, np.uint8),
                     "tiny": np.zeros((20, 24, 3), np.uint8)}
    fleet.observation("r0", msg, now=0.0, task="scoop the rice")
    [step] = fleet.robots["r0"].rec.steps
    assert step.image.shape == (32, 32, 3) and (step.image == 200).all()
    assert sorted(step.cameras) == ["front", "tiny", "wrist"] and step.cameras["wrist"].shape == (32, 32, 3)
    assert step.cameras["tiny"].shape == (20, 24, 3)  # never enlarged: the model reads it as it is
    with pytest.raises(ValueError, match="reads camera 'front'.*'wrist'"):
        Preprocess(camera="front").view({"wrist": step.cameras["wrist"]})


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


def test_an_operator_takes_over_when_the_critics_value_stalls_and_its_steps_are_flagged():
    takeovers = []
    fleet, resets = _fleet(takeover_after=3, takeover_gain=0.05, takeover_steps=2)
    fleet.send_takeover = lambda robot, episode, steps: takeovers.append((robot, episode, steps))
    fleet.episode_start("r0", TASK, 0)
    for k in range(4):  # the policy acts; the critic sees almost no progress
        fleet.observation("r0", _obs(k), now=k, task=TASK)
        _act(fleet)
        if k:
            fleet.scored(("r0", 0, k - 1), reward=0.01, p_done=0.0)
    assert not takeovers  # three scored steps are not yet "over the last 3"
    fleet.observation("r0", _obs(4), now=4, task=TASK)
    fleet.scored(("r0", 0, 3), reward=0.01, p_done=0.0)
    assert takeovers == [("r0", 0, 2)] and fleet.counters["takeovers"] == 1
    # the robot obeys: two observations while the operator drives, each after an operator's action
    _act(fleet)  # an answer to o4 may still come (sent before the takeover arrived) ...
    for k, driving in ((5, "operator"), (6, "operator"), (7, "policy")):
        msg = _obs(k, executed=-1) | {"operator_action": np.array([0.0, 5.0, 0.0, 1.0], np.float32), "driving": driving}
        fleet.observation("r0", msg, now=k, task=TASK)
        assert [w.robot for w in fleet.waiting] == (["r0"] if driving == "policy" else [])  # no action asked for
    steps = fleet.robots["r0"].rec.steps
    assert steps[4].sample is None  # ... but it never ran: the operator's did
    assert [s.operator_action for s in steps[4:7]] == [[0.0, 5.0, 0.0, 1.0]] * 3
    assert fleet.counters["operator_steps"] == 3 and fleet.counters["unexecuted_actions"] == 0
    assert [it.key[2] for it in fleet.to_score][-3:] == [4, 5, 6]  # the critic follows the operator too
    for k in range(4, 7):
        fleet.scored(("r0", 0, k), reward=0.01, p_done=0.0)
    for k in range(8, 14):  # stalled again: one takeover per episode
        _act(fleet)
        fleet.observation("r0", _obs(k), now=k, task=TASK)
        fleet.scored(("r0", 0, k - 1), reward=0.0, p_done=0.0)
    assert len(takeovers) == 1
    fleet.episode_end("r0", 0, "limit")
    rec = fleet.finishing[0]
    assert len(rec.operated) == 3 and all(s.sample is None for s in rec.operated)
    assert all(s.operator_action is None for s in rec.acted)  # PPO's samples are the policy's alone
    assert rec.summary()["operator_steps"] == 3


def test_a_simulated_robot_hands_over_to_its_operator_and_back_over_zeromq():
    """A real `vlac robot sim` process and a real gateway on 127.0.0.1: a takeover makes the task's
    scripted expert drive for the asked steps, each observation after an operator's action says so,
    and then the robot asks the policy again."""
    import subprocess
    import sys
    import time

    from vlac.transport.gateway import Gateway

    gw = Gateway("tcp://127.0.0.1:0", expect_dims=(4, 4))
    robot = subprocess.Popen([sys.executable, "-m", "vlac.scripts.cli", "robot", "sim", "--connect", gw.address,
                              "--task", "reach-v3", "--robot-id", "arm", "--max-steps", "20", "--episodes", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pending = []  # observations polled but not yet read: one poll may return several
    seen = []

    def next_obs(seconds=60.0):
        """The robot's next state; a resend of the last one (a lock-step robot left waiting 2 s on a
        busy machine asks again) is not a new step."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pending.extend(ev.msg for ev in gw.poll(timeout_ms=50) if ev.kind == "obs")
            while pending and seen and pending[0]["step"] == seen[-1]["step"]:
                pending.pop(0)
            if pending:
                seen.append(pending.pop(0))
                return seen[-1]
        raise TimeoutError("no observation")

    try:
        first = next_obs()
        gw.send_takeover("arm", first["episode"], 3)
        driven = [next_obs() for _ in range(3)]
        assert [m.get("driving", "policy") for m in driven] == ["operator", "operator", "policy"]
        assert all(m["operator_action"] is not None and m["executed"] == -1 for m in driven)
        moved = np.linalg.norm(driven[-1]["state"][:3] - first["state"][:3])
        assert moved > 3.0 and np.abs(np.stack([m["operator_action"][:3] for m in driven])).sum() > 0  # mm
        gw.send_action("arm", driven[-1]["obs_id"], np.array([0, 0, 0, 1], np.float32))  # the policy again
        after = next_obs()
        assert "operator_action" not in after and after["executed"] == driven[-1]["obs_id"]
        gw.send_reset("arm", first["episode"], "reset")
        out, _ = robot.communicate(timeout=60)
        assert "'operator_steps': 3" in out and "'takeovers': 1" in out
    finally:
        robot.kill()
        gw.close()


def test_an_operators_step_is_never_the_policys_and_its_done_is_not_the_policys_terminal():
    fleet, resets = _fleet(done_threshold=0.9, done_patience=1, history_len=2)
    fleet.episode_start("r0", TASK, 0)
    fleet.observation("r0", _obs(0), now=0, task=TASK)
    _act(fleet)
    # a teleoperated robot that reports the operator's action but not `executed`
    fleet.observation("r0", _obs(1) | {"operator_action": np.array([0, 3.0, 0, 1], np.float32)}, now=1, task=TASK)
    step = fleet.robots["r0"].rec.steps[0]
    assert step.sample is None and step.operator_action == [0.0, 3.0, 0.0, 1.0] and step.history == []
    fleet.scored(("r0", 0, 0), reward=0.5, p_done=0.95)  # the operator's transition reached done
    assert resets == [("r0", 0, "done")]
    fleet.episode_end("r0", 0, "reset")
    rec = fleet.finishing[0]
    assert rec.reason == "done" and not rec.terminal  # a truncation for PPO: the policy did not finish it
    assert rec.executed_actions(2) == [[0.0, 3.0, 0.0, 1.0]]  # operator actions are part of the history


def test_a_config_with_a_done_patience_below_one_is_refused_before_anything_starts():
    from vlac.rl.config import RLConfig

    with pytest.raises(ValueError, match="done_patience 0 must be >= 1"):
        RLConfig(done_patience=0)


def _scored_episode(episode, rewards, reason="limit", start=None):
    """A finished episode whose transitions the critic scored with ``rewards``."""
    from vlac.rl.episodes import EpisodeRecord, Step

    rec = EpisodeRecord("r0", TASK, episode, reason=reason, start=start)
    for k, r in enumerate(rewards):
        rec.steps.append(Step(k, 0.0, np.zeros((8, 8, 3), np.uint8), np.zeros(4, np.float32), {"action": [0] * 4},
                              reward=r, p_done=0.0, robot_step=k))
    rec.steps.append(Step(len(rewards), 0.0, np.zeros((8, 8, 3), np.uint8), np.zeros(4, np.float32),
                          robot_step=len(rewards)))
    return rec


def test_return_points_come_from_the_critics_stalls_and_retire_when_too_easy_or_too_hard():
    """The documented rule (`vlac.rl.returns`): the state after a value peak that the episode never
    rose past is offered; an episode that kept rising, or the critic called done, is not; a point
    is tried least-tried first and retired once its done rate says it teaches nothing."""
    from vlac.rl.returns import ReturnBank, ReturnRules

    bank = ReturnBank(ReturnRules(prob=1.0, stall_steps=5, judge_after=2))
    stalled = [0.1] * 4 + [-0.01] * 8  # value rises to 0.34 at transition 3, then slips
    point = bank.offer(_scored_episode(0, stalled))
    assert point is not None and (point.episode, point.step) == (0, 4) and point.value == pytest.approx(0.3439)
    assert bank.offer(_scored_episode(1, [0.05] * 12)) is None  # it kept rising: no stall
    assert bank.offer(_scored_episode(2, stalled, reason="done")) is None  # the critic called it a success
    assert bank.offer(_scored_episode(3, [0.0] * 12)) is None  # never made progress (value 0)
    assert bank.offer(_scored_episode(4, [0.1] * 2 + [0.0] * 3)) is None  # too short to tell a stall
    rng = np.random.default_rng(0)
    assert bank.choose("r0", TASK, rng) is point and bank.choose("r0", "another task", rng) is None
    assert bank.choose("r1", TASK, rng) is None  # a snapshot lives on the robot that took it
    # two episodes from the point, both called done by the critic: too easy, retired
    for episode in (5, 6):
        bank.finished(_scored_episode(episode, [0.2] * 3, reason="done", start=(0, 4)), rng)
    assert point.tries == 2 and point not in bank.points["r0"] and bank.summary()["return_points_retired"] == 1
    assert bank.summary()["return_episodes"] == 2
    # points the robot no longer holds go: older than max_age of its episodes, or all after a restart
    old = bank.offer(_scored_episode(7, stalled))
    assert bank.choose("r0", TASK, rng, episode=7 + bank.rules.max_age - 1) is old
    assert bank.choose("r0", TASK, rng, episode=7 + bank.rules.max_age) is None and not bank.points["r0"]
    bank.offer(_scored_episode(30, stalled))
    bank.forget("r0")
    assert bank.choose("r0", TASK, rng) is None
    from vlac.rl.config import RLConfig
    from vlac.rl.learner import LearnerConfig

    with pytest.raises(ValueError, match="return-explore auto .* not --learner.reward oracle-sparse"):
        RLConfig(return_explore="auto", learner=LearnerConfig(reward="oracle-sparse"))


def test_a_simulated_robot_returns_to_an_earlier_state_over_zeromq():
    """A real `vlac robot sim` keeps its episodes' exact states; `return_to` makes its next episode
    start from the state it reached at that step (the same state, the same frame), and it says so."""
    import subprocess
    import sys
    import time

    from vlac.transport.gateway import Gateway

    gw = Gateway("tcp://127.0.0.1:0", expect_dims=(4, 4))
    robot = subprocess.Popen([sys.executable, "-m", "vlac.scripts.cli", "robot", "sim", "--connect", gw.address,
                              "--task", "reach-v3", "--robot-id", "arm", "--max-steps", "8", "--episodes", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, starts = {}, {}
    try:
        end = time.monotonic() + 120
        while robot.poll() is None and time.monotonic() < end:
            for ev in gw.poll(timeout_ms=50):
                if ev.kind == "episode_start":
                    starts[ev.msg["episode"]] = ev.msg.get("returned_to")
                elif ev.kind == "obs":
                    m = ev.msg
                    seen[(m["episode"], m["step"])] = (m["state"], m["images"]["main"])
                    if (m["episode"], m["step"]) == (0, 6):
                        gw.send_return("arm", 0, 3)  # for its next episode
                    gw.send_action("arm", m["obs_id"], np.array([5.0, -4.0, 3.0, 1.0], np.float32))
        out, _ = robot.communicate(timeout=30)
    finally:
        robot.kill()
        gw.close()
    assert starts == {0: None, 1: [0, 3]}, (starts, out[-2000:])
    state0, frame0 = seen[(0, 3)]
    state1, frame1 = seen[(1, 0)]
    assert np.allclose(state0, state1) and np.array_equal(frame0, frame1)
    assert (1, 5) not in seen  # it goes on from step 3 of 8: 5 steps left, 0..4
    assert "'returns': 1" in out


def test_simulated_robots_of_a_task_share_their_starts_with_start_repeats():
    """Two real `vlac robot sim` processes given one --seed and --start-repeats 2 over ZeroMQ: each
    runs episodes 0 and 1 from one start and 2 from the next, both robots the same starts (the same
    first frame), and every episode_start names it (``scene``); without the flag every episode of
    every robot has a start of its own."""
    import subprocess
    import sys
    import time

    from vlac.transport.gateway import Gateway

    def run(extra: list) -> tuple[dict, dict]:
        gw = Gateway("tcp://127.0.0.1:0", expect_dims=(4, 4))
        robots = [subprocess.Popen([sys.executable, "-m", "vlac.scripts.cli", "robot", "sim", "--connect", gw.address,
                                    "--task", "reach-v3", "--robot-id", rid, "--max-steps", "2", "--episodes", "3",
                                    "--seed", "7", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                  for rid in ("a", "b")]
        scenes, first = {}, {}
        try:
            end = time.monotonic() + 120
            while any(r.poll() is None for r in robots) and time.monotonic() < end:
                for ev in gw.poll(timeout_ms=50):
                    if ev.kind == "episode_start":
                        scenes[(ev.robot, ev.msg["episode"])] = ev.msg.get("scene")
                    elif ev.kind == "obs":
                        m = ev.msg
                        if m["step"] == 0:
                            first[(ev.robot, m["episode"])] = m["images"]["main"]
                        gw.send_action(ev.robot, m["obs_id"], np.array([1.0, 0.0, 0.0, 1.0], np.float32))
            outs = [r.communicate(timeout=30)[0] for r in robots]
        finally:
            for r in robots:
                r.kill()
            gw.close()
        # every episode's start arrives, also on a loaded machine (it waits in the robot until the
        # gateway takes it, and a robot reported lost while it reset is taken back)
        assert len(first) == 6 and len(scenes) == 6, (scenes, [o[-1500:] for o in outs])
        assert all("'unsent_starts_ends': 0" in o for o in outs), [o[-1500:] for o in outs]
        return scenes, first

    scenes, first = run(["--start-repeats", "2"])
    assert all(isinstance(v, str) and v for v in scenes.values())
    early = {v for (_, e), v in scenes.items() if e < 2}  # episodes 0 and 1 of both robots: one start
    late = {v for (_, e), v in scenes.items() if e == 2}
    assert len(early) == 1 and len(late) <= 1 and not early & late, scenes
    assert all(np.array_equal(first[("a", 0)], first[k]) for k in [("a", 1), ("b", 0), ("b", 1)])
    assert np.array_equal(first[("a", 2)], first[("b", 2)]) and not np.array_equal(first[("a", 0)], first[("a", 2)])
    scenes, first = run([])
    assert len(set(scenes.values())) == len(scenes)
    assert all(not np.array_equal(first[j], first[k]) for j in first for k in first if j < k)


def test_an_episode_start_after_its_first_observations_names_that_episode():
    """A driver that announces an episode after its first observations: the start id goes to the open
    episode (no split); announcing an episode again (a robot restarted mid-episode) opens a new one."""
    fleet, _ = _fleet()
    fleet.observation("r0", {**_obs(0), "step": 0}, 0.0, TASK)
    fleet.observation("r0", {**_obs(1), "step": 1}, 0.1, TASK)
    fleet.episode_start("r0", TASK, 0, scene="s1")
    rec = fleet.robots["r0"].rec
    assert (len(rec.steps), rec.scene, list(fleet.finishing)) == (2, "s1", [])
    fleet.episode_start("r0", TASK, 0, scene="s2")
    assert [(e.episode, e.reason, e.scene) for e in fleet.finishing] == [(0, "abort", "s1")]
    assert fleet.robots["r0"].rec.scene == "s2" and not fleet.robots["r0"].rec.steps


def test_a_paused_robot_waits_and_a_driven_robot_gets_its_operators_actions():
    """Pause: no observation is queued for the policy, a lock-step robot's resends of the same state
    are one step; resume queues the newest. Driven from the console: the policy's answer on its way
    is not sent, the operator's queued action answers the next observation and counts once the
    robot says it ran; one that reached the robot too late is no operator step."""
    fleet, _ = _fleet()
    fleet.episode_start("r0", TASK, 0)
    fleet.observation("r0", {**_obs(0), "step": 0}, 0.0, TASK)
    fleet.pause("r0")
    assert not fleet.waiting
    for k in (1, 2):  # resent after 2 s each: the same state
        fleet.observation("r0", {**_obs(k), "step": 0}, float(k), TASK)
    assert [s.obs_id for s in fleet.robots["r0"].rec.steps] == [2] and not fleet.waiting
    fleet.resume("r0", 3.0)
    assert [w.step.obs_id for w in fleet.waiting] == [2]
    (w,) = fleet.take(8, held=set())
    fleet.take_manual("r0")
    assert fleet.answered("r0", 2, {"action": [1.0, 0, 0, 1]}, 0, 4.0, w.t_recv) is None  # too late: operator's now
    assert fleet.operator_answers() == []  # nothing queued yet
    fleet.drive("r0", [5.0, 0, 0, 1])
    fleet.drive("r0", [0, 5.0, 0, 1])
    (robot, oid, action, _), = fleet.operator_answers()
    assert (robot, oid, action) == ("r0", 2, [5.0, 0, 0, 1])
    fleet.observation("r0", {**_obs(3, executed=2), "step": 1}, 5.0, TASK)  # it ran
    assert fleet.counters["operator_steps"] == 1 and not fleet.waiting
    (_, oid, action, _), = fleet.operator_answers()
    assert (oid, action) == (3, [0, 5.0, 0, 1])
    fleet.observation("r0", {**_obs(4, executed=-1), "step": 2}, 6.0, TASK)  # it held still instead
    steps = fleet.robots["r0"].rec.steps
    assert [s.operator_action for s in steps[:2]] == [[5.0, 0, 0, 1], None] and fleet.counters["operator_steps"] == 1
    fleet.hand_back("r0", 7.0)
    assert [w.step.obs_id for w in fleet.waiting] == [4]  # the policy's again
    assert fleet.end_by_operator("r0", False) == 0 and fleet.finishing[0].reason == "operator"
    assert fleet.finishing[0].label is False and fleet.end_by_operator("r0", True) is None


def test_operator_return_points_are_kept_out_of_the_rules_choice_and_retirement():
    from vlac.rl.episodes import EpisodeRecord
    from vlac.rl.returns import ReturnBank, ReturnRules

    bank = ReturnBank(ReturnRules(prob=1.0, judge_after=1))
    point = bank.mark("r0", TASK, 3, 12, 0.4, "sim-arm")
    assert bank.mark("r0", TASK, 3, 12, 0.4) is point  # marking the same state again adds nothing
    rng = np.random.default_rng(0)
    assert bank.choose("r0", TASK, rng) is None  # only an operator sends a robot to its own points
    rec = EpisodeRecord("r0", TASK, 4, start=(3, 12))
    assert bank.finished(rec, rng, auto=False) is None
    assert point.tries == 1 and bank.points["r0"] == [point]  # 0 of 1 done: a rule's point would retire
    bank.finished(EpisodeRecord("r0", TASK, 40), rng, auto=False)
    assert bank.points["r0"] == []  # the robot no longer holds that state (max_age 20)
    assert bank.summary()["return_points_marked"] == 0
