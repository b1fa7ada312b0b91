"""The simulated task suite on real MuJoCo: experts, failure behaviours, variants, snapshots."""

import numpy as np
import pytest

from vlac.sim.behaviours import BEHAVIOURS, make_behaviour, parse_mix, schedule
from vlac.sim.env import SimEnvConfig, SimRobotEnv, action_to_metaworld, metaworld_to_action
from vlac.sim.rollout import episode_seed, rollout, run_episode
from vlac.data.tasks import TASKS, resolve_tasks
from vlac.sim.variants import VARIANTS, parse_variant


def test_suite_has_train_and_heldout_tasks_with_paraphrases():
    assert len(TASKS) >= 20
    assert len(resolve_tasks("heldout")) >= 5
    assert set(resolve_tasks("train")).isdisjoint(resolve_tasks("heldout"))
    for t in TASKS.values():
        assert t.instruction and len(t.paraphrases) >= 2
        assert t.partner in TASKS and t.partner != t.name


def test_unknown_task_and_variant_list_valid_names():
    with pytest.raises(ValueError, match="reach-v3") as e:
        resolve_tasks("reach-v3,fly-to-moon")
    assert "fly-to-moon" in str(e.value)
    with pytest.raises(ValueError, match="warm-light"):
        parse_variant("dim+disco")
    with pytest.raises(ValueError, match="Valid tasks"):
        SimEnvConfig(task="nope-v3")


def test_action_units_round_trip_on_the_template_grid():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = np.array([*rng.integers(-10, 11, size=3), rng.integers(0, 2)], dtype=np.float32)
        assert np.allclose(metaworld_to_action(action_to_metaworld(a)), a)
    with pytest.raises(ValueError, match="shape"):
        action_to_metaworld(np.zeros(3))


def test_behaviour_mix_and_schedule():
    mix = parse_mix("expert:3,stall:1")
    assert mix == {"expert": 0.75, "stall": 0.25}
    assert schedule(mix, 4).count("expert") == 3
    assert schedule(parse_mix(",".join(BEHAVIOURS)), len(BEHAVIOURS)) == list(BEHAVIOURS)
    with pytest.raises(ValueError, match="unknown behaviour"):
        parse_mix("expert:1,dance:1")


@pytest.mark.parametrize("task", ["reach-v3", "push-v3", "pick-place-v3", "drawer-open-v3", "window-open-v3"])
def test_expert_succeeds(task):
    cfg = SimEnvConfig(task=task, image_size=48)
    with SimRobotEnv(cfg) as env:
        wins = [rollout(env, make_behaviour("expert"), episode_seed(7, task, i)).is_success for i in range(4)]
    assert np.mean(wins) >= 0.9, wins


def test_reached_remembers_success_after_the_arm_leaves_the_goal():
    """``success`` is the current state's flag; ``reached`` (what simulated robots report at the
    end of an episode, as evaluation counts it) stays on once the flag was on."""
    with SimRobotEnv(SimEnvConfig(task="reach-v3", image_size=32, max_steps=120)) as env:
        env.reset(episode_seed(7, "reach-v3", 0))
        expert = make_behaviour("expert")
        expert.reset(env, np.random.default_rng(0))
        while not env.success:
            env.step(expert.act(env), render=False)
        assert env.reached
        snap = env.snapshot()
        for _ in range(15):  # 15 steps of 10 mm straight up: far out of the 5 cm goal radius
            env.step(np.array([0, 0, 10, 0], dtype=np.float32), render=False)
        assert not env.success and env.reached
        env.restore(snap, render=False)
        assert env.success and env.reached
        env.reset(1)
        assert not env.reached


def _succeeds(env: SimRobotEnv, behaviour, seed: int) -> bool:
    """Run ``behaviour`` from ``seed`` on physics alone (no frames: success needs none)."""
    env.reset(seed)
    behaviour.reset(env, np.random.default_rng(seed))
    while not env.done:
        env.step(behaviour.act(env), render=False)
        if env.success:
            return True
    return False


