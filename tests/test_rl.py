"""The RL loop: episode bookkeeping, learner resume, worker restarts on real Ray, and `vlac rl`
end to end with simulated robots over real ZeroMQ on 127.0.0.1 (one killed and restarted)."""

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on 127.0.0.1
os.environ.setdefault("RAY_worker_niceness", "0")

from vlac.actor.actor import DEFAULT_CHECKPOINT as ACTOR  # noqa: E402
from vlac.actor.actor import ActionSample, Actor  # noqa: E402
from vlac.rl.episodes import EpisodeRecord, Step  # noqa: E402
from vlac.rl.learner import Learner, LearnerConfig  # noqa: E402
from vlac.rl.messages import ActRequest, ScoreRequest  # noqa: E402
from vlac.rl.workers import InferenceWorker  # noqa: E402


def _episode(worker, n, reason, task="reach the red goal point with the gripper", seed=0):
    rng = np.random.default_rng(seed)
    rec = EpisodeRecord("r", task, seed, reason=reason)
    for k in range(n):
        img = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
        state = np.array([0, 600, 200, 1.0], np.float32)
        [res] = worker.act([ActRequest("r", k, img, state, task)])
        rec.steps.append(Step(k, 0.0, img, state, res.sample, 0.0, float(rng.normal(0.05, 0.1)), 0.1, res.version))
    rec.steps.append(Step(n, 0.0, img, state))  # the last observation: no action
    return rec


def test_reward_fidelity_against_the_simulator_flag():
    from vlac.rl.report import reward_fidelity

    eps = [{"task": "a", "reason": "done", "success": True, "return": 1.0},
           {"task": "a", "reason": "done", "success": False, "return": 0.2},
           {"task": "a", "reason": "limit", "success": True, "return": 0.6},
           {"task": "b", "reason": "limit", "success": False, "return": -0.4},
           {"task": "b", "reason": "done", "success": None, "return": 9.0}]  # a real robot: no flag, left out
    a, b, both = reward_fidelity(eps)
    assert (a["task"], a["episodes"], a["successes"], a["ended_by_done"]) == ("a", 3, 2, 2)
    assert a["done_precision"] == 0.5 and a["done_recall"] == 0.5
    assert a["return_successful"] == pytest.approx(0.8) and a["return_failed"] == pytest.approx(0.2)
    assert b["ended_by_done"] == 0 and np.isnan(b["done_precision"]) and np.isnan(b["return_successful"])
    assert both["episodes"] == 4 and both["done_precision"] == 0.5
    assert both["return_failed"] == pytest.approx(-0.1)


def test_data_service_stores_every_camera_under_the_robots_names(tmp_path):
    """A real robot's episode: two cameras (neither called main), kept by the run's observation
    pipeline at the models' size, state and action columns named as the robot announced them; a
    resumed run rebuilds the camera the models read."""
    from vlac.data.dataset import LeRobotDataset
    from vlac.model.preprocess import Preprocess
    from vlac.rl.storage import DataService

    pre = Preprocess(image_size=96, camera="front")
    rec = EpisodeRecord("arm-1", "Scoop the rice into the rice cooker.", 0, reason="limit")
    rng = np.random.default_rng(0)
    for k in range(4):
        frames = {"wrist": pre.frame(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)),  # a 4:3 camera
                  "front": pre.frame(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))}
        sample = {"action": [1, 2, 3, 1]} if k < 3 else None
        rec.steps.append(Step(k, 0.0, pre.view(frames), np.zeros(4, np.float32), sample, 0.0, 0.1, 0.0, cameras=frames))
    names = (["x", "y", "z", "grip"], ["dx", "dy", "dz", "grip_cmd"])
    data = DataService(str(tmp_path), camera="front")
    assert data.add(rec, *names) == 0
    ds = LeRobotDataset(tmp_path / "episodes")
    ep = ds.episode(0)
    assert sorted(ep.images) == ["front", "wrist"] and ep.images["wrist"].shape == (3, 96, 96, 3)
    assert ds.info["features"]["observation.state"]["names"] == names[0]
    assert ds.info["features"]["action"]["names"] == names[1]
    assert ep.task == rec.task and "sim.success" not in ds.info["features"]  # a real robot has no flag
    # a resumed run gets back what was persisted but not trained on, ready for the learner
    rec.reason = "done"
    for k, step in enumerate(rec.acted):  # as a reference arm records them: the simulator's reward and flag
        step.oracle_reward, step.oracle_success = float(k), k == 1
    assert data.add(rec) == 1  # the dataset's own names, whatever this call says
    assert data.untrained(2) == []
    [back] = DataService(str(tmp_path), camera="front").untrained(1)
    assert (back.robot, back.task, back.reason, back.success, len(back.acted)) == ("arm-1", rec.task, "done", None, 3)
    assert back.rewards("dense").tolist() == pytest.approx(rec.rewards("dense").tolist())
    assert [s.sample for s in back.acted] == [s.sample for s in rec.acted]
    assert back.rewards("oracle-dense").tolist() == pytest.approx([0.0, 0.1, 0.2])
    assert back.rewards("oracle-final").tolist() == [0, 0, 1]  # the flag was on after the second transition
    assert np.abs(back.acted[0].image.astype(int) - rec.steps[0].cameras["front"].astype(int)).mean() < 8  # video


def test_rewards_terminals_and_truncation():
    rec = EpisodeRecord("r", "t", 0, reason="done")
    rec.steps = [Step(k, 0, None, None, {"a": 1}, 0, 0.1 * k, 0.0) for k in range(4)] + [Step(4, 0, None, None)]
    assert len(rec.acted) == 4 and rec.terminal
    assert rec.rewards("dense").tolist() == pytest.approx([0, 0.1, 0.2, 0.3])
    assert rec.rewards("sparse").tolist() == [0, 0, 0, 1]
    adv, _ = rec.advantages(np.zeros(4), last_value=5.0, mode="dense", gamma=1.0, lam=1.0)
    assert adv[-1] == pytest.approx(0.3)  # terminal: nothing bootstrapped
    rec.reason = "limit"
    assert rec.rewards("sparse").sum() == 0 and not rec.terminal
    adv, _ = rec.advantages(np.zeros(4), last_value=5.0, mode="dense", gamma=1.0, lam=1.0)
    assert adv[-1] == pytest.approx(5.3)  # truncated: bootstrapped from the value
    with pytest.raises(ValueError, match="not one of dense, sparse, final, oracle-dense, oracle-sparse"):
        rec.rewards("shaped")


def test_final_reward_is_the_critics_done_over_the_last_frames():
    """``final``: a fixed-horizon episode judged by its end, the mean p(done) of its last 10
    transitions at the last step, whatever ended it."""
    rec = EpisodeRecord("r", "t", 0, reason="limit")
    p_done = [0.9] * 5 + [0.0] * 10 + [0.2] * 5 + [0.6] * 5  # a false fire early counts for nothing
    rec.steps = [Step(k, 0, None, None, {"a": 1}, 0, 0.1, p) for k, p in enumerate(p_done)] + [Step(25, 0, None, None)]
    r = rec.rewards("final")
    assert r[:-1].sum() == 0 and r[-1] == pytest.approx(0.4)
    rec.steps = rec.steps[-4:]  # shorter than the window: all of it
    assert rec.rewards("final").tolist() == pytest.approx([0, 0, 0.6])
    assert rec.summary()["final_return"] == pytest.approx(0.6)  # what episodes.jsonl and the report show


def test_learner_mixes_in_demonstration_replay(tmp_path, expert_dataset):
    """Paper Eq. 6: the NLL of demonstrated action tokens is added to the PPO loss."""
    worker = InferenceWorker(str(ACTOR), seed=0)
    cfg = LearnerConfig(actor=str(ACTOR), out=str(tmp_path), minibatch=4, epochs=1,
                        demo_data=[str(expert_dataset)], demo_batch=4)
    stats = Learner(cfg).update([_episode(worker, 5, "done", seed=3)])
    assert stats["steps"] == 5 and np.isfinite(stats["demo_nll"]) and stats["demo_nll"] > 0


def test_learner_imitates_its_own_episodes_that_ended_at_a_done(tmp_path):
    """Self-imitation: steps of episodes that ended at a done join a replay buffer with an NLL
    loss; truncated episodes do not; the buffer is capped and survives a restart."""
    worker = InferenceWorker(str(ACTOR), seed=0)
    done, cut = _episode(worker, 5, "done", seed=3), _episode(worker, 4, "limit", seed=4)
    cfg = LearnerConfig(actor=str(ACTOR), out=str(tmp_path), minibatch=4, epochs=1, demo_batch=4,
                        self_imitation=0.5, self_imitation_steps=8, target_kl=0.0)
    learner = Learner(cfg)
    stats = learner.update([done, cut])
    assert stats["imitated_episodes"] == 1 and stats["imitation_buffer"] == 5
    assert np.isfinite(stats["self_imitation_nll"]) and stats["self_imitation_nll"] > 0
    kept = [a.tolist() for _, a, _ in learner.imitate.items]
    assert kept == [s.sample["action"] for s in done.acted]  # the executed actions, not the truncated episode's
    # the frozen vision tower's output is kept with each step and stands in for its pixels exactly
    inputs, actions, feats = zip(*learner.imitate.items)
    with torch.no_grad():
        cached, _ = learner.actor.bc_loss(list(inputs), list(actions), image_features=torch.stack(feats))
        fresh, _ = learner.actor.bc_loss(list(inputs), list(actions))
    assert float(cached) == pytest.approx(float(fresh), rel=1e-5)
    again = Learner(cfg)
    assert [a.tolist() for _, a, _ in again.imitate.items] == kept
    again.update([done])
    assert len(again.imitate) == 8  # the newest 8 steps
    off = Learner(LearnerConfig(actor=str(ACTOR), out=str(tmp_path / "off"), minibatch=4, epochs=1))
    assert off.update([done])["imitated_episodes"] == 0 and not off.imitate


