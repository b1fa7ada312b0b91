"""Unit tier: critic labels, sample construction and metrics against hand-computed cases and
naive implementations."""

import json

import numpy as np
import pytest

from vlac.critic import labels as L
from vlac.critic import metrics as M
from vlac.train.samples import SampleSource, Trajectory


# ------------------------------------------------------------------------------ labels
def test_progress_label_hand_computed():
    assert L.progress_label(10, 15, last=60) == pytest.approx(5 / 50)
    assert L.progress_label(15, 10, last=60) == pytest.approx(-5 / 45)
    assert L.progress_label(0, 60, last=60) == 1.0
    assert L.progress_label(30, 30, last=60) == 0.0
    assert L.progress_label(50, 10, last=60) == -1.0  # -40/10 clipped
    assert L.progress_label(60, 20, last=60) == -1.0  # nothing left to do at the last frame
    assert L.admissible_offsets(10, 60) == (-10, 50)
    with pytest.raises(ValueError, match="outside the episode"):
        L.progress_label(0, 61, last=60)


def test_joint_group_and_pixel_filter():
    assert L.joint_group(10, 30) == [(10, 11), (11, 10), (10, 30), (30, 10)]
    assert L.joint_group(4, 2, step=3) == [(4, 7), (7, 4), (4, 2), (2, 4)]
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255  # 1/192 of full scale: below 1%
    assert L.pixel_difference(a, b) == pytest.approx(1 / 192)
    assert L.filtered_label(0, 5, 10, L.pixel_difference(a, b)) == 0.0
    assert L.filtered_label(0, 5, 10, 0.02) == 0.5


def test_done_and_description_ranges():
    assert [L.done_label(i, 100) for i in (0, 79, 80, 95, 96, 100)] == [0, 0, None, None, 1, 1]
    not_done, done = L.done_ranges(100)
    assert (not_done.start, not_done.stop, done.start, done.stop) == (0, 80, 96, 101)
    starts, ends = L.description_ranges(100)
    assert (starts.start, starts.stop, ends.start, ends.stop) == (0, 31, 80, 101)
    assert L.reference_frames(60, 3) == [0, 30, 60]
    assert [L.frame_progress(t, 60) for t in (0, 30, 60)] == [0, 50, 100]


# ------------------------------------------------------------------------------ samples
def _coded(n: int, episode: int) -> np.ndarray:
    """Frames whose pixels encode (frame index, episode id), so tests can read them back."""
    f = np.zeros((n, 16, 16, 3), np.uint8)
    f[..., 0] = f[..., 2] = (np.arange(n) * 6)[:, None, None]  # one step changes 1.6%: above the filter
    f[..., 1] = episode
    return f


def _index(img) -> int:
    return int(img[0, 0, 0]) // 6


def test_progress_groups_match_hand_labels():
    trajs = [Trajectory("open the drawer", _coded(41, 0), "a"), Trajectory("push the puck", _coded(31, 1), "b")]
    src = SampleSource(trajs, fine_step=1, mismatch_prob=0.0)
    rng = np.random.default_rng(0)
    prompts, answers = src.progress(rng, groups=50)
    assert len(prompts) == 200
    for g in range(50):
        grp = prompts[4 * g : 4 * g + 4]
        pairs = [(_index(p.images[0]), _index(p.images[1])) for p in grp]
        i, j = pairs[2]
        assert pairs == L.joint_group(i, j, 1)
        last = 40 if "drawer" in grp[0].text else 30
        for (a, b), ans in zip(pairs, answers[4 * g : 4 * g + 4]):
            assert int(ans) == L.to_percent(L.progress_label(a, b, last))
    assert any(int(a) < 0 for a in answers) and any(int(a) > 0 for a in answers)