def test_every_task_yields_success_and_failure():
    """Expert episodes succeed and stalled ones fail on every task of the suite."""
    for task in TASKS:
        with SimRobotEnv(SimEnvConfig(task=task, image_size=32, max_steps=150)) as env:
            # the second expert episode only runs if the first failed
            won = any(_succeeds(env, make_behaviour("expert"), episode_seed(1, task, i)) for i in range(2))
            env.config.max_steps = 60  # a stall starts within 15 steps; no expert finishes that fast frozen
            stalled = _succeeds(env, make_behaviour("stall"), episode_seed(1, task, 9))
        assert won, f"{task}: expert failed twice"
        assert not stalled, f"{task}: stalled episode succeeded"


def test_a_miss_moves_like_the_expert_beside_the_object():
    """On lever-pull the miss walks the expert's routine 8 cm off: the hand travels as far as the
    expert's (a motion a done detector must not take for progress) while the lever stays down.
    (An offset can still catch the lever's side and pull it: rollouts label such a miss a success.)"""
    task, seed = "lever-pull-v3", episode_seed(2, "lever-pull-v3", 0)
    with SimRobotEnv(SimEnvConfig(task=task, image_size=32)) as env:
        ends = {}
        for name in ("expert", "miss"):
            b = make_behaviour(name, **({"offset": (0.08, 0.08)} if name == "miss" else {}))
            env.reset(seed)
            b.reset(env, np.random.default_rng(seed))
            hand, won = [env.raw_obs[:3].copy()], False
            while not env.done and not won:
                env.step(b.act(env), render=False)
                won = bool(env.success)
                hand.append(env.raw_obs[:3].copy())
            ends[name] = (won, np.linalg.norm(np.diff(hand, axis=0), axis=1).sum(), env.remaining())
    assert ends["expert"][0], "the expert failed"
    won, travel, remaining = ends["miss"]
    assert not won and remaining > 1.0, f"the miss pulled the lever (remaining {remaining:.2f} rad)"
    assert travel > 0.5 * ends["expert"][1], f"the miss's hand hardly moved ({travel:.3f} m)"


def test_stop_short_freezes_where_the_expert_was_just_before_success():
    """The stop-short negative walks the expert's own path and freezes for good at a fraction of the
    expert's time to success: the hand at the button, the button not pressed far enough (the hand
    still settles against the button's spring; the robot commands nothing more)."""
    task, seed = "button-press-topdown-v3", episode_seed(3, "button-press-topdown-v3", 0)
    with SimRobotEnv(SimEnvConfig(task=task, image_size=32, max_steps=100)) as env:
        env.reset(seed)
        expert, hands = make_behaviour("expert"), [env.raw_obs[:3].copy()]
        expert.reset(env, np.random.default_rng(seed))
        while not env.success:
            env.step(expert.act(env), render=False)
            hands.append(env.raw_obs[:3].copy())
        n = len(hands) - 1  # the expert's steps to success
        short = make_behaviour("stop-short", fraction=(0.9, 0.9))
        env.reset(seed)
        short.reset(env, np.random.default_rng(seed))
        assert short.stop_at == int(n * 0.9) and np.allclose(env.raw_obs[:3], hands[0])  # the walk was undone
        ends, moves = [], []
        while not env.done:
            a = short.act(env)
            moves.append(np.abs(a[:3]).sum())
            env.step(a, render=False)
            assert not env.success, f"stop-short succeeded at step {env.steps} (the expert needs {n})"
            ends.append(env.raw_obs[:3].copy())
    gap = np.linalg.norm(ends[short.stop_at - 1] - hands[short.stop_at])
    assert gap < 0.01, f"stop-short left the expert's path ({gap * 100:.1f} cm off where it froze)"
    assert sum(moves[:short.stop_at]) > 0 and sum(moves[short.stop_at:]) == 0, "commands after the freeze"


@pytest.mark.parametrize("task", ["reach-v3", "pick-place-v3"])
def test_regression_undoes_progress(task):
    # walk the whole way to success, then retrace the path (carrying the object back)
    walker = make_behaviour("regression", progress_fraction=(1.0, 1.0))
    ep = run_episode(SimEnvConfig(task=task, image_size=32), walker, episode_seed(0, task, 0))
    assert ep.success.any(), "the regression never reached the goal"
    assert not ep.is_success, "progress was not undone"