def test_operator_steps_are_stored_flagged_replayed_and_never_ppo_samples(tmp_path):
    """Human-guided exploration: steps an operator drove are persisted with the policy's (flagged,
    the operator's action in the dataset), join the learner's replay with an NLL loss, and are not
    PPO samples; a resumed run gets them back as operator steps."""
    from vlac.data.dataset import LeRobotDataset
    from vlac.rl.storage import DataService

    worker = InferenceWorker(str(ACTOR), seed=0)
    rec = _episode(worker, 6, "limit", seed=5)
    for s in rec.steps[2:4]:  # the operator drove steps 2 and 3
        s.sample, s.operator_action = None, [0.0, 4.0, -2.0, 1.0]
    assert len(rec.acted) == 4 and len(rec.operated) == 2 and len(rec.executed) == 6
    data = DataService(str(tmp_path / "run"))
    assert data.add(rec) == 0
    ep = LeRobotDataset(tmp_path / "run" / "episodes").episode(0)
    assert ep.length == 6 and ep.action[2].tolist() == [0.0, 4.0, -2.0, 1.0]
    [back] = data.untrained(0)
    assert [s.operator_action for s in back.operated] == [[0.0, 4.0, -2.0, 1.0]] * 2 and len(back.acted) == 4
    cfg = LearnerConfig(actor=str(ACTOR), out=str(tmp_path / "run"), minibatch=4, epochs=1, demo_batch=4,
                        target_kl=0.0)
    learner = Learner(cfg)
    stats = learner.update([back])
    assert stats["steps"] == 4 and stats["operator_steps_added"] == 2 and stats["operator_buffer"] == 2
    assert np.isfinite(stats["operator_nll"]) and stats["operator_nll"] > 0
    assert len(Learner(cfg).operated) == 2  # kept with the learner's checkpoint
    only = _episode(worker, 3, "limit", seed=6)
    for s in only.steps[:-1]:
        s.sample, s.operator_action = None, [0.0, 1.0, 0.0, 1.0]
    stats = learner.update([only])  # no policy step at all: an update all the same (the loop counts on it)
    assert stats["steps"] == 0 and stats["update"] == 2 and stats["operator_buffer"] == 5
    # replay alone after PPO's epochs, outside its KL stop, at its own learning rate: with PPO's at 0
    # the operator's actions still get likelier, and PPO's rate is back for the next update
    again = Learner(LearnerConfig(actor=str(ACTOR), out=str(tmp_path / "replay"), minibatch=4, epochs=1,
                                  demo_batch=2, lr=0.0, replay_lr=1e-3, replay_steps=12))
    stats = again.update([back])
    assert stats["replay_steps"] == 12 and stats["replay_loss_last"] < stats["replay_loss_first"]
    assert [g["lr"] for g in again.opt.param_groups] == [0.0]
    assert stats["gradient_steps"] == 0  # PPO's epochs are skipped at rate 0: they could move nothing


def test_learner_scales_returns_and_warms_up_the_value_head(tmp_path):
    from vlac.rl.ppo import discounted_returns

    worker = InferenceWorker(str(ACTOR), seed=0)
    episodes = [_episode(worker, 6, "done", seed=1), _episode(worker, 5, "limit", seed=2)]
    for rec in episodes:  # returns far from the value head's 0..1 (as the simulator's shaped reward)
        for s in rec.acted:
            s.reward *= 40.0
    cfg = LearnerConfig(actor=str(ACTOR), out=str(tmp_path), minibatch=4, epochs=1)
    learner = Learner(cfg)
    stats = learner.update(episodes)
    pooled = np.concatenate([discounted_returns(r.rewards(), r.terminals(), cfg.gamma) for r in episodes])
    assert stats["return_scale"] == pytest.approx(pooled.std())
    # the head, fitted to this batch's targets before the first policy step, explains them
    assert stats["value_warmup_ev_before"] < 0.2 < stats["value_warmup_ev_after"]
    again = Learner(cfg)  # the scale's statistics survive a restart
    assert again.return_moments.count == len(pooled) and again.return_moments.std == pytest.approx(pooled.std())
    assert "value_warmup_ev_after" not in again.update(episodes[:1])  # only before the run's first update


def test_learner_stops_an_update_when_the_policy_moved_too_far(tmp_path):
    worker = InferenceWorker(str(ACTOR), seed=0)
    episodes = [_episode(worker, 6, "done", seed=1), _episode(worker, 5, "limit", seed=2)]
    common = dict(actor=str(ACTOR), lr=5e-3, minibatch=4, epochs=3)
    free = Learner(LearnerConfig(out=str(tmp_path / "free"), target_kl=0.0, **common)).update(episodes)
    assert free["gradient_steps"] == 9 and free["kl_stop"] == 0  # 3 epochs x 3 minibatches of 11 steps
    held = Learner(LearnerConfig(out=str(tmp_path / "held"), target_kl=1e-4, **common)).update(episodes)
    assert held["kl_stop"] == 1 and 1 <= held["gradient_steps"] < 9


def test_learner_can_keep_the_value_loss_out_of_the_language_model(tmp_path):
    """--learner.no-value-trunk: the value loss trains the head alone, so it cannot move the policy's
    weights; by default (the paper's shared trunk) its gradient reaches the language model."""
    worker = InferenceWorker(str(ACTOR), seed=0)
    rec = _episode(worker, 4, "limit", seed=3)
    samples = [ActionSample.from_dict(s.sample) for s in rec.acted]
    for trunk in (True, False):
        learner = Learner(LearnerConfig(actor=str(ACTOR), out=str(tmp_path / str(trunk)), value_trunk=trunk))
        learner.actor.train(True)
        learner.opt.zero_grad(set_to_none=True)
        out = learner.actor.evaluate(rec.actor_inputs(), samples)
        (learner._trained_value(out) ** 2).sum().backward()
        lm = [p.grad for name, p in learner.actor.vlm.model.named_parameters() if "language_model" in name]
        assert lm
        reached = sum(float(g.abs().sum()) for g in lm if g is not None)
        assert (reached > 0) is trunk
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.actor.value_head.parameters())


def test_outcome_advantages_raise_the_successful_episode_and_lower_the_failed_one(tmp_path):
    """--learner.advantage outcome: every step of the episode that reached its done gets +1 against
    its failed twin of the same task, so one update makes its actions likelier and the other's rarer;
    the value loss, which these advantages never read, then stays out of the language model."""
    worker = InferenceWorker(str(ACTOR), seed=0)
    episodes = [_episode(worker, 5, "done", seed=1), _episode(worker, 5, "limit", seed=2)]
    learner = Learner(LearnerConfig(actor=str(ACTOR), out=str(tmp_path), advantage="outcome", reward="sparse",
                                    lr=3e-5, minibatch=10, epochs=3, target_kl=0.0, value_coef=0.0))

    def mean_log_prob(rec):
        samples = [ActionSample.from_dict(s.sample) for s in rec.acted]
        with torch.no_grad():
            return float(learner.actor.evaluate(rec.actor_inputs(), samples)["log_prob"].mean())

    learner.actor.train(False)
    before = [mean_log_prob(rec) for rec in episodes]
    stats = learner.update(episodes)
    learner.actor.train(False)
    after = [mean_log_prob(rec) for rec in episodes]
    assert stats["episodes_with_signal"] == 2 and stats["gradient_steps"] == 3
    assert after[0] > before[0] and after[1] < before[1]
    out = learner.actor.evaluate(episodes[0].actor_inputs(), [ActionSample.from_dict(s.sample) for s in episodes[0].acted])
    learner.opt.zero_grad(set_to_none=True)
    learner._trained_value(out).sum().backward()
    assert all(p.grad is not None for p in learner.actor.value_head.parameters())
    assert all(p.grad is None for name, p in learner.actor.vlm.model.named_parameters() if "language_model" in name)
    with pytest.raises(ValueError, match="learner.advantage 'td' must be one of gae, outcome"):
        LearnerConfig(advantage="td")


