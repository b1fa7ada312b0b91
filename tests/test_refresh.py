"""The done probe kept up with the policy: `vlac rl --critic-refresh-every N` retrains the critic by
its own recipe on the episodes an operator labelled at the console and swaps it in, over real
ZeroMQ robots, a real Ray cluster and real HTTP."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from vlac.scripts.cli import main


def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-Operator": "ann"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _state(url):
    with urllib.request.urlopen(url + "api/state", timeout=30) as r:
        return json.loads(r.read())


def _until(check, seconds, what):
    end = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.3)


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


@pytest.mark.slow(150)
def test_operator_labels_at_the_console_retrain_the_done_probe_and_the_run_scores_with_it(expert_dataset, tmp_path):
    probe = tmp_path / "probe"
    main(["critic", "train", "--data", str(expert_dataset), "--init", "critic", "--weights", "done:1.0",
          "--done-labels", "flag", "--steps", "2", "--batch-size", "8", "--val-episodes", "0", "--threads", "1",
          "--out", str(probe)])
    out = tmp_path / "run"
    # long episodes with the done off: every episode here ends when the operator ends it
    cmd = [sys.executable, "-m", "vlac.scripts.cli", "rl", "--out", str(out), "--tasks", "reach-v3", "--robots", "2",
           "--episodes", "4", "--max-steps", "2000", "--eval-episodes", "0", "--episodes-per-update", "2",
           "--done-threshold", "1.5", "--critic", str(probe / "model"), "--console", "127.0.0.1:0",
           "--critic-refresh-every", "2", "--critic-refresh-steps", "2",
           # a robot starved for 10 s on a busy 2-core machine would be reported lost and its episode stored
           # as a fifth (the run would end before the operator's last): losing robots is not this test's subject
           "--lost-after", "120"]
    loop = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TQDM_DISABLE": "1", "MUJOCO_GL": "egl"})
    console = None
    try:
        console = _until(lambda: (out / "console.txt").is_file() and (out / "console.txt").read_text().strip(),
                         180, "the console")

        last: dict = {}

        def end_each(labels):
            """End each robot's next open episode once it has a few steps (a training episode has at least 4 frames), with the given verdict."""
            for robot, label in labels:
                def open_one():
                    s = _state(console)["robots"].get(robot)
                    return s is not None and s["steps"] >= 8 and s["episode"] is not None and s["episode"] != last.get(robot)
                _until(open_one, 120, f"{robot}'s episode")
                last[robot] = _state(console)["robots"][robot]["episode"]
                _post(f"{console}api/robots/{robot}/end", {"label": label})

        end_each([("sim-0", "success"), ("sim-1", "failure")])
        # the operator holds both robots while the probe retrains (their observations wait unanswered, so
        # the training has the CPU), then lets them go on under the refreshed critic
        for robot in ("sim-0", "sim-1"):
            _post(f"{console}api/robots/{robot}/pause", {})
        refreshes = _until(lambda: _lines(out / "critic_refresh.jsonl"), 240, "the refreshed critic")
        for robot in ("sim-0", "sim-1"):
            _post(f"{console}api/robots/{robot}/resume", {})
        time.sleep(3.0)  # the loop swaps it in between two scoring calls
        end_each([("sim-0", "none"), ("sim-1", "none")])
        text, _ = loop.communicate(timeout=240)
    except AssertionError as e:  # say what the loop and the console saw, not only what was awaited
        state = _state(console) if console else None
        loop.kill()
        raise AssertionError(f"{e}\nconsole state: {state}\nloop output (tail):\n{loop.communicate()[0][-4000:]}") from None
    finally:
        loop.kill()
    assert loop.returncode == 0, text[-3000:]
    labels = _lines(out / "labels.jsonl")
    assert sorted((r["success"], r["by"]) for r in labels) == [(False, "operator"), (True, "operator")]  # "none": unlabelled
    assert refreshes[0]["episodes"] == 2 and refreshes[0]["labelled"] == 2 and refreshes[0]["successes"] == 1
    model = out / "critic-refresh" / "r2" / "model"
    assert refreshes[0]["model"] == str(model) and (model / "model.safetensors").is_file()
    made = json.loads((out / "critic-refresh" / "r2" / "train_config.json").read_text())
    # the probe's own recipe, with the run's labelled episodes added
    assert made["weights"] == ["done:1.0"] and made["done_labels"] == "flag" and made["data"] == [str(expert_dataset)]
    assert made["labelled"] == [str(out / "episodes")] and made["labels"] == [str(out / "labels.jsonl")]
    assert made["done_labelled"] == 0.25 and made["steps"] == 2 and made["threads"] == 1
    assert "labelled: 1 successful" in (out / "critic-refresh" / "r2.log").read_text()
    assert "critic refreshed after 2 episodes: scoring with" in text
    assert json.loads((out / "loop_stats.json").read_text())["critic_refreshes"] == 1