def test_mismatched_descriptions_and_static_frames_get_zero():
    trajs = [Trajectory("open the drawer", _coded(41, 0), "a"), Trajectory("push the puck", _coded(31, 1), "b")]
    src = SampleSource(trajs, fine_step=1, mismatch_prob=1.0)
    prompts, answers = src.progress(np.random.default_rng(1), groups=20)
    for p, a in zip(prompts, answers):
        own = "open the drawer" if p.images[0][0, 0, 1] == 0 else "push the puck"
        if own not in p.text:
            assert a == "0"
    static = Trajectory("open the drawer", np.full((20, 16, 16, 3), 9, np.uint8), "s")
    _, answers = SampleSource([static], fine_step=1).progress(np.random.default_rng(2), groups=10)
    assert set(answers) == {"0"}


def test_done_describe_and_one_shot_samples():
    trajs = [Trajectory("open the drawer", _coded(41, e), str(e)) for e in range(3)]
    src = SampleSource(trajs, fine_step=1, reference_frames=3)
    rng = np.random.default_rng(3)
    prompts, answers = src.done(rng, pairs=20)
    assert answers == ["0", "1"] * 20
    for p, a in zip(prompts, answers):
        t = _index(p.images[0])
        assert (t < 32) if a == "0" else (t > 38)
    prompts, answers = src.describe(rng, 20)
    assert all(a == "open the drawer </task>" for a in answers)
    assert all(_index(p.images[0]) <= 12 and _index(p.images[1]) >= 32 for p in prompts)
    prompts, answers = src.one_shot(rng, groups=10)
    for p in prompts:
        assert len(p.images) == 6 and p.text.startswith("0% <image>\n50% <image>\n100% <image>\n0% <image>")
        ref_ep, cur_ep = p.images[0][0, 0, 1], p.images[4][0, 0, 1]
        assert ref_ep != cur_ep  # the reference is another episode of the task
        assert [_index(im) for im in p.images[:3]] == [0, 20, 40]
        assert _index(p.images[3]) == 0 and p.images[3][0, 0, 1] == cur_ep


def test_done_labels_from_the_success_flag():
    flags = np.zeros(41, bool)
    flags[20:23] = True  # a success the episode passed through, then lost
    flags[37:] = True
    not_done, done = L.done_frames_from_flag(flags)
    assert list(not_done) == list(range(20)) and list(done) == [20, 21, 22, 37, 38, 39, 40]
    assert L.done_frames_from_flag(np.zeros(5, bool)) is None
    trajs = [Trajectory("open the drawer", _coded(41, e), str(e), flags) for e in range(2)]
    src = SampleSource(trajs, fine_step=1, done_labels="flag")
    prompts, answers = src.done(np.random.default_rng(6), pairs=200)
    assert answers == ["0", "1"] * 200
    got = {a: {_index(p.images[0]) for p, b in zip(prompts, answers) if b == a} for a in ("0", "1")}
    assert got["0"] == set(range(20)) and got["1"] == {20, 21, 22, 37, 38, 39, 40}
    # The position rule on the same episodes never labels frames 32-38 (between 0.8 T and 0.95 T).
    pos = SampleSource(trajs, fine_step=1).done(np.random.default_rng(6), pairs=200)
    assert not {_index(p.images[0]) for p in pos[0]} & set(range(32, 39))
    near = SampleSource(trajs, fine_step=1, done_labels="flag", done_near=1.0)
    prompts, answers = near.done(np.random.default_rng(7), pairs=100)
    assert {_index(p.images[0]) for p, a in zip(prompts, answers) if a == "0"} == {16, 17, 18, 19}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SampleSource(trajs, fine_step=1, done_near=2.0)
    with pytest.raises(ValueError, match="sim.success"):
        SampleSource([Trajectory("open the drawer", _coded(41, 0), "x#3")], fine_step=1, done_labels="flag")
    with pytest.raises(ValueError, match="never on"):
        SampleSource([Trajectory("open the drawer", _coded(41, 0), "x#3", np.zeros(41, bool))], fine_step=1,
                     done_labels="flag")
    with pytest.raises(ValueError, match="valid: position"):
        SampleSource(trajs, fine_step=1, done_labels="time")