def test_gae_advantages_only_centred_keep_the_reward_units(tmp_path, monkeypatch):
    """--learner.no-gae-by-std: an update whose episodes all failed under a sparse reward (its GAE
    advantages only the value head's errors) reaches PPO's loss at the errors' own size, centred; by
    default they are divided up to unit spread, as large as an update that held a success. The real
    loss runs; the spy only records the advantages it was given."""
    import vlac.rl.ppo as ppo

    worker = InferenceWorker(str(ACTOR), seed=0)
    mixed = [_episode(worker, 5, "done", seed=1), _episode(worker, 5, "limit", seed=2)]
    failed = [_episode(worker, 5, "limit", seed=3), _episode(worker, 5, "limit", seed=4)]
    given = []
    real = ppo.ppo_loss
    monkeypatch.setattr(ppo, "ppo_loss", lambda new, old, adv, *a, **k: (given.append(adv.clone()), real(new, old, adv, *a, **k))[1])
    for by_std in (True, False):
        learner = Learner(LearnerConfig(actor=str(ACTOR), out=str(tmp_path / str(by_std)), reward="sparse",
                                        minibatch=10, epochs=1, target_kl=0.0, value_warmup=False, gae_by_std=by_std))
        first = learner.update(mixed)
        given.clear()
        stats = learner.update(failed)
        [adv] = given
        assert 0 < stats["advantage_std"] < 0.3 * first["advantage_std"]  # errors, beside a success's signal
        assert float(adv.mean()) == pytest.approx(0.0, abs=1e-6)
        spread = float(adv.std(unbiased=False))
        assert spread == (pytest.approx(1.0, abs=1e-4) if by_std else pytest.approx(stats["advantage_std"], rel=1e-4))
    with pytest.raises(ValueError, match="learner.gae_by_std off changes how GAE advantages are scaled"):
        LearnerConfig(advantage="outcome", gae_by_std=False)


def test_an_early_success_weighs_as_much_as_a_failure_that_ran_to_the_limit(tmp_path):
    """Outcome advantages with episodes of different lengths (a success ended at step 3 by its done,
    a failure that ran 9): at the first gradient step (ratio 1) the policy loss is minus the mean
    step advantage, 0 when each episode weighs the same, positive (a push down on every sampled
    action) when each step does (`--learner.no-outcome-equal-episodes`)."""
    worker = InferenceWorker(str(ACTOR), seed=0)
    episodes = [_episode(worker, 3, "done", seed=1), _episode(worker, 9, "limit", seed=2)]
    losses = {}
    for equal in (True, False):
        learner = Learner(LearnerConfig(actor=str(ACTOR), out=str(tmp_path / str(equal)), advantage="outcome",
                                        reward="sparse", lr=1e-5, minibatch=12, epochs=1, target_kl=0.0,
                                        outcome_equal_episodes=equal))
        stats = learner.update(episodes)
        assert stats["gradient_steps"] == 1 and stats["episodes_with_signal"] == 2
        losses[equal] = stats["policy_loss"]
    assert losses[True] == pytest.approx(0.0, abs=1e-6)
    assert losses[False] == pytest.approx(-(3 * 1.0 + 9 * -1.0) / 12, abs=1e-5)  # 0.5


def test_outcome_groups_by_scene_compare_only_episodes_that_began_alike(tmp_path):
    """--learner.outcome-groups scene: an episode's return is compared with those of its task that
    began from the same start (the robot's ``scene``), not with every episode of the task. Two starts:
    on one a done episode and a failure (signal for both), on the other two failures (nothing to
    tell apart: 0); grouped by task the one success lifts all four. An episode without a scene, or
    begun at a return point, is a group of its own."""
    from vlac.rl.config import RLConfig
    from vlac.rl.learner import outcome_group

    worker = InferenceWorker(str(ACTOR), seed=0)
    episodes = [_episode(worker, 3, "done", seed=1), _episode(worker, 3, "limit", seed=2),
                _episode(worker, 3, "limit", seed=3), _episode(worker, 3, "limit", seed=4)]
    for rec, scene in zip(episodes, ["11", "11", "12", "12"]):
        rec.scene = scene
    got = {}
    for by in ("task", "scene"):
        learner = Learner(LearnerConfig(actor=str(ACTOR), out=str(tmp_path / by), advantage="outcome",
                                        reward="sparse", lr=1e-5, minibatch=12, epochs=1, target_kl=0.0,
                                        outcome_groups=by))
        stats = learner.update(episodes)
        got[by] = (stats["episodes_with_signal"], stats["outcome_groups"])
    assert got == {"task": (4, 1), "scene": (2, 2)}
    task = episodes[0].task
    assert outcome_group(episodes[0], 0, "scene") == outcome_group(episodes[1], 1, "scene") == (task, "scene", "11")
    assert outcome_group(episodes[2], 2, "task") == (task,)
    episodes[3].start = (2, 5)  # began at a return point: another episode's state, not the scene's start
    episodes[2].scene = None
    assert outcome_group(episodes[3], 3, "scene") == (task, "own", 3)
    assert outcome_group(episodes[2], 2, "scene") == (task, "own", 2)
    with pytest.raises(ValueError, match="learner.outcome_groups 'robot' must be task or scene"):
        LearnerConfig(advantage="outcome", outcome_groups="robot")
    with pytest.raises(ValueError, match="give --learner.advantage outcome too"):
        LearnerConfig(outcome_groups="scene")
    with pytest.raises(ValueError, match="give --start-repeats 2 or more"):
        RLConfig(learner=LearnerConfig(advantage="outcome", outcome_groups="scene"))
    grouped = LearnerConfig(advantage="outcome", outcome_groups="scene")
    assert RLConfig(start_repeats=2, learner=grouped).start_repeats == 2


def test_reference_kl_holds_the_policy_near_the_actor_it_started_from(tmp_path):
    """--learner.ref-kl: the same update with the penalty moves the policy less far from the start
    actor (KL measured with an independent reload of it) than without, and reports the figure;
    the k3 estimate is zero where the policies agree and positive where they do not."""
    from vlac.rl.learner import reference_kl

    same = [torch.tensor([-1.0, -2.0]), torch.tensor([-0.5])]
    assert float(reference_kl(same, same)) == 0.0
    assert float(reference_kl([torch.tensor([-0.1, -3.0]), torch.tensor([-0.5])], same)) > 0.0
    worker = InferenceWorker(str(ACTOR), seed=0)
    episodes = [_episode(worker, 5, "done", seed=1), _episode(worker, 5, "limit", seed=2)]
    start = Actor.load(ACTOR)
    start.train(False)

    def kl_from_start(actor) -> float:
        total = []
        for rec in episodes:
            samples = [ActionSample.from_dict(s.sample) for s in rec.acted]
            with torch.no_grad():
                new = actor.evaluate(rec.actor_inputs(), samples)["token_log_probs"]
                ref = start.evaluate(rec.actor_inputs(), samples)["token_log_probs"]
            total.append(float(reference_kl(new, ref)))
        return float(np.mean(total))

    moved = {}
    for beta in (0.0, 2.0):
        learner = Learner(LearnerConfig(actor=str(ACTOR), out=str(tmp_path / f"beta{beta}"), advantage="outcome",
                                        reward="sparse", lr=1e-4, minibatch=10, epochs=6, target_kl=0.0, ref_kl=beta))
        assert (learner.reference is not None) == (beta > 0)
        stats = learner.update(episodes)
        assert stats["gradient_steps"] == 6 and ("ref_kl" in stats) == (beta > 0)
        learner.actor.train(False)
        moved[beta] = kl_from_start(learner.actor)
    assert 0.0 < moved[2.0] < 0.8 * moved[0.0], moved


def test_learner_updates_and_resumes_at_the_same_step(tmp_path):
    worker = InferenceWorker(str(ACTOR), seed=0)
    episodes = [_episode(worker, 6, "done", seed=1), _episode(worker, 5, "limit", seed=2)]
    cfg = LearnerConfig(actor=str(ACTOR), out=str(tmp_path), lr=1e-4, minibatch=4, epochs=2)
    learner = Learner(cfg)
    before = {k: v.clone() for k, v in learner.weights()[0].items()}
    stats = learner.update(episodes)
    assert stats["steps"] == 11 and stats["update"] == 1
    assert stats["inference_ratio_drift"] < 1e-3  # same weights: recomputed log-probs match the worker's
    assert stats["policy_lag"] == 0  # acted with the weights being trained
    for k in ("clip_fraction", "approx_kl", "entropy", "explained_variance", "policy_loss", "value_loss"):
        assert np.isfinite(stats[k]), k
    after, version = learner.weights()
    assert version == 1 and any(not np.array_equal(before[k], after[k]) for k in before)
    again = Learner(cfg)  # a restarted learner process
    assert again.resumed and again.step == 1 and again.episodes_seen == 2
    w2, _ = again.weights()
    assert all(np.allclose(after[k].float(), w2[k].float(), atol=1e-3) for k in after)  # saved in fp32? within fp16
    worker.set_weights(*again.weights())
    assert worker.version == 1
    # the same episodes once more: acted by update 0, trained from update 1's weights
    assert again.update(episodes[1:])["policy_lag"] == 1


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             configure_logging=False, log_to_driver=False)
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes())
    yield ray
    ray.shutdown()


def test_a_stalled_data_service_is_restarted_and_the_episode_stored(ray_local, tmp_path):
    """A data service stuck inside an episode's video encoding (here its output is a FIFO no one
    reads, so opening it blocks as a wedged encoder did) no longer holds the run: after the link's
    timeout the service is killed and started again on the same folder, the half-written episode's
    leftovers are dropped, and the episode is stored with the number it was given."""
    from vlac.data.dataset import LeRobotDataset
    from vlac.rl.storage import DataLink

    worker = InferenceWorker(str(ACTOR), seed=0)
    link = DataLink(ray_local, str(tmp_path), timeout_s=15)  # a restart must fit too, on a slow busy machine
    assert link.add(_episode(worker, 3, "limit", seed=1)) == 0 and link.restarts == 0
    [video] = (tmp_path / "episodes" / "videos").rglob("file-000.mp4")
    fifo = video.with_name("file-001.mp4.tmp")  # where episode 1's video is written before its rename
    os.mkfifo(fifo)
    assert link.add(_episode(worker, 4, "limit", seed=2)) == 1
    assert link.restarts == 1 and not fifo.exists()
    ds = LeRobotDataset(tmp_path / "episodes")
    assert ds.num_episodes == 2 and ds.episode(1).length == 4
    assert link.add(_episode(worker, 2, "limit", seed=3)) == 2 and link.restarts == 1