def test_episodes_are_reproducible_and_quantised():
    cfg = SimEnvConfig(task="push-v3", image_size=32)
    a = run_episode(cfg, "noisy", seed=5)
    b = run_episode(cfg, "noisy", seed=5)
    c = run_episode(cfg, "noisy", seed=6)
    assert np.array_equal(a.action, b.action) and np.array_equal(a.images["main"], b.images["main"])
    assert not np.array_equal(a.state[0], c.state[0]) or not np.array_equal(a.images["main"][0], c.images["main"][0])
    assert np.array_equal(a.action[:, :3], np.round(a.action[:, :3]))  # integer millimetres
    assert set(np.unique(a.action[:, 3])) <= {0.0, 1.0}
    assert np.abs(a.action[:, :3]).max() <= 10


def test_fresh_positions_each_seed():
    with SimRobotEnv(SimEnvConfig(task="push-v3", image_size=32)) as env:
        env.reset(1)
        o1 = env.raw_obs.copy()
        env.reset(2)
        o2 = env.raw_obs.copy()
        env.reset(1)
        assert np.array_equal(env.raw_obs, o1)
    assert not np.allclose(o1[4:7], o2[4:7])  # the puck moved between seeds


@pytest.mark.parametrize("task", ["reach-v3", "lever-pull-v3"])
def test_the_first_frame_shows_this_episodes_scene(task):
    """Meta-World moves the goal marker and fixed objects after its last forward pass; the reset frame
    must show them where this episode has them, not where the previous one had them."""
    import mujoco

    with SimRobotEnv(SimEnvConfig(task=task, image_size=64)) as env:
        env.reset(1)
        env.reset(2)
        first = env.observe()["images"]["main"]
        sim = env._env
        if task == "reach-v3":  # the goal marker sits at this episode's target
            np.testing.assert_allclose(sim.data.site_xpos[sim.model.site("goal").id], sim._target_pos, atol=1e-9)
        mujoco.mj_forward(sim.model, sim.data)  # positions recomputed: nothing left to move
        assert np.array_equal(env.observe()["images"]["main"], first)


def test_snapshot_restore_is_exact():
    rng = np.random.default_rng(0)
    with SimRobotEnv(SimEnvConfig(task="pick-place-v3", image_size=48, variant="gripper-cam")) as env:
        env.reset(3)
        expert = make_behaviour("expert")
        expert.reset(env, rng)
        for _ in range(25):  # mid-episode, with the gripper moving towards the object
            env.step(expert.act(env))
        snap = env.snapshot()
        actions = [np.array([*rng.integers(-10, 11, 3), rng.integers(0, 2)], dtype=np.float32) for _ in range(20)]
        first = [env.step(a) for a in actions]
        env.restore(snap)
        second = [env.step(a) for a in actions]
    for o1, o2 in zip(first, second):
        assert np.array_equal(o1["state"], o2["state"])
        for k in o1["images"]:
            assert np.array_equal(o1["images"][k], o2["images"][k])


def test_variants_change_pixels_deterministically():
    def first_frame(variant):
        with SimRobotEnv(SimEnvConfig(task="drawer-open-v3", image_size=48, variant=variant)) as env:
            return env.reset(11)

    base = first_frame("default")["images"]["main"]
    assert np.array_equal(base, first_frame("default")["images"]["main"])
    for name in VARIANTS:
        if name in ("default", "gripper-cam", "behind-cam"):
            continue
        img = first_frame(name)["images"]["main"]
        assert np.array_equal(img, first_frame(name)["images"]["main"]), name
        assert np.abs(img.astype(int) - base).mean() > 1.0, f"variant {name} did not change the image"
    both = first_frame("dim+table-green+gripper-cam")
    assert set(both["images"]) == {"main", "gripper"}
    assert not np.array_equal(both["images"]["main"], first_frame("dim")["images"]["main"])