def test_in_context_done_samples_lead_with_another_episodes_goal():
    flags = np.zeros(41, bool)
    flags[37:] = True
    trajs = [Trajectory("open the drawer", _coded(41, e), str(e), flags) for e in range(3)]
    trajs.append(Trajectory("close the drawer", _coded(41, 9), "9", flags))  # a task with one episode
    failed = [Trajectory("open the drawer", _coded(20, 7), "f"), Trajectory("press the button", _coded(20, 8), "g")]
    src = SampleSource(trajs, fine_step=1, done_labels="flag", failed=failed, done_failed=0.5)
    prompts, answers = src.done_goal(np.random.default_rng(8), pairs=200)
    assert answers == ["0", "1"] * 200
    for p, a in zip(prompts, answers):
        goal, judged = p.images
        assert p.text.startswith("100% <image>\n<image>\nThe 1 means yes") and "open the drawer" in p.text
        assert _index(goal) == 40 and goal[0, 0, 1] != judged[0, 0, 1]  # another episode's last frame
        assert goal[0, 0, 1] in (0, 1, 2)  # only the task with two or more episodes
        if a == "1":
            assert _index(judged) >= 37
    negatives = {int(p.images[1][0, 0, 1]) for p, a in zip(prompts, answers) if a == "0"}
    assert 7 in negatives and 8 not in negatives  # failed frames only of tasks with a goal to show
    one = SampleSource(trajs[3:], fine_step=1)
    with pytest.raises(ValueError, match="two successful episodes"):
        one.done_goal(np.random.default_rng(0), pairs=2)


def test_sample_source_rejects_empty_input():
    with pytest.raises(ValueError, match="no successful episodes"):
        SampleSource([])


# ------------------------------------------------------------------------------ metrics
def _naive_spearman(x):
    ranks = np.empty(len(x))
    order = sorted(range(len(x)), key=lambda k: x[k])
    k = 0
    while k < len(order):  # average ranks over ties
        m = k
        while m + 1 < len(order) and x[order[m + 1]] == x[order[k]]:
            m += 1
        for q in range(k, m + 1):
            ranks[order[q]] = (k + m) / 2
        k = m + 1
    t = np.arange(len(x), dtype=float)
    rc, tc = ranks - ranks.mean(), t - t.mean()
    return float((rc * tc).sum() / np.sqrt((rc ** 2).sum() * (tc ** 2).sum()))


def test_value_curve_and_voc():
    assert M.value_curve([0.5, 0.5]).tolist() == [0.0, 0.5, 0.75]
    assert M.value_curve([0.5, -1.0]).tolist() == [0.0, 0.5, 0.0]
    assert M.value_curve([-0.5], clamp=False).tolist() == [0.0, -0.5]
    v = M.value_curve([-0.5, -0.5], clamp=False)
    assert v[2] == pytest.approx(-0.5 + 1.5 * -0.5)
    assert M.voc(np.arange(10)) == pytest.approx(1.0)
    assert M.voc(np.arange(10)[::-1]) == pytest.approx(-1.0)
    assert np.isnan(M.voc(np.ones(5)))
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 6, size=12).astype(float)  # with ties
        if np.ptp(x):
            assert M.voc(x) == pytest.approx(_naive_spearman(list(x)))


def test_vroc_f1_and_negative_rate():
    # A perfect critic on a reversed video gives falling values: VROC 1.
    assert M.vroc(np.arange(10)[::-1]) == pytest.approx(1.0)
    assert M.vroc(np.arange(10)) == pytest.approx(-1.0)
    assert M.voc_f1(0.9, 0.8) == pytest.approx(2 * 0.72 / 1.7)
    assert M.voc_f1(1.0, -1.0) == -1.0
    assert M.negative_rate([0.1, -0.2, 0.0, -0.1]) == 0.5
    assert M.pair_indices(10, 3) == [0, 3, 6, 9]
    assert M.pair_indices(11, 3) == [0, 3, 6, 9, 10]
    with pytest.raises(ValueError, match="at least 2 frames"):
        M.pair_indices(1, 3)
    s = M.binary_scores([1, 1, 0, 0], [1, 0, 0, 1])
    assert (s["accuracy"], s["precision"], s["recall"], s["f1"]) == (0.5, 0.5, 0.5, 0.5)