def test_crashed_inference_worker_is_restarted(ray_local):
    ray = ray_local
    w = ray.remote(num_cpus=0.1, max_restarts=-1)(InferenceWorker).remote(str(ACTOR))
    pid = ray.get(w.pid.remote())
    os.kill(pid, signal.SIGKILL)
    req = [ActRequest("r", 0, np.zeros((96, 96, 3), np.uint8), np.array([0, 600, 200, 1.0]), "push the puck to the goal")]
    deadline = time.monotonic() + 60
    while True:
        try:
            out = ray.get(w.act.remote(req), timeout=30)
            break
        except ray.exceptions.RayActorError:  # the call that met the dead process; the loop re-queues it
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert out[0].obs_id == 0 and ray.get(w.pid.remote()) != pid


def _pump(loop, robot, until, seconds=10.0):
    """Pass messages between a robot client and the loop's gateway and events until ``until()``."""
    end = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < end, "timed out"
        robot.poll(10)
        for ev in loop.gateway.poll(timeout_ms=10):
            loop._on_event(ev, time.monotonic())


def _wait_for(path, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.2)
    raise TimeoutError(f"{path} did not appear within {seconds} s")


def _descendants(root, pattern):
    """PIDs of processes under ``root`` whose command line contains ``pattern``."""
    found = []
    for pid in map(int, subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()):
        p = pid
        while p > 1:
            try:
                p = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                break
            if p == root:
                found.append(pid)
                break
    return found