def test_critic_refresh_needs_a_recipe_and_an_operator(tmp_path):
    from vlac.rl.config import RLConfig

    with pytest.raises(ValueError, match="has no train_config.json beside it"):
        RLConfig(critic="builtin", critic_refresh_every=10, critic_labels="simulated-operator")
    (tmp_path / "model").mkdir()
    (tmp_path / "train_config.json").write_text("{}")
    with pytest.raises(ValueError, match="--console HOST:PORT"):
        RLConfig(critic=str(tmp_path / "model"), critic_refresh_every=10)
    with pytest.raises(ValueError, match="must be one of operator, simulated-operator"):
        RLConfig(critic=str(tmp_path / "model"), critic_refresh_every=10, critic_labels="flag")
    with pytest.raises(ValueError, match="--critic-refresh-from 'latest' must be one of recipe, current"):
        RLConfig(critic=str(tmp_path / "model"), critic_refresh_every=10, critic_labels="simulated-operator",
                 critic_refresh_from="latest")
    with pytest.raises(ValueError, match="--critic-label-fraction 0.0 must be in"):
        RLConfig(critic=str(tmp_path / "model"), critic_refresh_every=10, critic_labels="simulated-operator",
                 critic_label_fraction=0.0)
    RLConfig(critic=str(tmp_path / "model"), critic_refresh_every=10, critic_labels="simulated-operator")


@pytest.mark.parametrize("start", ["recipe", "current"])
def test_a_refresh_retrains_from_the_recipe_or_fine_tunes_the_current_critic(tmp_path, start):
    from vlac.rl.refresh import CriticRefresh, RefreshRules

    (tmp_path / "probe" / "model").mkdir(parents=True)
    recipe = {"data": ["demos"], "rollouts": ["rollouts"], "init": "critic", "steps": 300, "done_rollouts": 0.5,
              "weights": ["done:1.0"], "seed": 3, "threads": 2}
    (tmp_path / "probe" / "train_config.json").write_text(json.dumps(recipe))
    run = tmp_path / "run"
    (run / "critic-refresh").mkdir(parents=True)
    # a resumed run: it scores with its newest refreshed critic, which a fine-tune starts from
    (run / "critic_refresh.jsonl").write_text(json.dumps({"episodes": 10, "model": str(run / "critic-refresh/r10/model")}) + "\n")
    refresh = CriticRefresh(run, str(tmp_path / "probe" / "model"), RefreshRules(10, "simulated-operator", 0.25, 40, start))
    made = json.loads(refresh._config(20, run / "critic-refresh" / "r20").read_text())
    assert made["init"] == ("critic" if start == "recipe" else str(run / "critic-refresh/r10/model"))
    assert made["steps"] == 40 and made["seed"] == 23 and made["threads"] == 1 and made["data"] == ["demos"]
    assert made["done_rollouts"] == 0.25 and made["done_labelled"] == 0.25 and made["out"] == str(run / "critic-refresh/r20")


@pytest.mark.parametrize("fraction, labelled", [(1.0, list(range(12))), (0.25, [3, 7, 11]), (0.1, [9]),
                                                (0.5, [1, 3, 5, 7, 9, 11])])
def test_the_simulated_operator_labels_its_share_of_the_episodes_and_the_operator_every_verdict(tmp_path, fraction, labelled):
    from vlac.rl.refresh import CriticRefresh, RefreshRules

    (tmp_path / "probe" / "model").mkdir(parents=True)
    (tmp_path / "probe" / "train_config.json").write_text("{}")
    run = tmp_path / "run"
    run.mkdir()
    rules = RefreshRules(10, "simulated-operator", 0.25, 0, fraction=fraction)
    refresh = CriticRefresh(run, str(tmp_path / "probe" / "model"), rules)
    for i in range(12):
        refresh.label(i, None, i % 3 == 0)
    assert sorted(refresh.labels) == labelled
    assert all(refresh.labels[i] == (i % 3 == 0) for i in labelled)
    refresh.label(12, False, True)  # an operator's verdict is kept whatever the share, and wins over the flag
    assert refresh.labels[12] is False
    # a resumed run reads the same labels back and labels the same share from there on
    again = CriticRefresh(run, str(tmp_path / "probe" / "model"), rules)
    assert again.labels == refresh.labels
    assert sum(rules.simulated_labels(i) for i in range(1000)) == round(1000 * fraction)