def test_episode_termination_by_done_detector():
    p = [0.1, 0.7, 0.2, 0.6, 0.9, 0.95]
    assert M.first_done(p, 0.5, patience=1) == 1
    assert M.first_done(p, 0.5, patience=2) == 4  # the 0.2 breaks the first streak
    assert M.first_done(p, 0.99, patience=1) is None
    ok = [0, 0, 0, 1, 1, 1]  # the simulator's flag: success from frame 3
    assert M.termination(p, ok, 0.5, 1) == "early"
    assert M.termination(p, ok, 0.5, 2) == "on-time"
    assert M.termination(p, ok, 0.99, 1) == "missed"
    assert M.termination(p, [0] * 6, 0.99, 1) == "correct-none"
    assert M.termination(p, [0] * 6, 0.5, 2) == "early"
    with pytest.raises(ValueError, match="patience"):
        M.first_done(p, 0.5, patience=0)


def test_progress_gated_done_hand_computed(tmp_path):
    from vlac.eval.calibrate import CalibrateConfig, calibrate
    from vlac.eval.critic_eval import done_scores

    assert M.value_step(0.5, 0.5) == 0.75 and M.value_step(0.5, -0.5) == 0.25 and M.value_step(0.9, 2.0) == 1.0
    v = M.value_curve([0.2, -0.1, 0.5])
    assert [M.value_step(v[k], c) for k, c in enumerate([0.2, -0.1, 0.5])] == pytest.approx(v[1:])
    p, values = [0.9, 0.8, 0.2, 0.95], [0.1, 0.6, 0.9, 0.95]
    assert M.gate_done(p, values, 0.5).tolist() == [0.0, 0.8, 0.2, 0.95]
    assert M.gate_done(p, values, 0.0).tolist() == p
    with pytest.raises(ValueError, match="same shape"):
        M.gate_done(p, values[:3], 0.5)
    # two episodes: a success (flag on at the last two frames) and a failure that the bare done
    # answer calls done at low value
    recs = [{"split": "seen", "zero_shot": {"values": [0.0, 0.4, 0.7, 0.9, 0.95]},
             "done": {"p": [0.1, 0.2, 0.8, 0.9, 0.9], "truth": [False, False, False, True, True]}},
            {"split": "seen", "zero_shot": {"values": [0.0, 0.2, 0.3, 0.3, 0.3]},
             "done": {"p": [0.1, 0.9, 0.9, 0.9, 0.1], "truth": [False] * 5}}]
    plain, gated = done_scores(recs, 0.5)["seen"], done_scores(recs, 0.5, min_value=0.8)["seen"]
    assert (plain["precision"], plain["recall"], plain["f1"]) == (2 / 6, 1.0, 0.5)  # 2 TP, 4 FP, 0 FN
    assert (gated["precision"], gated["recall"], gated["f1"]) == (1.0, 1.0, 1.0)
    assert plain["episodes"]["patience 1"]["early"] == 1.0  # both ended before success / while failing
    assert gated["episodes"]["patience 2"]["on-time"] == 0.5 and gated["episodes"]["patience 2"]["correct-none"] == 0.5
    # calibration over the same records picks the gate, from the files `vlac critic eval` writes
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "episodes.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    res = calibrate(CalibrateConfig(episodes=[str(tmp_path / "ev")], out=str(tmp_path / "cal"), thresholds=[0.5],
                                    min_values=[0, 0.8]))
    assert (res["best"]["min_value"], res["best"]["f1"], res["ungated_at_0.5"]["f1"]) == (0.8, 1.0, 0.5)
    assert (tmp_path / "cal" / "calibrate.png").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="vlac critic eval --out"):
        calibrate(CalibrateConfig(episodes=[str(tmp_path / "nowhere")], out=str(tmp_path / "x")))
    with pytest.raises(ValueError, match="--thresholds is empty"):
        calibrate(CalibrateConfig(episodes=[str(tmp_path / "ev")], out=str(tmp_path / "x"), thresholds=[]))
    with pytest.raises(ValueError, match="has no episodes"):
        calibrate(CalibrateConfig(episodes=[str(tmp_path / "ev")], out=str(tmp_path / "x"), split="held-out"))