def _robot(address, robot_id, task="reach-v3", steps=8):
    return subprocess.Popen([sys.executable, "-m", "vlac.scripts.cli", "robot", "sim", "--connect", address,
                             "--task", task, "--robot-id", robot_id, "--max-steps", str(steps)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow(170)
def test_rl_command_end_to_end_with_a_robot_killed_and_restarted(tmp_path):
    """`vlac rl` with one built-in simulated robot plus one started separately, killed mid-episode
    and started again: training goes on, the partial episode is kept (as a truncation); the
    loop's own robot, killed, is started again by the loop; the learner, killed after its first
    update, is restarted by Ray and goes on from its checkpoint at the next update number."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vlac.scripts.cli", "rl", "--out", str(out), "--tasks", "reach-v3,push-v3",
           "--robots", "1", "--episodes", "8", "--episodes-per-update", "2", "--max-steps", "12",
           "--eval-episodes", "1", "--eval-every", "100", "--lost-after", "3", "--learner.minibatch", "8",
           "--eval-temperature", "1",
           # at most 2 episodes an update, so a loaded machine (scoring behind, episodes finishing in a
           # burst) cannot put every episode in the first update, before the learner is killed
           "--max-episodes-per-update", "2"]
    loop = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TQDM_DISABLE": "1"})
    try:
        address = _wait_for(out / "gateway.txt", 120)
        extra = _robot(address, "extra", "push-v3", steps=40)
        rl_steps = out / "rl_steps"
        end = time.monotonic() + 120
        while time.monotonic() < end and not (out / "episodes.jsonl").exists():
            time.sleep(0.5)
        time.sleep(2.0)
        extra.kill()  # mid-episode (40-step episodes, killed while one is running)
        extra.wait()
        # the loop's own simulated robot, stopped from outside (SIGTERM: it ends cleanly, code 0; it
        # used to stay gone and a run with no other robot waited for ever): the loop starts it again
        own = subprocess.run(["pgrep", "-f", f"connect {address} .*--robot-id sim-0"], capture_output=True, text=True)
        os.kill(int(own.stdout.split()[0]), signal.SIGTERM)
        again = _robot(address, "extra", "push-v3", steps=6)
        first_line = again.stdout.readline() + again.stdout.readline()  # waiting..., then connected (or exits)
        _hostile_robots(address)  # rejected at the gateway, counted; the run goes on
        _wait_for(out / "learner.jsonl", 300)
        learner = _descendants(loop.pid, "ray::Learner")  # this run's learner, not another run's
        assert len(learner) == 1, learner
        os.kill(learner[0], signal.SIGKILL)
        loop_out, _ = loop.communicate(timeout=600)
        again.terminate()
        again_out = first_line + again.communicate(timeout=60)[0]
    finally:
        loop.kill()
    assert loop.returncode == 0, loop_out[-3000:]
    rows = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) >= 5
    lost = [r for r in rows if r["robot"] == "extra" and r["reason"] in ("lost", "abort")]
    assert lost, rows  # the killed robot's partial episode was kept deliberately
    assert "extra: connected to" in again_out  # the restarted robot registered again
    from vlac.data.dataset import LeRobotDataset

    ds = LeRobotDataset(out / "episodes")
    assert ds.num_episodes == len(rows) == len(list(rl_steps.glob("episode_*.json")))
    updates = [json.loads(x) for x in (out / "learner.jsonl").read_text().splitlines()]
    assert updates and updates[0]["steps"] > 0
    assert [u["update"] for u in updates] == list(range(1, len(updates) + 1))  # resumed at the same step
    assert len(updates) >= 2
    assert all(u["policy_lag"] >= 0 for u in updates)  # the robots' policy version reached the learner
    # every finished episode was trained on, including those that piled up during an update
    assert sum(u["steps"] for u in updates) == sum(r["steps"] for r in rows)
    stats = json.loads((out / "loop_stats.json").read_text())
    assert stats["obs_to_action_median"] > 0 and stats["assign_median"] < 1.0
    assert stats["capture_to_action_median"] >= stats["obs_to_action_median"] * 0.5
    assert stats["reward_latency_median"] >= stats["critic_seconds_per_pair"] > 0
    per_ep = stats["seconds_per_episode"]  # each stage's busy time per episode, set against the wall clock
    assert per_ep["actor"] > 0 and per_ep["critic"] > 0 and per_ep["learner"] > 0 and per_ep["wall"] > 0
    assert "seconds per episode: actor (busy)" in (out / "report.md").read_text()
    assert stats["robot_restarts"] == 1 and "sim-0 was stopped from outside the run; starting it again" in loop_out
    assert stats["gateway_errors"]["bad-text"] >= 1 and stats["gateway_errors"]["bad-image"] >= 1
    assert not any(r["robot"] in ("no-task", "tiny-frames") for r in rows)
    assert (out / "report.md").is_file() and (out / "curves.png").is_file()
    assert (out / "learner" / "trainer.pt").is_file()
    evals = [json.loads(x) for x in (out / "eval.jsonl").read_text().splitlines()]
    assert evals and all(e["temperature"] == 1.0 for e in evals)  # the policy the robots run, sampled
    assert "sampled at temperature 1" in (out / "report.md").read_text()
    # every evaluation kept its actor to roll back to; the last one is the learner's final model
    from safetensors.numpy import load_file

    assert [e["model"] for e in evals] == [str(out / "evaluated" / f"episodes-{e['episodes']:04d}") for e in evals]
    kept = [load_file(Path(e["model"]) / "model.safetensors") for e in (evals[0], evals[-1])]
    final = load_file(out / "learner" / "model" / "model.safetensors")
    assert kept[1].keys() == final.keys() and all(np.array_equal(kept[1][k], final[k]) for k in final)
    assert evals[0]["episodes"] == 0 and not all(np.array_equal(kept[0][k], final[k]) for k in final)
    assert "Token authentication is enabled" not in loop_out  # Ray's notice is not the user's business


def _hostile_robots(address):
    """Well-formed messages that once ended a whole run: a robot with an empty task, and a
    registered robot sending a 1x1 frame."""
    from vlac.transport.client import RobotClient

    no_task = RobotClient(address, "no-task", "sim-arm", ["main"], "", 4, 4)
    tiny = RobotClient(address, "tiny-frames", "sim-arm", ["main"], "reach the goal", 4, 4)
    try:
        assert tiny.wait_welcome(30)
        tiny.start_episode(0)
        tiny.send_obs({"main": np.zeros((1, 1, 3), np.uint8)}, np.zeros(4), episode=0, step=0)
        end = time.monotonic() + 30
        while time.monotonic() < end and not (tiny.errors and no_task.errors):
            tiny.poll(50)
            no_task.poll(50)
        assert any(code == "bad-image" for _, code, _ in tiny.errors), list(tiny.errors)
        assert any(code == "bad-text" for _, code, _ in no_task.errors), list(no_task.errors)
    finally:
        no_task.close()
        tiny.close()


def test_rl_config_files_with_nested_learner_settings(capsys, tmp_path):
    import dataclasses

    from vlac.rl.config import RLConfig
    from vlac.utils.cli import parse_config

    cfg = parse_config(RLConfig, ["--config", "configs/rl/reach-push-sparse.yaml", "--episodes", "7"], prog="vlac rl")
    assert cfg.learner.reward == "sparse" and cfg.learner.lr == 1e-5 and cfg.learner.epochs == 4 and cfg.episodes == 7
    assert cfg.task_list == ["reach-v3", "push-v3"]
    # the sparse file inherits its dense twin and differs in the reward alone
    dense = parse_config(RLConfig, ["--config", "configs/rl/reach-push.yaml", "--episodes", "7"], prog="vlac rl")
    assert dataclasses.replace(cfg, learner=dataclasses.replace(cfg.learner, reward="dense")) == dense
    # the outcome file is the measured recipe's flags (recipes/rl-outcome.sh before it had the file)
    recipe = ("--config configs/rl/reach-v3.yaml --tasks dial-turn-v3 --eval-every 50 --eval-episodes 20 "
              "--wait-for-learner --episodes-per-update 8 --max-episodes-per-update 8 --learner.threads 1 "
              "--learner.epochs 2 --learner.advantage outcome --learner.reward final --done-threshold 1.5 "
              "--no-critic-symmetric").split()
    outcome = parse_config(RLConfig, ["--config", "configs/rl/outcome.yaml", "--tasks", "dial-turn-v3"], prog="vlac rl")
    assert outcome == parse_config(RLConfig, recipe, prog="vlac rl") and outcome.learner.lr == 1e-5
    (tmp_path / "a.yaml").write_text("inherit: b.yaml\nepisodes: 3\n")
    (tmp_path / "b.yaml").write_text("inherit: a.yaml\n")
    with pytest.raises(SystemExit, match="inherits itself"):
        parse_config(RLConfig, ["--config", str(tmp_path / "a.yaml")], prog="vlac rl")
    (tmp_path / "b.yaml").write_text("inherit: nowhere.yaml\n")
    with pytest.raises(SystemExit, match="nowhere.yaml does not exist \\(inherited by .*b.yaml\\)"):
        parse_config(RLConfig, ["--config", str(tmp_path / "a.yaml")], prog="vlac rl")
    with pytest.raises(SystemExit):
        parse_config(RLConfig, ["--learner.reward", "shaped"], prog="vlac rl")
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())  # tyro wraps it in a box
    assert "must be one of dense, sparse, final, oracle-dense, oracle-sparse" in err
    with pytest.raises(SystemExit):  # the critic's arms cannot run without the critic
        parse_config(RLConfig, ["--critic", "none"], prog="vlac rl")
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())
    assert "--critic none leaves learner.reward 'dense' without its source" in err


def test_the_evaluator_decodes_by_the_expected_value_when_asked(monkeypatch, tmp_path, digit_tokenizer):
    """`vlac rl --eval-mean`: the loop's evaluator takes each number nearest its expected value and
    its record says so (the report's evaluation table is headed by it); an actor that cannot be read
    that way is named before the run starts."""
    import vlac.sim.actor_eval as actor_eval
    from vlac.actor.actor import Actor
    from vlac.model.vlm import VLM
    from vlac.rl.config import RLConfig
    from vlac.rl.workers import Evaluator
    from vlac.utils.cli import parse_config

    assert parse_config(RLConfig, ["--eval-mean"], prog="vlac rl").eval_mean
    real, seen = actor_eval.run_batch, []

    def watched(actor, task, variant, seeds, cfg):  # the real episodes, their decoding noted
        seen.append(cfg.mean)
        return real(actor, task, variant, seeds, cfg)

    monkeypatch.setattr(actor_eval, "run_batch", watched)
    ev = Evaluator("builtin", 1)
    assert ev.mean_problem() == ""
    out = ev.evaluate(None, 3, ["reach-v3"], 2, 20000, 4, mean=True)
    assert out["mean"] is True and out["version"] == 3 and out["reach-v3"] in (0.0, 0.5, 1.0)
    assert "mean" not in ev.evaluate(None, 3, ["reach-v3"], 1, 20000, 2)  # greedy, as before
    assert seen == [True, False]
    Actor(VLM.tiny(digit_tokenizer, seed=1), action_template="6dof").save(tmp_path / "digits")
    assert "one token" in Evaluator(str(tmp_path / "digits"), 1).mean_problem()


def test_recipes_parse_and_the_outcome_recipe_checks_its_decoding(tmp_path):
    root = Path(__file__).resolve().parents[1]
    for recipe in sorted((root / "recipes").glob("*.sh")):
        subprocess.run(["bash", "-n", str(recipe)], check=True)
    for decode, said in (("argmax", "DECODE=argmax: give greedy, mean or sampled"),
                         ("mean", "is not a dataset folder")):  # a known one goes on to check its inputs
        done = subprocess.run(["bash", str(root / "recipes" / "rl-outcome.sh"), "button-press-topdown-v3", "start",
                               str(tmp_path / "nothing")], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, "DECODE": decode})
        assert done.returncode == 2 and said in done.stderr, done.stderr


def test_rl_config_demands_authentication_off_loopback(tmp_path):
    from vlac.rl.config import RLConfig
    from vlac.transport.link import CurveKeys

    CurveKeys.generate().save(tmp_path / "gw.key")
    CurveKeys.generate().save(tmp_path / "arm.pub", public_only=True)
    with pytest.raises(ValueError, match="not loopback"):
        RLConfig(bind="tcp://0.0.0.0:5555")
    with pytest.raises(ValueError, match="done_min_value 1.5 must be in"):
        RLConfig(done_min_value=1.5)
    with pytest.raises(ValueError, match="robot-keys"):
        RLConfig(bind="tcp://0.0.0.0:5555", keys=str(tmp_path / "gw.key"))
    with pytest.raises(ValueError, match="cannot read CURVE key file"):
        RLConfig(bind="tcp://0.0.0.0:5555", keys=str(tmp_path / "gw.key"), robot_keys=[str(tmp_path / "nope.pub")])
    cfg = RLConfig(bind="tcp://0.0.0.0:5555", keys=str(tmp_path / "gw.key"), robot_keys=[str(tmp_path / "arm.pub")])
    assert cfg.robot_keys[0].endswith("arm.pub")


def test_actions_that_reach_the_robot_too_late_are_never_trained_on(ray_local, tmp_path):
    """A robot with a real control period holds still when its action is late and says so with
    its next observation (`executed` = -1): the loop then drops that action from training; an
    answer to an observation the robot has already replaced is not sent. Real gateway and client
    on 127.0.0.1, a real inference replica on Ray, the loop's own event handling."""
    from vlac.rl.config import RLConfig
    from vlac.rl.loop import RLLoop
    from vlac.transport.client import RobotClient
    from vlac.transport.gateway import Gateway

    ray = ray_local
    loop = RLLoop(RLConfig(out=str(tmp_path / "run"), robots=0))
    loop.attach(Gateway("tcp://127.0.0.1:0", expect_dims=(4, 4)))
    loop.workers = [ray.remote(num_cpus=0.1)(InferenceWorker).remote(str(ACTOR))]
    loop.inflight, loop.ready = [None], set()
    robot = RobotClient(loop.gateway.address, "r0", "sim-arm", ["main"], "reach-v3", 4, 4)
    rng = np.random.default_rng(0)
    task = "reach the red goal point with the gripper"

    pump = partial(_pump, loop, robot)

    def observe(step, executed):
        oid = robot.send_obs({"main": rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)},
                             np.array([0, 600, 200, 1.0], np.float32), 0, step, executed=executed)
        pump(lambda: loop.fleet.robots.get("r0") and loop.fleet.robots["r0"].rec and loop.fleet.robots["r0"].rec.steps
             and loop.fleet.robots["r0"].rec.steps[-1].obs_id == oid)
        return oid

    def answer():
        loop._dispatch(time.monotonic())
        ref = loop.inflight[0].ref
        ray.wait([ref], timeout=120)
        loop.ready = {ref}
        loop._collect_inference()

    pump(lambda: robot.session is not None)
    robot.start_episode(0, task)
    o0 = observe(0, None)
    answer()
    assert robot.wait_action(o0, 5.0) is not None  # executed in time
    observe(1, o0)
    steps = loop.fleet.robots["r0"].rec.steps
    assert steps[0].sample is not None and len(loop.fleet.to_score) == 1  # transition 0 -> 1 is scored
    answer()  # the answer to o1 comes, but the robot had already held still
    assert steps[1].sample is not None
    o2 = observe(2, -1)
    assert steps[1].sample is None and loop.counters["unexecuted_actions"] == 1
    assert len(loop.fleet.to_score) == 1  # transition 1 -> 2 is not scored: no policy action ran
    loop._dispatch(time.monotonic())  # o2 goes to the replica; the robot moves on before it answers
    ref = loop.inflight[0].ref
    observe(3, -1)
    ray.wait([ref], timeout=120)
    loop.ready = {ref}
    loop._collect_inference()
    assert loop.counters["late_answers"] == 1 and steps[2].sample is None
    assert robot.wait_action(o2, 0.5) is None  # never sent
    robot.close()
    loop.gateway.close()


@pytest.mark.slow(135)
def test_rl_oracle_dense_on_policy_with_takeovers_returns_and_a_missing_cluster(tmp_path):
    """The oracle-dense reference arm with symmetric critic rewards logged and the critic's done off
    (every episode runs to the limit), the robot held for the learner (every update trains on the
    policy being trained), the simulated operator taking over, return-and-explore sending the robot
    back to an earlier episode's state (a rule loose enough to offer every episode); and `--ray-address` naming the
    address when nothing answers there. (Joining a running cluster, with CURVE keys and a robot
    started by hand, is the README's cluster command, run by tests/test_readme.py.)"""
    import socket

    alone = [sys.executable, "-m", "vlac.scripts.cli", "rl", "--out", str(tmp_path / "alone"), "--tasks", "reach-v3",
             "--robots", "1", "--episodes", "3", "--episodes-per-update", "1", "--max-steps", "8",
             "--eval-episodes", "0", "--critic-symmetric", "--done-threshold", "1.5", "--wait-for-learner",
             "--learner.reward", "oracle-dense", "--takeover-after", "2", "--takeover-gain", "1.0",
             "--takeover-steps", "2", "--return-explore", "auto", "--returns.prob", "1", "--returns.stall-steps", "2",
             "--returns.min-value", "0", "--returns.gain", "1", "--returns.within", "0.5"]
    proc = subprocess.run(alone, capture_output=True, text=True, timeout=300, env={**os.environ, "MUJOCO_GL": "egl"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert json.loads((tmp_path / "alone" / "rl_config.json").read_text())["critic_symmetric"] is True
    rows = [json.loads(x) for x in (tmp_path / "alone" / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["reason"] == "limit" for r in rows), rows
    updates = [json.loads(x) for x in (tmp_path / "alone" / "learner.jsonl").read_text().splitlines()]
    assert len(updates) == 3 and all(u["policy_lag"] == 0 for u in updates), updates
    loop_stats = json.loads((tmp_path / "alone" / "loop_stats.json").read_text())
    assert loop_stats["learner_hold_s"] > 0
    # human-guided exploration: the value cannot rise by 1.0 in 2 steps, so the simulated operator
    # takes over once an episode; its steps are stored and replayed, never PPO samples
    assert loop_stats["takeovers"] >= 1 and loop_stats["operator_steps"] >= 1, loop_stats
    assert sum(r["operator_steps"] for r in rows) == loop_stats["operator_steps"]
    assert sum(u["operator_steps_added"] for u in updates) == loop_stats["operator_steps"]
    # return-and-explore: episode 0 offers a point; the robot, held at episode 1's start while the
    # learner ran, starts episode 2 from it (a robot applies a return to the next episode it begins)
    assert rows[0]["start"] is None and rows[2]["start"] is not None and rows[2]["start"][0] in (0, 1), rows
    assert loop_stats["return_points_offered"] >= 1 and loop_stats["return_episodes"] == 1, loop_stats
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "vlac.scripts.cli", "rl", "--ray-address", f"127.0.0.1:{port}", "--out",
           str(tmp_path / "nowhere"), "--tasks", "reach-v3", "--robots", "1", "--episodes", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # no cluster answers there
    assert proc.returncode != 0 and f"--ray-address 127.0.0.1:{port}" in proc.stderr + proc.stdout


def test_a_request_the_model_rejects_fails_alone():
    """An empty task or a 1x1 frame that got past the gateway (a protocol the model outgrew) fails
    its own request with an error; the other requests of the batch are answered."""
    from vlac.rl.workers import CriticWorker

    rng = np.random.default_rng(0)
    img = lambda side=96: rng.integers(0, 255, (side, side, 3), dtype=np.uint8)  # noqa: E731
    state, task = np.array([0, 600, 200, 1.0], np.float32), "reach the red goal point with the gripper"
    out = InferenceWorker(str(ACTOR), seed=0).act([ActRequest("a", 0, img(), state, task),
                                                   ActRequest("b", 1, img(1), state, task),
                                                   ActRequest("c", 2, img(), state, task)])
    assert [o.robot for o in out] == ["a", "b", "c"]
    assert out[0].sample and out[2].sample and out[1].sample is None and "shape (1, 1, 3)" in out[1].error
    scored = CriticWorker().score([ScoreRequest(0, task, img(), img()), ScoreRequest(1, task, img(1), img()),
                                   ScoreRequest(2, "push the puck to the goal", img(), img())])
    assert [s.key for s in scored] == [0, 1, 2] and scored[1].error and scored[0].error is None
    # the loop keeps a large frame at the size the models read: what they see barely changes
    vlm, big = InferenceWorker(str(ACTOR)).actor.vlm, img(300)[:, :250]
    pre = vlm.preprocess
    assert pre.frame(big).shape == (96, 96, 3) and pre.frame(img()).shape == (96, 96, 3)
    diff = (vlm.pixel_values([pre.frame(big)]) - vlm.pixel_values([big])).abs().max().item()
    assert diff <= 0.5 / 255 / min(pre.std) + 1e-5  # uint8 rounding, nothing more
    assert all(np.isfinite(scored[k].reward) and 0 <= scored[k].p_done <= 1 for k in (0, 2))


def test_loop_survives_failed_calls_caps_episodes_and_saves_open_ones(ray_local, tmp_path):
    """A Ray call that raises fails its requests alone (the robot gets an error reply); an open
    episode past the loop's memory cap is ended and kept; when a run stops abnormally its open
    episodes are persisted. Real gateway, client, Ray tasks and data service."""
    from vlac.data.dataset import LeRobotDataset
    from vlac.rl.config import RLConfig
    from vlac.rl.loop import InFlight, RLLoop
    from vlac.rl.storage import DataLink
    from vlac.transport.client import RobotClient
    from vlac.transport.gateway import Gateway

    ray = ray_local
    loop = RLLoop(RLConfig(out=str(tmp_path / "run"), robots=0, max_episode_mb=0.05))
    loop.attach(Gateway("tcp://127.0.0.1:0", expect_dims=(4, 4)))
    loop.workers, loop.inflight, loop.ready, loop.critic_inflight = [None], [None], set(), None
    loop.data = DataLink(ray, str(loop.out))
    robot = RobotClient(loop.gateway.address, "r0", "sim-arm", ["main"], "reach-v3", 4, 4)
    rng = np.random.default_rng(0)
    task = "reach the red goal point with the gripper"

    pump = partial(_pump, loop, robot)

    def observe(episode, step, side=96):
        oid = robot.send_obs({"main": rng.integers(0, 255, (side, side, 3), dtype=np.uint8)},
                             np.array([0, 600, 200, 1.0], np.float32), episode, step)
        pump(lambda: any(s.obs_id == oid for s in (loop.fleet.robots["r0"].rec.steps if loop.fleet.robots.get("r0") and
                                                   loop.fleet.robots["r0"].rec else []))
             or any(s.obs_id == oid for e in loop.fleet.finishing for s in e.steps))
        return oid

    @ray.remote
    def broken(*_):
        raise ValueError("the model rejected it")

    pump(lambda: robot.session is not None)
    robot.start_episode(0, task)
    oid = observe(0, 0)
    loop.fleet.waiting.clear()
    ref = broken.remote()
    ray.wait([ref])
    loop.inflight[0], loop.ready = InFlight(ref, [ActRequest("r0", oid, None, None, task)]), {ref}
    loop._collect_inference()  # RayTaskError(ValueError) used to escape RLLoop.run
    pump(lambda: any(code == "model-error" for _, code, _ in robot.errors))
    assert loop.counters["request_errors"] == 1 and "the model rejected it" in robot.errors[-1][2]
    loop.critic_inflight, loop.ready = InFlight(ref, [ScoreRequest(("r0", 0, 0), task, None, None)]), {ref}
    loop._score()
    assert loop.counters["scoring_errors"] == 1 and loop.critic_inflight is None
    # 2,000 px frames (12 MB) are kept at the 96 px the models read (27 KB); the second passes
    # the 0.05 MB cap and ends the episode, which is kept
    robot.start_episode(1, task)
    for k in range(2):
        observe(1, k, side=2000)
    pump(lambda: bool(robot.resets))
    assert robot.resets[-1]["episode"] == 1 and robot.resets[-1]["reason"] == "limit"
    capped = loop.fleet.finishing[-1]
    assert loop.counters["episodes_capped"] == 1 and capped.reason == "limit" and len(capped.steps) == 2
    assert capped.steps[0].image.shape == (96, 96, 3) and capped.frame_bytes == 2 * 96 * 96 * 3
    assert loop.fleet.robots["r0"].rec is None
    # a run that stops abnormally: the open episode (two scored steps) is persisted
    loop.fleet.finishing.clear()
    loop.fleet.rules.max_mb = 1.0
    robot.start_episode(2, task)
    for k in range(3):
        observe(2, k)
    for s in loop.fleet.robots["r0"].rec.steps[:2]:
        s.sample, s.reward, s.p_done = {"action": [1.0, 2.0, 3.0, 1.0]}, 0.1, 0.0
    from vlac.rl.workers import LogService

    loop.log, loop.done_episodes = LogService(str(loop.out)), 0
    loop._save_open_episodes()
    loop.log.close()
    ds = LeRobotDataset(loop.out / "episodes")
    assert ds.num_episodes == 1 and len(ds.episode(0).action) == 2
    # ... with its line in episodes.jsonl, as every stored episode has (a resumed run's lines and dataset line up)
    (line,) = [json.loads(x) for x in (loop.out / "episodes.jsonl").read_text().splitlines()]
    assert (line["n"], line["reason"], line["steps"]) == (1, "abort", 2) and loop.done_episodes == 1
    robot.close()
    loop.gateway.close()


def test_robots_started_by_a_run_do_not_outlive_it(tmp_path):
    """`vlac rl` killed with SIGKILL left its `vlac robot sim` children running (re-parented,
    resending to a dead port); a robot the loop starts now stops when the loop's process ends."""
    log = tmp_path / "robot.log"
    code = ("import subprocess, sys; from vlac.sim.robot import robot_command; "
            "p = subprocess.Popen(robot_command('tcp://127.0.0.1:9', 'reach-v3', 'orphan', 10, 0.0, 0), "
            "stdout=open(sys.argv[1], 'w'), stderr=subprocess.STDOUT); print(p.pid, flush=True); p.wait()")
    parent = subprocess.Popen([sys.executable, "-c", code, str(log)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    _wait_for_text(log, "waiting for a gateway at tcp://127.0.0.1:9", 120)
    parent.kill()  # SIGKILL: no handler of the parent runs
    parent.wait()
    end = time.monotonic() + 20
    while _alive(child):
        assert time.monotonic() < end, f"robot {child} outlived its run: {log.read_text()[-500:]}"
        time.sleep(0.2)


def _wait_for_text(path, text, seconds):
    end = time.monotonic() + seconds
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < end, f"{text!r} not in {path} within {seconds} s"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_robot_sim_off_loopback_without_keys_is_one_line():
    out = subprocess.run([sys.executable, "-m", "vlac.scripts.cli", "robot", "sim", "--connect", "tcp://10.1.2.3:5555",
                          "--task", "reach-v3"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr + out.stdout
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "--server-key FILE" in out.stderr


def test_reward_sources_by_hand():
    rec = EpisodeRecord("r", "t", 0, reason="done")
    rec.steps = [Step(k, 0, None, None, {"a": 1}, 0, 0.1 * k, 0.0, oracle_reward=float(k)) for k in range(3)]
    rec.steps.append(Step(3, 0, None, None))
    assert rec.rewards("oracle-dense").tolist() == pytest.approx([0.0, 0.1, 0.2])  # Meta-World's 0..10 scaled to 0..1
    assert rec.rewards("oracle-sparse").tolist() == rec.rewards("sparse").tolist() == [0, 0, 1]
    rec.steps[1].oracle_reward = None
    with pytest.raises(ValueError, match="oracle-dense needs robots that report it"):
        rec.rewards("oracle-dense")
    # oracle-final: the flag read at the end of a fixed-horizon episode, whether or not it is still on there
    rec.reason = "limit"
    for step, flag in zip(rec.steps, [False, True, False, None]):
        step.oracle_success = flag
    assert rec.rewards("oracle-final").tolist() == [0, 0, 1] and rec.summary()["oracle_final"] == 1.0
    rec.steps[1].oracle_success = False
    assert rec.rewards("oracle-final").tolist() == [0, 0, 0] and rec.rewards("oracle-sparse").tolist() == [0, 0, 0]
    rec.steps[2].oracle_success = None
    with pytest.raises(ValueError, match="oracle-final needs robots that report it"):
        rec.rewards("oracle-final")
    assert "oracle_final" not in rec.summary()
    with pytest.raises(ValueError, match="oracle-dense, oracle-sparse"):
        rec.rewards("shaped")


@pytest.mark.parametrize("reward", ["dense", "final", "oracle-dense", "oracle-sparse", "oracle-final"])
def test_simulator_fields_reach_the_learner_only_in_oracle_arms(tmp_path, reward):
    """A simulated robot reports Meta-World's reward and success flag with every observation (real
    rollout, real gateway and client on 127.0.0.1, the loop's own event handling). The critic arm
    drops them; oracle-dense keeps the simulator's own rewards; oracle-sparse ends the episode at
    the flag; oracle-final keeps the flag of every transition and runs on. The learner never gets the
    episode's success flag."""
    from vlac.sim.env import SimEnvConfig, SimRobotEnv
    from vlac.sim.behaviours import make_behaviour
    from vlac.rl.config import RLConfig
    from vlac.rl.loop import RLLoop
    from vlac.transport.client import RobotClient
    from vlac.transport.gateway import Gateway

    env = SimRobotEnv(SimEnvConfig(task="reach-v3", max_steps=60))
    obs, expert = env.reset(seed=3), make_behaviour("expert")
    expert.reset(env, np.random.default_rng(3))
    frames, sims = [obs], [{"reward": env.reward, "success": env.success}]
    while not env.success and env.steps < 60:
        obs = env.step(expert.act(env))
        frames.append(obs)
        sims.append({"reward": env.reward, "success": env.success})
    env.close()
    assert sims[-1]["success"] and len(sims) > 3 and len({s["reward"] for s in sims}) > 2
    # lost_after: a busy 2-core machine may pause this test longer than the default 10 s; losing the robot is not its subject
    loop = RLLoop(RLConfig(out=str(tmp_path / "run"), robots=0, lost_after=120.0, learner=LearnerConfig(reward=reward)))
    loop.attach(Gateway("tcp://127.0.0.1:0", expect_dims=(4, 4)))
    robot = RobotClient(loop.gateway.address, "r0", "sim-arm", ["main"], "reach-v3", 4, 4)
    try:
        pump = partial(_pump, loop, robot)

        pump(lambda: robot.session is not None)
        robot.start_episode(0, "reach the red goal point with the gripper")
        for k, (o, sim) in enumerate(zip(frames, sims)):
            robot.send_obs(o["images"], o["state"], 0, k, sim=sim)
            pump(lambda: loop.fleet.finishing or (loop.fleet.robots.get("r0") and loop.fleet.robots["r0"].rec
                                            and len(loop.fleet.robots["r0"].rec.steps) == k + 1))
            if loop.fleet.finishing:
                break
            loop.fleet.robots["r0"].rec.steps[-1].sample = {"action": [0.0, 0.0, 0.0, 1.0]}  # as if it acted
        robot.end_episode(0, "limit", success=True)
        pump(lambda: bool(loop.fleet.finishing))
        rec = loop.fleet.finishing[0]
        seen = loop._for_learner(rec)
        assert rec.success is not None and seen.success is None  # the flag is measurement only
        oracle = [s.oracle_reward for s in seen.steps[:-1]]
        flags = [s.oracle_success for s in seen.steps[:-1]]
        if reward in ("dense", "final"):  # the critic's arms
            assert all(r is None for r in oracle + flags) and rec.reason == "limit"
        elif reward == "oracle-final":  # every transition's flag kept, no reset at the flag
            assert flags == [s["success"] for s in sims[1:]] and flags[-1] and not any(flags[:-1])
            assert rec.reason == "limit" and len(seen.steps) == len(frames) and not robot.resets
        elif reward == "oracle-dense":  # the simulator's own figure of each transition
            assert oracle == pytest.approx([s["reward"] for s in sims[1:len(seen.steps)]])
            assert rec.reason == "limit" and len(seen.steps) == len(frames)
        else:  # ended at the flag with a reset to the robot
            pump(lambda: bool(robot.resets))
            assert rec.reason == "done" and rec.done_step == len(frames) - 2 and robot.resets[-1]["reason"] == "done"
    finally:
        robot.close()
        loop.gateway.close()


def test_history_reaches_serving_and_ppo_prompts_identically(tmp_path):
    """The action history an actor trained with ``--history`` sees: the loop puts it in the request
    and keeps it on the step; the learner re-scores the same prompt."""
    from vlac.actor.actor import Actor, ActorInput
    from vlac.rl.fleet import Fleet, FleetRules, RobotState, Waiting

    actor = Actor.load(ACTOR)
    actor.history = 2
    fleet = Fleet(FleetRules(history_len=2), send_reset=lambda *reset: None)
    rec = EpisodeRecord("r", "reach the red goal point with the gripper", 0)
    fleet.robots["r"] = RobotState(rec=rec)
    rng = np.random.default_rng(0)
    prompts = []
    for k in range(4):
        step = Step(k, 0.0, rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), np.array([0, 600, 200, 1.0], np.float32))
        rec.steps.append(step)
        req = fleet.request(Waiting("r", step, 0.0))
        prompts.append(actor.prompt(ActorInput(req.image, req.state, req.task, req.history)).text)
        step.sample, step.reward = {"action": [k + 1.0, -k, 0.0, 1.0]}, 0.0
        if k == 1:
            step.sample = None  # not executed (the robot held still): never part of the history
    assert rec.steps[3].history == [[1.0, 0.0, 0.0, 1.0], [3.0, -2, 0.0, 1.0]] and rec.steps[0].history == []
    learner_prompts = [actor.prompt(x).text for x in rec.actor_inputs()]
    assert learner_prompts == [prompts[0], prompts[2], prompts[3]] and "3mm" in prompts[3]


def test_one_done_rule_for_the_loop_eval_and_calibration():
    """p(done) equal to the threshold is done everywhere (the loop used >=, eval >)."""
    from vlac.critic import metrics as M
    from vlac.eval.critic_eval import done_scores

    assert M.done_frames([0.4, 0.5, 0.6], 0.5).tolist() == [False, True, True]
    assert M.first_done([0.2, 0.5, 0.5], 0.5, patience=2) == 2
    recs = [{"split": "seen", "zero_shot": {"values": [0.0, 1.0]}, "done": {"p": [0.1, 0.5], "truth": [False, True]}}]
    assert done_scores(recs, threshold=0.5)["seen"]["f1"] == 1.0
    # the loop's streaming rule and the offline one (fidelity, first_done) are one object
    rule = M.DoneRule(0.5, patience=2, min_value=0.3)
    p, v = [0.9, 0.9, 0.9, 0.1, 0.9, 0.9], [0.1, 0.2, 0.4, 0.5, 0.6, 0.7]  # gated until the value reaches 0.3
    online = [rule.step(pk, vk) for pk, vk in zip(p, v)]
    assert online == [False, False, False, False, False, True] and rule.first(p, v) == 5
    assert M.DoneRule(0.5, 2).first(p) == 1  # without the gate it fires at the second 0.9


def test_sigterm_stops_a_run_and_keeps_what_it_collected(tmp_path):
    """`kill PID` (SIGTERM, what schedulers send) ended `vlac rl` at once, without loop_stats.json;
    now it stops as Ctrl-C does: open episodes persisted, figures written, its robot stopped, and it
    exits with 143 also when the signal lands inside one of Ray's waits (Ray turned that into 1)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vlac.scripts.cli", "rl", "--out", str(out), "--tasks", "reach-v3", "--robots", "1",
           "--episodes", "1000", "--episodes-per-update", "1000", "--max-steps", "6", "--eval-episodes", "0",
           "--learner.reward", "oracle-sparse", "--critic", "none"]  # (a reference arm: no critic runs)
    loop = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TQDM_DISABLE": "1"})
    try:
        end = time.monotonic() + 180
        while not ((out / "episodes.jsonl").exists() and (out / "episodes.jsonl").read_text().count("\n") >= 2):
            assert time.monotonic() < end and loop.poll() is None, "no episodes"
            time.sleep(0.2)
        robot = _descendants(loop.pid, "robot-id sim-0")
        loop.send_signal(signal.SIGTERM)
        text, _ = loop.communicate(timeout=120)
    finally:
        loop.kill()
    assert loop.returncode == 128 + signal.SIGTERM, text[-2000:]
    stats = json.loads((out / "loop_stats.json").read_text())
    from vlac.data.dataset import LeRobotDataset

    assert stats["episodes"] >= 2 and LeRobotDataset(out / "episodes").num_episodes >= 2
    assert robot and not any(_alive(p) for p in robot)
    assert stats["seconds_per_episode"]["critic"] == 0  # a reference arm run without any critic
    rows = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    assert all(np.isnan(r["return"]) and np.isfinite(r["oracle_return"]) for r in rows), rows
    # one line per stored episode, the open ones persisted at the stop too (they had none: a resumed
    # run's episodes.jsonl then no longer lined up with its dataset), `n` its place in the dataset
    assert [r["n"] for r in rows] == list(range(1, LeRobotDataset(out / "episodes").num_episodes + 1))
    assert (out / "report.md").is_file(), text[-3000:]  # the report of what was collected, also after SIGTERM
    report = (out / "report.md").read_text()
    assert "ORACLE sparse: simulator's success flag (reference arm)" in report
    assert "The critic against the simulator's flag" not in report


NO_SIM = '''import sys


class NoSimulator:
    """The machine of a user with real robots only: the sim extra is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("metaworld", "mujoco", "gymnasium"):
            raise ModuleNotFoundError(f"No module named {name!r} (no simulator on this machine)", name=name)
        return None


sys.meta_path.insert(0, NoSimulator())
'''


@pytest.mark.slow(75)
def test_a_real_robot_runs_the_loop_without_a_simulator(tmp_path):
    """A robot with its own task text (not a suite task), two cameras (neither called main) and its
    own state and action names runs `vlac rl` on a machine where Meta-World, MuJoCo and gymnasium
    cannot be imported (in this process and in every Ray worker): episodes are served, scored,
    stored under the robot's names with both cameras, and trained on. With evaluations off no
    evaluator process starts, and the data service's process loads no torch."""
    from vlac.data.dataset import LeRobotDataset
    from vlac.transport.client import RobotClient

    (tmp_path / "nosim").mkdir()
    (tmp_path / "nosim" / "sitecustomize.py").write_text(NO_SIM)
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(tmp_path / "nosim")}
    probe = subprocess.run([sys.executable, "-c", "import metaworld"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "no simulator on this machine" in probe.stderr  # the block holds
    out, task = tmp_path / "run", "Scoop the rice into the rice cooker."
    cmd = [sys.executable, "-m", "vlac.scripts.cli", "rl", "--out", str(out), "--robots", "0", "--eval-episodes", "0",
           "--episodes", "2", "--episodes-per-update", "2", "--learner.minibatch", "4"]
    loop = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    names = (["x", "y", "z", "grip"], ["dx", "dy", "dz", "grip_cmd"])
    try:
        address = _wait_for(out / "gateway.txt", 120)
        robot = RobotClient(address, "arm-1", "piper", ["wrist", "front"], task, 4, 4,
                            state_names=names[0], action_names=names[1])
        assert robot.wait_welcome(60)
        rng = np.random.default_rng(0)
        state = np.array([0.0, 600.0, 200.0, 1.0], np.float32)
        for episode in range(2):
            robot.start_episode(episode)
            for step in range(5):
                images = {"wrist": rng.integers(0, 255, (120, 160, 3), dtype=np.uint8),
                          "front": rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)}
                oid = robot.send_obs(images, state, episode=episode, step=step)
                action = robot.wait_action(oid, 60)
                assert action is not None and action.shape == (4,)
                state = state + np.r_[action[:3], 0.0].astype(np.float32)
            robot.end_episode(episode, "limit")
            if episode == 0:  # the run's processes: what each one needs, no more
                workers = {name: _descendants(loop.pid, f"ray::{name}")
                           for name in ("Learner", "InferenceWorker", "DataService", "Evaluator")}
                assert workers["Learner"] and workers["InferenceWorker"] and workers["DataService"], workers
                assert not workers["Evaluator"], workers  # evaluations are off: no evaluator process
                [data] = workers["DataService"]
                assert "libtorch" not in Path(f"/proc/{data}/maps").read_text()  # it stores episodes, runs no model
        text, _ = loop.communicate(timeout=300)
        robot.close()
    finally:
        loop.kill()
    assert loop.returncode == 0, text[-3000:]
    ds = LeRobotDataset(out / "episodes")
    assert ds.num_episodes == 2 and sorted(ds.camera_keys) == ["front", "wrist"]
    assert ds.info["features"]["observation.state"]["names"] == names[0]
    assert ds.info["features"]["action"]["names"] == names[1]
    assert ds.episode(0).task == task
    updates = [json.loads(x) for x in (out / "learner.jsonl").read_text().splitlines()]
    assert updates and updates[0]["steps"] > 0
    rows = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    assert all(r["robot"] == "arm-1" and r["success"] is None and np.isfinite(r["return"]) for r in rows)


def test_a_resumed_run_does_not_evaluate_the_same_policy_twice(tmp_path):
    """A run resumed after its last update had been evaluated used to evaluate those weights again
    at once (the same point twice in curves.png, 20 evaluation episodes spent for nothing); it now
    evaluates at the next multiple of ``eval_every`` after that record, and a policy not yet evaluated at once."""
    from vlac.rl.loop import first_evaluation, next_evaluation

    log = tmp_path / "eval.jsonl"
    assert first_evaluation(log, 0, 0, 20) == (0, None)  # a new run
    log.write_text("\n".join(json.dumps(r) for r in [
        {"version": 0, "episodes": 0, "success": 0.3}, {"version": 9, "episodes": 40, "success": 0.65},
        {"version": 10, "episodes": 40, "success": 0.7}]) + '\n{"version": 11, "epis')  # cut by a kill
    assert first_evaluation(log, 10, 40, 20) == (60, 0.7)  # evaluated after its last update
    assert first_evaluation(log, 11, 44, 20) == (44, None)  # trained further than any evaluation
    # evaluations stay on multiples of eval_every: a run stopped and evaluated at 79 is next evaluated at 100
    log.write_text(json.dumps({"version": 9, "episodes": 79, "success": 0.7}) + "\n")
    assert first_evaluation(log, 9, 79, 50) == (100, 0.7)
    assert [next_evaluation(n, 50) for n in (0, 50, 52, 99, 100)] == [50, 100, 100, 100, 150]


def test_an_evaluation_with_no_update_since_the_last_one_is_skipped(tmp_path):
    """A run resumed at 147 episodes evaluated its last update at once; the evaluation due at 150 then
    came while the next update was still running and evaluated the same weights again (20 episodes for
    the same point). A due evaluation of the policy last evaluated now moves to the next multiple."""
    from tqdm import tqdm

    from vlac.rl.config import RLConfig
    from vlac.rl.loop import RLLoop

    loop = RLLoop(RLConfig(out=str(tmp_path / "run"), robots=0, eval_every=50, eval_episodes=2))
    loop.bar = tqdm(disable=True)
    loop.evaluator = None  # any evaluation started would call it
    loop.eval_inflight, loop.weights_ref, loop.version = None, None, 18
    loop._evaluated_version, loop.next_eval, loop.done_episodes = 18, 150, 153
    loop._evaluate()
    assert loop.next_eval == 200 and loop.eval_inflight is None
    loop.done_episodes = 199
    loop._evaluate()  # not due yet
    assert loop.next_eval == 200
    # the end of a run with no update since its last evaluation (or a finished run started again,
    # perhaps with another decoding for its evaluations): no second record of the same weights
    loop._evaluate(final=True)
    assert loop.eval_inflight is None
