"""`vlac critic fidelity`: the measures on rows of known answer, and the command end to end with
the built-in actor and critic on MuJoCo rollouts (true progress from the simulator)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vlac.eval.fidelity import parse_policy, ranking, task_measures
from vlac.sim.env import SimEnvConfig, SimRobotEnv
from vlac.scripts.cli import main


def _row(progress, deltas, success, first_success=None, done_at=None, policy="actor@1"):
    values = np.concatenate([[0.0], np.cumsum(deltas)])
    return {"policy": policy, "task": "reach-v3", "success": success, "first_success": first_success,
            "deltas": np.asarray(deltas, float), "p_done": np.zeros(len(deltas)), "values": values,
            "done_at": done_at, "progress": np.asarray(progress, float), "speed": np.ones(len(deltas))}


def test_measures_on_rows_with_known_answers():
    rise = [0.0, 0.3, 0.6, 0.9, 1.0]
    good = _row(rise, [0.3, 0.3, 0.3, 0.1], True, first_success=3, done_at=4)  # value follows progress
    late = _row(rise, [0.2, 0.2, 0.2, 0.2], True, first_success=3, done_at=None)  # never declared done
    bad = _row([0.0, 0.1, 0.0, -0.1, 0.0], [0.05, 0.05, 0.05, 0.05], False, done_at=4)  # a false done
    m = task_measures([good, late, bad])
    assert m["episodes"] == 3 and m["successes"] == 2
    assert m["spearman_progress"] == pytest.approx((1.0 + 1.0 + np.nan_to_num(0.0)) / 3, abs=0.35)
    assert m["auc_return"] == 1.0 and m["auc_final_value"] == 1.0  # both successes out-earn the failure
    assert m["done_fired"] == 2 and m["done_precision"] == 0.5 and m["done_recall"] == 0.5
    assert m["done_median_delay"] == 1.0
    m = task_measures([_row(rise, [0.1] * 4, True, 3, 4), _row(rise, [0.4] * 4, False)])
    assert m["auc_return"] == 0.0  # the failure earned more: ranked backwards


def test_ranking_is_kendall_tau_of_return_against_success():
    rows = []
    for policy, success, ret in (("expert", [1, 1], 0.9), ("noisy@1", [1, 0], 0.5), ("stall", [0, 0], 0.1)):
        rows += [_row([0, 1], [ret], bool(s), policy=policy) for s in success]
    assert ranking(rows, ["expert", "noisy@1", "stall"])["reach-v3"]["kendall_tau"] == pytest.approx(1.0)
    rows = [dict(r, deltas=-r["deltas"]) for r in rows]
    assert ranking(rows, ["expert", "noisy@1", "stall"])["reach-v3"]["kendall_tau"] == pytest.approx(-1.0)


def test_policy_specs():
    assert parse_policy("noisy@1.5") == ("noisy", 1.5) and parse_policy("actor@0") == ("actor", 0.0)
    with pytest.raises(ValueError, match="unknown policy 'robot'"):
        parse_policy("robot")
    with pytest.raises(ValueError, match="write actor@TEMPERATURE"):
        parse_policy("actor")
    assert parse_policy("miss@2") == ("miss", 2.0) and parse_policy("stop-short@0.9") == ("stop-short", 0.9)
    with pytest.raises(ValueError, match="stall takes no number after @"):
        parse_policy("stall@3")


def test_remaining_is_the_simulators_distance_from_done():
    with SimRobotEnv(SimEnvConfig(task="reach-v3", max_steps=5)) as env:
        env.reset(1)
        sim = env._env  # reach: the gripper's centre to the goal
        assert env.remaining() == pytest.approx(np.linalg.norm(sim.tcp_center - sim._target_pos), abs=1e-6)
    with SimRobotEnv(SimEnvConfig(task="lever-pull-v3", max_steps=5)) as env:
        env.reset(1)
        assert env.remaining() == pytest.approx(np.pi / 2, abs=0.05)  # the lever starts level, success at pi/24


def test_fidelity_command_end_to_end_and_reuse(tmp_path, capsys):
    out = tmp_path / "fid"
    args = ["critic", "fidelity", "--tasks", "reach-v3", "--episodes", "2", "--max-steps", "8",
            "--ranking-episodes", "2", "--policies", "expert,stall,actor@0", "--threads", "1"]
    main(args + ["--out", str(out)])
    report = json.loads((out / "fidelity.json").read_text())
    m = report["tasks"]["reach-v3"]
    assert m["episodes"] == 2 and np.isfinite(m["step_corr_speed"]) and np.isfinite(report["identical_frames"])
    assert set(report["ranking"]["reach-v3"]["policies"]) == {"expert", "stall", "actor@0"}
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) == 2 + 3 * 2 and all(len(r["values"]) == 9 and r["progress"][0] == 0 for r in rows)
    # the true progress is the simulator's: the expert closes on the goal
    assert np.mean([r["progress"][-1] for r in rows if r["policy"] == "expert"]) > 0.1
    assert (out / "fidelity.png").stat().st_size > 0 and (out / "ranking.png").stat().st_size > 0
    assert "Spearman(value, progress)" in (out / "report.md").read_text()
    # the report made again from episodes.jsonl alone (no model runs) is the same report
    main(["critic", "fidelity", "--out", str(out), "--rebuild"])
    assert (out / "fidelity.json").read_text() == json.dumps(report, indent=2)
    # the same rollouts scored again: nothing new rolled out, the same rewards
    main(args + ["--reuse", str(out), "--out", str(tmp_path / "again")])
    assert not [d for d in (tmp_path / "again" / "rollouts").iterdir() if d.is_dir()]  # no new rollouts, only settings
    again = [json.loads(line) for line in (tmp_path / "again" / "episodes.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(np.concatenate([r["deltas"] for r in again]),
                               np.concatenate([r["deltas"] for r in rows]), atol=1e-5)
    # the anchored reading on the same rollouts: each value is the critic's reading of (first frame,
    # that frame), and the rewards are its steps
    main(args[:8] + ["--ranking-episodes", "0", "--threads", "1", "--reading", "anchored", "--reuse", str(out),
                     "--out", str(tmp_path / "anchored")])
    anchored = [json.loads(line) for line in (tmp_path / "anchored" / "episodes.jsonl").read_text().splitlines()]
    assert len(anchored) == 2 and "every frame against the first" in (tmp_path / "anchored" / "report.md").read_text()
    from vlac.critic.critic import Critic
    from vlac.data.tasks import TASKS
    from vlac.eval.fidelity import Episode

    seed = anchored[1]["seed"]
    frames = Episode.load(out / "rollouts" / "actor@1" / "reach-v3" / f"{seed}.npz", "actor@1", "reach-v3", seed).frames
    direct = Critic.load("builtin").progress([(frames[0], frames[k]) for k in (3, 8)], TASKS["reach-v3"].instruction)
    np.testing.assert_allclose(np.asarray(anchored[1]["values"])[[3, 8]], direct, atol=1e-5)
    assert anchored[1]["values"][0] == 0 and np.sum(anchored[1]["deltas"]) == pytest.approx(anchored[1]["values"][-1])
    assert not np.allclose(anchored[1]["values"], rows[1]["values"])  # not the pair reading's value curve
    # the same rollouts through the dataset's video codec: the critic reads the decoded frames
    main(args[:8] + ["--ranking-episodes", "0", "--threads", "1", "--codec", "--reuse", str(out),
                     "--out", str(tmp_path / "codec")])
    coded = [json.loads(line) for line in (tmp_path / "codec" / "episodes.jsonl").read_text().splitlines()]
    assert "frames through the dataset video codec" in (tmp_path / "codec" / "report.md").read_text()
    from vlac.data.video import roundtrip

    first = Critic.load("builtin").progress([tuple(roundtrip(frames)[:2])], TASKS["reach-v3"].instruction)
    assert coded[1]["deltas"][0] == pytest.approx(first[0], abs=1e-5)
    assert not np.allclose(coded[1]["deltas"], rows[1]["deltas"])  # not the raw frames' rewards
    with pytest.raises(SystemExit, match="--reading 'diagonal' is not one of pair, anchored"):
        main(args + ["--reading", "diagonal", "--out", str(tmp_path / "z")])
    with pytest.raises(SystemExit, match="made with other settings max_steps 8 \\(here 9\\)"):
        main(args[:-1] + ["1", "--max-steps", "9", "--reuse", str(out), "--out", str(tmp_path / "y")])
    with pytest.raises(SystemExit, match="no rollouts/ folder"):
        main(args + ["--reuse", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])


def test_the_done_rule_is_chosen_on_one_half_and_judged_on_the_other():
    from vlac.eval.fidelity import choose_done_rule, done_outcomes
    from vlac.critic.metrics import DoneRule

    def row(success, p_done, first=None):
        return {**_row(np.linspace(0, 1, len(p_done) + 1), [0.1] * len(p_done), success, first), "p_done": np.array(p_done)}

    # successes reach p(done) 0.995 for 3 steps from step 5; failures flicker to 0.995 once
    good = [row(True, [0.1] * 5 + [0.995] * 3, first=5) for _ in range(4)]
    bad = [row(False, [0.1, 0.995, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]) for _ in range(4)]
    rows = good[:2] + bad[:2] + good[2:] + bad[2:]  # each half (even, odd positions) has both kinds
    assert done_outcomes(rows, DoneRule(0.9, 1)) == (0.5, 1.0)  # fires in every failure too
    chosen = choose_done_rule(rows)
    assert chosen["precision_held_out"] == 1.0 and chosen["recall_held_out"] == 1.0
    assert chosen["patience"] >= 2 or chosen["min_value"] > 0.2  # a longer streak or the value gate skips the flicker


def test_scripted_rollouts_alone_and_a_done_detector_on_an_rl_runs_own_episodes(expert_dataset, tmp_path, capsys):
    """`--episodes 0 --rollouts-only` saves the --policies' rollouts alone (constructed negatives
    for `vlac critic train --rollouts`); the done benchmark's --run reads an RL run's episodes and
    gives the `final` verdict of each (mean p(done) of its last 10 frames) and its AUC per window."""
    out = tmp_path / "short"
    main(["critic", "fidelity", "--tasks", "reach-v3", "--episodes", "0", "--max-steps", "30", "--seed", "60000",
          "--ranking-episodes", "2", "--policies", "stop-short", "--threads", "1", "--rollouts-only", "--out", str(out)])
    assert "2 rollouts (0 successful)" in capsys.readouterr().out
    assert [p.parent.parent.name for p in (out / "rollouts").glob("*/*/*.npz")] == ["stop-short"] * 2
    with pytest.raises(SystemExit, match="0 only with --rollouts-only"):
        main(["critic", "fidelity", "--tasks", "reach-v3", "--episodes", "0", "--out", str(tmp_path / "x")])
    # an RL run folder: its episodes (here three real recorded ones) and the loop's episodes.jsonl
    run = tmp_path / "run"
    run.mkdir()
    (run / "episodes").symlink_to(expert_dataset, target_is_directory=True)
    lines = [{"n": i + 1, "success": ok, "final_return": f} for i, (ok, f) in enumerate([(True, 0.9), (False, 0.2),
                                                                                         (True, 0.1)])]
    (run / "episodes.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    bench = tmp_path / "drift.json"
    repo = Path(__file__).parents[1]
    subprocess.run([sys.executable, "benchmarks/done_detector.py", "--critic", "builtin", "--run", str(run),
                    "--window", "2", "--out", str(bench)], check=True, cwd=repo, capture_output=True)
    got = json.loads(bench.read_text())
    from vlac.critic.critic import Critic
    from vlac.data.dataset import LeRobotDataset
    from vlac.eval.fidelity import auc

    critic, data = Critic.load("builtin"), LeRobotDataset(expert_dataset)
    want = [float(np.mean(critic.done(list(data.episode(i).images["main"][-10:]), data.episode(i).task)))
            for i in range(3)]
    assert [e["final"] for e in got["episodes"]] == pytest.approx(want, abs=1e-5)
    first, second = got["windows"]
    assert (first["episodes"], second["episodes"], first["successes"], second["failures"]) == ("1-2", "3-3", 1, 0)
    assert first["auc"] == pytest.approx(auc([want[0]], [want[1]])) and first["auc_logged"] == 1.0
    # an episode without a line (persisted open when an older vlac stopped the run): the others by their `n`
    (run / "episodes.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [lines[0], lines[2]]))
    gap = subprocess.run([sys.executable, "benchmarks/done_detector.py", "--critic", "builtin", "--run", str(run),
                          "--out", str(bench)], cwd=repo, capture_output=True, text=True)
    assert gap.returncode == 0 and "1 of the 3 episodes have no line" in gap.stdout, gap.stderr[-2000:]
    assert [e["final"] for e in json.loads(bench.read_text())["episodes"]] == pytest.approx([want[0], want[2]], abs=1e-5)
    (run / "episodes.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines + [{**lines[0], "n": 4}]))
    beyond = subprocess.run([sys.executable, "benchmarks/done_detector.py", "--run", str(run)], cwd=repo,
                            capture_output=True, text=True)
    assert beyond.returncode != 0 and "names episodes beyond the 3 of" in beyond.stderr


def test_what_the_learner_got_from_a_runs_final_verdicts(tmp_path):
    """`benchmarks/episode_reward_auc.py --group`: the outcome advantages the `final` verdicts gave each
    update, correlated with those the simulator's flag would have given (here two updates of four)."""
    flags = [True, False, True, False, True, False, False, False]
    finals = [0.9, 0.1, 0.8, 0.2, 0.1, 0.9, 0.2, 0.3]  # the first update ranked right, the second wrong
    run = tmp_path / "run"
    (run / "rl_steps").mkdir(parents=True)
    for i, (ok, f) in enumerate(zip(flags, finals)):
        steps = [{"reward": 0.01, "p_done": f} for _ in range(12)]
        (run / "rl_steps" / f"episode_{i:06d}.json").write_text(json.dumps({"success": ok, "steps_detail": steps}))
    repo = Path(__file__).parents[1]
    out = subprocess.run([sys.executable, "benchmarks/episode_reward_auc.py", str(run), "--group", "4",
                          "--thresholds", "0.5"], cwd=repo, capture_output=True, text=True, check=True).stdout
    y, r = np.array(flags, float), np.array(finals)
    want = np.mean([np.corrcoef(r[i:i + 4], y[i:i + 4])[0, 1] for i in (0, 4)])
    binary = np.mean([np.corrcoef(r[i:i + 4] >= 0.5, y[i:i + 4])[0, 1] for i in (0, 4)])  # 1 and -1/3
    assert f"`final` {want:.3f}" in out and f"`final` >= 0.5 {binary:.3f}" in out, out
    assert binary == pytest.approx(1 / 3)
    bad = subprocess.run([sys.executable, "benchmarks/episode_reward_auc.py", str(run), "--thresholds", "0.5"],
                         cwd=repo, capture_output=True, text=True)
    assert bad.returncode == 2 and "--thresholds needs it" in bad.stderr
    # --by-scene: within the episodes of one start (an episode begun at a return point is alone)
    scenes = ["a", "a", "b", "b", "c", "c", "d", "d"]
    for i, (ok, f, sc) in enumerate(zip(flags, finals, scenes)):
        steps = [{"reward": 0.01, "p_done": f} for _ in range(12)]
        (run / "rl_steps" / f"episode_{i:06d}.json").write_text(json.dumps(
            {"success": ok, "steps_detail": steps, "scene": sc, "start": [5, 3] if i == 7 else None}))
    # update 1: both starts ranked right (cosine 1); update 2: start c ranked wrong (-1), d's two apart
    out = subprocess.run([sys.executable, "benchmarks/episode_reward_auc.py", str(run), "--group", "4", "--by-scene"],
                         cwd=repo, capture_output=True, text=True, check=True).stdout
    assert "within episodes of one start" in out and "`final` 0.000" in out, out
    # undivided: start a's verdicts differ by 0.8, b's by 0.6: (0.4, -0.4, 0.3, -0.3) against (0.5, -0.5, ...)
    out = subprocess.run([sys.executable, "benchmarks/episode_reward_auc.py", str(run), "--group", "4", "--by-scene",
                          "--undivided"], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert f"`final` {(0.7 / np.sqrt(0.5) - 1) / 2:.3f}" in out, out


@pytest.mark.slow(80)
def test_rollouts_only_then_the_critic_trains_on_them(expert_dataset, small_dataset, tmp_path, capsys):
    out = tmp_path / "roll"
    main(["critic", "fidelity", "--tasks", "reach-v3", "--episodes", "2", "--max-steps", "40", "--seed", "50000",
          "--ranking-episodes", "2", "--policies", "expert,stall", "--threads", "1", "--rollouts-only",
          "--out", str(out)])
    assert "6 rollouts" in capsys.readouterr().out
    assert len(list((out / "rollouts").glob("*/reach-v3/*.npz"))) == 6
    assert not (out / "episodes.jsonl").exists()  # nothing scored
    run = tmp_path / "critic"
    main(["critic", "train", "--data", str(expert_dataset), "--rollouts", str(out), "--still-share", "0.5",
          "--init", "critic", "--batch-size", "8", "--steps", "3", "--warmup", "1", "--val-episodes", "0",
          "--done-failed", "0.3", "--done-rollouts", "0.5", "--threads", "1", "--out", str(run),
          "--labelled", str(small_dataset), "--labelled-first", "4", "--done-labelled", "0.3"])
    printed = capsys.readouterr().out
    assert "rollouts:" in printed and "still trajectories" in printed  # the stalled episodes
    assert re.search(r"labelled: 2 successful .* 2 done segments .*, 2 failed", printed)  # a run's labelled episodes
    cfg = json.loads((run / "train_config.json").read_text())
    assert cfg["rollouts"] == [str(out)] and cfg["still_share"] == 0.5 and cfg["done_rollouts"] == 0.5
    assert cfg["labelled"] == [str(small_dataset)] and cfg["done_labelled"] == 0.3
    wins, segments = re.search(r"rollouts: (\d+) successful .* (\d+) done segments", printed).groups()
    assert int(wins) == int(segments) >= 1  # a done segment per success, matched with the stalled failures
    assert (run / "model" / "model.safetensors").is_file()
    # the done-only benchmark on the same rollouts agrees with the critic's own done and the loop's rule
    bench = tmp_path / "done.json"
    subprocess.run([sys.executable, "benchmarks/done_detector.py", "--critic", str(run / "model"), "--rollouts",
                    str(out), "--policy", "expert", "--threshold", "0.5", "--patience", "2", "--out", str(bench)],
                   check=True, cwd=Path(__file__).parents[1], capture_output=True)
    got = json.loads(bench.read_text())["all"]
    from vlac.critic.critic import Critic
    from vlac.critic.metrics import DoneRule
    from vlac.data.tasks import TASKS
    from vlac.eval.fidelity import Episode, done_outcomes

    critic, rows = Critic.load(run / "model"), []
    for path in sorted((out / "rollouts" / "expert").glob("*/*.npz")):
        e = Episode.load(path, "expert", "reach-v3", 0)
        rows.append({"success": e.success, "first_success": int(np.argmax(e.flags)) if e.success else None,
                     "p_done": critic.done(list(e.frames[1:]), TASKS["reach-v3"].instruction),
                     "values": np.ones(len(e.frames))})
    want = done_outcomes(rows, DoneRule(0.5, 2, 0.0))
    assert got["episodes"] == 2 and got["successes"] == sum(r["success"] for r in rows)
    np.testing.assert_equal([got["precision"], got["recall"]], want)
    missing = subprocess.run([sys.executable, "benchmarks/done_detector.py", "--rollouts", str(out), "--policy",
                              "nobody"], cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert missing.returncode != 0 and "rollouts-only" in missing.stderr
    with pytest.raises(SystemExit, match="needs --rollouts"):
        main(["critic", "train", "--data", str(expert_dataset), "--still-share", "0.5", "--steps", "1",
              "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="--done-rollouts 0.5 needs --rollouts"):
        main(["critic", "train", "--data", str(expert_dataset), "--done-rollouts", "0.5", "--steps", "1",
              "--out", str(tmp_path / "x")])