def test_table_rows_keep_expert_episodes_apart():
    """The issue's VOC targets are over expert episodes: a successful regression episode (reaches
    the goal, then undoes it) gets its own row instead of lowering the expert row."""
    from vlac.eval.critic_eval import BASELINES, summarise

    def rec(behaviour, success, voc, vroc):
        m = {"voc": voc, "vroc": vroc, "nr": 0.1, "final_value": 0.9, "values": [0.0, 0.5, 0.9]}
        return {"split": "seen", "variant": "default", "task": "t", "behaviour": behaviour, "success": success,
                "zero_shot": m, "baselines": {b: m for b in BASELINES},
                "done": {"p": [0.1, 0.2, 0.9], "truth": [False, False, success]}}

    recs = [rec("expert", True, 1.0, 0.8), rec("expert", True, 0.8, 0.8), rec("regression", True, -0.5, -0.5),
            rec("regression", False, 0.0, 0.0), rec("", True, 0.6, 0.8)]  # "": a dataset without behaviours
    table = summarise(recs)["table"]
    assert sorted(table) == ["seen / default / failed", "seen / default / successful",
                             "seen / default / successful (regression)"]
    row = table["seen / default / successful"]["zero-shot"]
    assert (row["n"], row["voc"], row["vroc"]) == (3, pytest.approx(0.8), pytest.approx(0.8))
    assert table["seen / default / successful (regression)"]["zero-shot"]["voc"] == -0.5
    assert table["seen / default / successful"]["one-shot"]["n"] == 0  # no one-shot records


def test_description_answers_parse_back():
    from vlac.model.prompts import describe_answer, parse_description

    assert parse_description(describe_answer("open  the drawer")) == "open the drawer"
    assert parse_description("open the drawer < / task > <pad>") == "open the drawer"


def test_done_hard_negatives_from_failed_episodes():
    trajs = [Trajectory("open the drawer", _coded(41, e), str(e)) for e in range(2)]
    failed = [Trajectory("push the puck", _coded(10, 9), "f")]
    src = SampleSource(trajs, fine_step=1, failed=failed, done_failed=1.0)
    prompts, answers = src.done(np.random.default_rng(4), pairs=30)
    assert answers == ["0", "1"] * 30  # still balanced
    for p, a in zip(prompts, answers):
        from_failed = p.images[0][0, 0, 1] == 9
        assert from_failed == (a == "0") and (("push the puck" in p.text) == from_failed)
    half = SampleSource(trajs, fine_step=1, failed=failed, done_failed=0.5)
    prompts, answers = half.done(np.random.default_rng(5), pairs=200)
    share = np.mean([p.images[0][0, 0, 1] == 9 for p, a in zip(prompts, answers) if a == "0"])
    assert 0.4 < share < 0.6
    with pytest.raises(ValueError, match="failed episodes"):
        SampleSource(trajs, fine_step=1, done_failed=0.3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SampleSource(trajs, fine_step=1, failed=failed, done_failed=1.5)


def test_failed_late_frames_come_from_failed_episodes_where_the_flag_is_off(small_dataset):
    from vlac.train.samples import load_failed_late_frames
    from vlac.data.dataset import LeRobotDataset

    ds = LeRobotDataset(small_dataset)
    got = load_failed_late_frames([ds], progress=False)
    want = []
    for i in range(ds.num_episodes):
        ep = ds.episode(i)
        if not ds.meta(i)["success"]:
            idx = [t for t in range(len(ep.success)) if t >= len(ep.success) // 2 and not ep.success[t]]
            want.append(ep.images[ds.camera_keys[0]][idx])
    assert len(got) == len(want) >= 1
    for g, w in zip(got, want):
        assert np.array_equal(g.frames, w)
    # --failed-first N: only the first N episodes (those labelled so far), the rest never decoded
    failed_ids = [i for i in range(ds.num_episodes) if not ds.meta(i)["success"]]
    first = failed_ids[0] + 1
    assert [t.source for t in load_failed_late_frames([ds], progress=False, first=first)] == [f"{ds.root}#{failed_ids[0]}"]
    assert len(load_failed_late_frames([ds], progress=False, first=10 * ds.num_episodes)) == len(want)
    from vlac.train.config import TrainConfig

    with pytest.raises(ValueError, match="--failed-first 5 .* --failed-data"):
        TrainConfig(data=["x"], out="y", failed_first=5)
    with pytest.raises(ValueError, match="--failed-first -1"):
        TrainConfig(data=["x"], out="y", failed_data=["z"], failed_first=-1)


def _save_rollout(root, policy, task, seed, frames, flags):
    from vlac.eval.fidelity import Episode

    n = len(frames)
    Episode(policy, task, seed, frames, np.zeros((n, 3)), np.linspace(1, 0, n), np.asarray(flags, bool)).save(
        root / "rollouts" / policy / task / f"{seed}.npz")


def test_policy_rollouts_split_at_the_success_moment_and_still_pairs_read_zero(tmp_path):
    from vlac.train.samples import load_rollouts

    # a success whose flag comes on at frame 12 of 20 (episode id 1), a failure of 20 frames (id 2)
    _save_rollout(tmp_path, "actor@1", "reach-v3", 1, _coded(20, 1), np.arange(20) >= 12)
    _save_rollout(tmp_path, "stall", "reach-v3", 2, _coded(20, 2), np.zeros(20, bool))
    ro = load_rollouts([str(tmp_path)], progress=False)
    assert [len(t.frames) for t in ro.successes] == [13]  # frames 0..12: cut at the success moment
    assert ro.successes[0].flags.tolist() == [False] * 12 + [True]
    assert sorted(len(t.frames) for t in ro.still) == [8, 20]  # after the success (12..19), the whole failure
    assert [int(t.frames[0, 0, 0, 1]) for t in ro.failed_late] == [2] and len(ro.failed_late[0].frames) == 10
    assert "1 successful" in ro.summary()
    assert {t.task for t in ro.successes + ro.still} == {"reach the red goal point with the gripper"}  # the instruction

    experts = [Trajectory("reach-v3", _coded(30, e), str(e)) for e in (5, 6)]
    src = SampleSource(experts + ro.successes, fine_step=1, mismatch_prob=0.0, still=ro.still, still_share=1.0)
    prompts, answers = src.progress(np.random.default_rng(0), groups=20)
    assert answers == ["0"] * 80  # every group from a still trajectory, every pair labelled 0
    assert {int(p.images[0][0, 0, 1]) for p in prompts} <= {1, 2}
    half = SampleSource(experts, fine_step=1, mismatch_prob=0.0, still=ro.still, still_share=0.5)
    prompts, answers = half.progress(np.random.default_rng(1), groups=200)
    from_still = np.array([int(p.images[0][0, 0, 1]) in (1, 2) for p in prompts[::4]])
    assert 0.4 < from_still.mean() < 0.6
    # the expert groups keep their time-linear labels (never all 0: a fine forward pair is positive)
    assert all(int(a) > 0 for a, s in zip(answers[::4], from_still) if not s)
    # one-shot groups take still pairs of the reference's own task only
    other = SampleSource(experts, fine_step=1, still=[Trajectory("push-v3", _coded(20, 3), "p")], still_share=0.9)
    prompts, _ = other.one_shot(np.random.default_rng(2), groups=20)
    assert all(int(p.images[-1][0, 0, 1]) in (5, 6) for p in prompts)
    with pytest.raises(ValueError, match="still trajectories"):
        SampleSource(experts, fine_step=1, still_share=0.3)
    _save_rollout(tmp_path / "odd", "stall", "no-such-task", 1, _coded(20, 1), np.zeros(20, bool))
    with pytest.raises(ValueError, match="'no-such-task' is not a simulated task"):
        load_rollouts([str(tmp_path / "odd")], progress=False)
    with pytest.raises(FileNotFoundError, match="rollouts-only"):
        load_rollouts([str(tmp_path / "nowhere")])
    (tmp_path / "rollouts" / "stall" / "reach-v3" / "3.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="3.npz cannot be read"):
        load_rollouts([str(tmp_path)], progress=False)


def test_done_pairs_from_rollouts_match_a_success_segment_with_a_failure_of_its_task(tmp_path):
    from vlac.train.samples import load_rollouts

    # reach: success on at frames 12-15, lost at 16, on again at 18 (only the first segment is done);
    # a reach failure (id 2); a push failure (id 3) that must never be a reach pair's negative
    flags = np.zeros(20, bool)
    flags[12:16] = flags[18:] = True
    _save_rollout(tmp_path, "actor@1", "reach-v3", 1, _coded(20, 1), flags)
    _save_rollout(tmp_path, "actor@1", "reach-v3", 2, _coded(20, 2), np.zeros(20, bool))
    _save_rollout(tmp_path, "actor@1", "push-v3", 3, _coded(20, 3), np.zeros(20, bool))
    ro = load_rollouts([str(tmp_path)], progress=False)
    # the approach (the last 20 % of the 12 frames before the success moment) and the done frames
    assert [[_index(f) for f in t.frames] for t in ro.done_segments] == [[10, 11, 12, 13, 14, 15]]
    assert ro.done_segments[0].flags.tolist() == [False, False, True, True, True, True]
    assert "1 done segments (4 frames)" in ro.summary()
    experts = [Trajectory("reach-v3", _coded(30, e), str(e)) for e in (5, 6)]
    src = SampleSource(experts, fine_step=1, done_rollouts=1.0, done_segments=ro.done_segments,
                       rollout_failed=ro.failed_late)
    prompts, answers = src.done(np.random.default_rng(0), pairs=40)
    assert answers == ["0", "1"] * 40
    for p, a in zip(prompts, answers):
        img = p.images[0]
        if a == "1":
            assert img[0, 0, 1] == 1 and 12 <= _index(img) <= 15
        else:  # a late frame of the reach failure, never the push one
            assert img[0, 0, 1] == 2 and _index(img) >= 10
        assert "reach the red goal point" in p.text
    near = SampleSource(experts, fine_step=1, done_rollouts=1.0, done_segments=ro.done_segments,
                        rollout_failed=ro.failed_late, done_near=0.5)
    prompts, answers = near.done(np.random.default_rng(3), pairs=200)
    negatives = [p.images[0] for p, a in zip(prompts, answers) if a == "0"]
    approach = [img for img in negatives if img[0, 0, 1] == 1]  # from the success itself
    assert all(_index(img) in (10, 11) for img in approach) and 0.4 < len(approach) / len(negatives) < 0.6
    assert all(_index(p.images[0]) >= 12 for p, a in zip(prompts, answers) if a == "1")
    half = SampleSource(experts, fine_step=1, done_rollouts=0.5, done_segments=ro.done_segments,
                        rollout_failed=ro.failed_late)
    prompts, answers = half.done(np.random.default_rng(1), pairs=200)
    share = np.mean([p.images[0][0, 0, 1] in (1, 2) for p in prompts])
    assert 0.4 < share < 0.6
    with pytest.raises(ValueError, match="both a success and a failure"):
        SampleSource(experts, fine_step=1, done_rollouts=0.5, done_segments=ro.done_segments,
                     rollout_failed=[t for t in ro.failed_late if t.task != ro.done_segments[0].task])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SampleSource(experts, fine_step=1, done_rollouts=2.0)


def test_labelled_episodes_of_a_run_give_their_own_share_of_done_pairs(small_dataset, tmp_path):
    from vlac.data.dataset import LeRobotDataset
    from vlac.train.config import TrainConfig
    from vlac.train.samples import Rollouts, load_labelled, split_rollout

    # a run's episodes in the LeRobot layout split as rollouts are, by their per-frame flag
    ds = LeRobotDataset(small_dataset)
    got = load_labelled([ds], progress=False)
    wins = [i for i in range(ds.num_episodes) if ds.episode(i).success.any()]
    losses = [i for i in range(ds.num_episodes) if not ds.episode(i).success.any()]
    assert len(got.done_segments) == len(wins) >= 1 and len(got.failed_late) == len(losses) >= 1
    assert [t.source for t in got.failed_late] == [f"{ds.root}#{i}#late" for i in losses]
    assert all((~t.flags).any() for t in got.done_segments)  # the flag marks the moment: an approach
    # --labelled-first N: only the episodes labelled so far
    first = load_labelled([ds], progress=False, first=1)
    assert len(first.done_segments) + len(first.failed_late) == 1
    # an RL run's episodes flag only the last frame of a success (its outcome, not its moment): the last
    # frame is done and nothing before it becomes a not-done approach frame
    from dataclasses import replace

    from vlac.data.writer import DatasetWriter

    with DatasetWriter(tmp_path / "run", ds.features, fps=ds.fps) as w:
        for i in range(ds.num_episodes):
            ep = ds.episode(i)
            w.add_episode(replace(ep, success=np.arange(len(ep.action)) == len(ep.action) - 1 if ep.success.any()
                                  else np.zeros(len(ep.action), bool), timestamp=None))
    run = load_labelled([LeRobotDataset(tmp_path / "run")], progress=False)
    assert [t.flags.tolist() for t in run.done_segments] == [[True]] * len(wins)
    assert len(run.failed_late) == len(losses)

    # own share: the labelled pool beside the rollouts' pool and the demonstrations
    flags = np.arange(20) >= 12
    rollouts, labelled = Rollouts([], [], []), Rollouts([], [], [])
    split_rollout(rollouts, "reach-v3", _coded(20, 1), flags, "r1")
    split_rollout(rollouts, "reach-v3", _coded(20, 2), np.zeros(20, bool), "r2")
    split_rollout(labelled, "reach-v3", _coded(20, 3), flags, "l3")
    split_rollout(labelled, "reach-v3", _coded(20, 4), np.zeros(20, bool), "l4")
    experts = [Trajectory("reach-v3", _coded(30, e), str(e)) for e in (5, 6)]
    src = SampleSource(experts, fine_step=1, done_rollouts=0.25, done_segments=rollouts.done_segments,
                       rollout_failed=rollouts.failed_late, done_labelled=0.5, labelled=labelled)
    prompts, answers = src.done(np.random.default_rng(0), pairs=400)
    ids = np.array([int(p.images[0][0, 0, 1]) for p in prompts])
    assert 0.4 < np.isin(ids, (3, 4)).mean() < 0.6 and 0.15 < np.isin(ids, (1, 2)).mean() < 0.35
    for p, a in zip(prompts, answers):
        if int(p.images[0][0, 0, 1]) in (3, 4):  # a labelled pair: the success's done frame, the failure's late one
            assert (a == "1") == (int(p.images[0][0, 0, 1]) == 3)
            assert _index(p.images[0]) >= (12 if a == "1" else 10)
    only = SampleSource(experts, fine_step=1, done_labelled=1.0, labelled=labelled)
    assert {int(p.images[0][0, 0, 1]) for p in only.done(np.random.default_rng(1), pairs=50)[0]} == {3, 4}
    with pytest.raises(ValueError, match="done_labelled > 0 needs labelled episodes"):
        SampleSource(experts, fine_step=1, done_labelled=0.5, labelled=rollouts.__class__([], [], []))
    with pytest.raises(ValueError, match="must be at most 1"):
        SampleSource(experts, fine_step=1, done_rollouts=0.6, done_segments=rollouts.done_segments,
                     rollout_failed=rollouts.failed_late, done_labelled=0.6, labelled=labelled)
    with pytest.raises(ValueError, match="--done-labelled 0.3 .* --labelled"):
        TrainConfig(data=["x"], out="y", done_labelled=0.3)
    with pytest.raises(ValueError, match="--labelled-first 5 .* --labelled"):
        TrainConfig(data=["x"], out="y", labelled_first=5)
