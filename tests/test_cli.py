"""The vlac command end to end, as a user types it."""

import subprocess
import sys

import pytest

from vlac.scripts.cli import main


def _vlac(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "vlac.scripts.cli", *args], capture_output=True, text=True)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_collect_then_info_as_in_the_readme(tmp_path):
    out = tmp_path / "demo"
    p = _vlac("data", "collect", "--tasks", "reach-v3,push-v3", "--episodes-per-task", "2", "--out", str(out))
    assert "4 episodes collected" in p.stdout
    info = _vlac("data", "info", str(out)).stdout
    assert "episodes  4" in info and "reach-v3" in info and "stall" in info
    again = _vlac("data", "collect", "--tasks", "reach-v3,push-v3", "--episodes-per-task", "2", "--out", str(out))
    assert "0 episodes collected (4 already present)" in again.stdout


def test_bad_names_fail_at_once_with_valid_names(tmp_path):
    p = _vlac("data", "collect", "--tasks", "reach-v3,teleport-v3", "--out", str(tmp_path / "x"), check=False)
    assert p.returncode != 0 and "teleport-v3" in p.stderr and "push-v3" in p.stderr
    p = _vlac("data", "collect", "--variant", "disco", "--out", str(tmp_path / "x"), check=False)
    assert p.returncode != 0 and "table-dark" in p.stderr
    p = _vlac("data", "info", str(tmp_path / "missing"), check=False)
    assert p.returncode != 0 and "does not exist" in p.stderr
    assert not (tmp_path / "x").exists()


def test_config_file_and_render(tmp_path, small_dataset, capsys):
    cfg = tmp_path / "collect.yaml"
    cfg.write_text(f"tasks: reach-v3\nepisodes_per_task: 1\nimage_size: 48\nout: {tmp_path / 'from_yaml'}\n")
    main(["data", "collect", "--config", str(cfg), "--seed", "3"])
    assert "1 episodes collected" in capsys.readouterr().out
    main(["data", "render", str(small_dataset), "--episode", "1", "--out", str(tmp_path / "ep.png")])
    main(["data", "render", str(small_dataset), "--episode", "1", "--out", str(tmp_path / "ep.mp4")])
    assert (tmp_path / "ep.png").stat().st_size > 10_000 and (tmp_path / "ep.mp4").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="must end in .png"):
        main(["data", "render", str(small_dataset), "--out", str(tmp_path / "ep.gif")])


BLOCK_TRANSFORMERS = '''import sys


class _NoTransformers:
    """Import hook: behave as an install without the "model" extra's transformers."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "transformers":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoTransformers())
'''


def test_critic_score_without_the_model_extra(tmp_path):
    """--help prints; running it names the extra to install, in one line, before reading data."""
    import os

    (tmp_path / "sitecustomize.py").write_text(BLOCK_TRANSFORMERS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))

    def run(*args):
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)

    assert run("-c", "import transformers").returncode != 0  # the hook is in force in these processes
    p = run("-m", "vlac.scripts.cli", "critic", "score", "--help")
    assert p.returncode == 0 and "usage: vlac critic score" in p.stdout and "--reference-episode" in p.stdout, p.stderr
    p = run("-m", "vlac.scripts.cli", "critic", "score", "--dataset", str(tmp_path / "no-such-dataset"),
            "--out", str(tmp_path / "score"))
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
    assert "transformers" in p.stderr and "pip install 'vlac[model]'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_first_hour_errors_and_help_read_as_one_line(tmp_path, capsys, small_dataset):
    """Each of these ended in a traceback (or listed commands twice) for a new user (issue 24)."""
    import shutil

    from vlac.critic.critic import DEFAULT_CHECKPOINT
    from vlac.train.trainer import TrainConfig
    from vlac.model import CheckpointError
    from vlac.model.vlm import VLM

    main(["--help"])
    usage = capsys.readouterr().out
    assert usage.count("calibrate-done") == 1 and usage.count("repair") == 1  # each command once
    with pytest.raises(SystemExit, match="unknown task\\(s\\) \\['reach-v9'\\]"):
        main(["actor", "eval", "--tasks", "reach-v9", "--episodes", "1", "--out", str(tmp_path / "e")])
    with pytest.raises(SystemExit, match="episode 99 is not in .*: it has 4 episodes \\(0 to 3\\)"):
        main(["data", "render", str(small_dataset), "--episode", "99", "--out", str(tmp_path / "x.png")])
    ck = tmp_path / "no-tokenizer"
    shutil.copytree(DEFAULT_CHECKPOINT, ck)
    (ck / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="has no tokenizer"):  # not transformers' sentencepiece advice
        VLM.load(ck)
    weights = ["progress:0.5", "one_shot:0.3", "done:0.1", "describe:0.1"]
    mix = TrainConfig(data=[str(small_dataset)], out=str(tmp_path / "m"), weights=weights).mixture()
    assert mix == {"progress": 0.5, "one_shot": 0.3, "done": 0.1, "describe": 0.1}  # not 0.5000000000000001


def test_rl_report_gives_units_and_fits_a_short_run(tmp_path):
    import json

    from vlac.rl.report import write_report

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"n": k + 1, "robot": "sim-0", "task": "t", "episode": k, "steps": 10, "reason": "limit",
             "success": False, "return": 0.1 * k} for k in range(4)]
    (run / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "loop_stats.json").write_text(json.dumps({"obs_to_action_median": 0.777, "episodes_per_hour": 67.19}))
    (run / "rl_config.json").write_text(json.dumps({"learner": {"reward": "oracle-dense"}}))
    # evaluated at 0, at 4 and again at 4 after the last updates (drawn as a star, not a jump)
    evals = [{"episodes": n, "version": v, "t": s, "success": s} for n, v, s in ((0, 0, 0.1), (4, 1, 0.2), (4, 2, 0.3))]
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    md = write_report(run).read_text()
    assert "evaluation success, last | 0.30" in md
    assert "Greedy actions" in md
    (run / "eval.jsonl").write_text("".join(json.dumps({**r, "temperature": 0.0, "mean": True}) + "\n" for r in evals))
    assert "Each number nearest its expected value under the policy at temperature 1." in write_report(run).read_text()
    # a run whose evaluations read the actions in two ways says so, row by row
    (run / "eval.jsonl").write_text("".join(json.dumps({**r, "temperature": 1.0 if r["version"] == 2 else 0.0}) + "\n"
                                            for r in evals))
    mixed = write_report(run).read_text()
    assert "in different ways (column `decoding`)" in mixed and "| 0.30 | sampled at T=1 |" in mixed and "| greedy |" in mixed
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    assert "obs to action median (s) | 0.777" in md and "episodes per hour (episodes/h) | 67.2" in md
    assert "first 2 episodes" in md and "first 20" not in md  # a 4-episode run: its two halves
    assert "| t | 4 | 0 | 0 | n/a | n/a |" in md  # no done, no success: undefined, not NaN
    assert "ORACLE dense: simulator's shaped reward (reference arm)" in md and "A reference arm" in md
    # a final arm's rows and curve give the verdict it trained on, not the critic's dense sum
    (run / "rl_config.json").write_text(json.dumps({"learner": {"reward": "final"}}))
    rows = [{**r, "final_return": f} for r, f in zip(rows, (0.0, 0.5, 0.5, 1.0))]
    (run / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = write_report(run).read_text()
    assert "mean critic's final verdict, last 2 episodes | 0.75" in md and "mean critic return" not in md
    # the oracle-sparse arm trains on the flag and its episodes end there, not at a critic's done
    (run / "rl_config.json").write_text(json.dumps({"learner": {"reward": "oracle-sparse"}}))
    rows = [{**r, "return": float("nan"), "success": k % 2 == 1, "reason": "done" if k % 2 else "limit"}
            for k, r in enumerate(rows)]
    (run / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = write_report(run).read_text()
    assert "mean simulator success (return), last 2 episodes | 0.50" in md and "critic's done" not in md
    assert "episodes ended at the simulator's success flag | 2" in md
    # an episode cut by a stop (SIGTERM, Ctrl-C) has no success flag: the report still draws, without it
    rows.append({**rows[-1], "n": 5, "episode": 4, "steps": 1, "reason": "abort", "success": None})
    (run / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = write_report(run).read_text()
    assert "mean simulator success (return), last 2 episodes | 1.00" in md and (run / "curves.png").is_file()
    assert "simulator success among training episodes | 0.50" in md  # of the 4 with a flag, not 2 of 5
    # robots with a control period that often held still for want of an action in time: said, with what to do
    assert "did not keep up" not in md
    stats = {"obs_to_action_p99": 0.219, "held_still": 45, "transitions": 83}
    (run / "loop_stats.json").write_text(json.dumps(stats))
    md = write_report(run).read_text()
    assert "held still (no action within their control period) | 45 of 83" in md
    assert "**The loop did not keep up with the robots.** In 45 of 83 steps (54%)" in md and "p99 0.219 s" in md
    (run / "loop_stats.json").write_text(json.dumps({**stats, "held_still": 5}))
    md = write_report(run).read_text()
    assert "| 5 of 83 |" in md and "did not keep up" not in md  # 6%: under the warning's 10%


def test_readme_flag_tables_match_the_cli():
    """Every `--flag` [default] in the README's flag tables is the command's own default (the README
    and the CLI drifted apart before)."""
    import dataclasses
    import re
    from pathlib import Path

    from vlac.sim.collect import CollectConfig
    from vlac.rl.learner import LearnerConfig
    from vlac.scripts.data import RepairConfig

    configs = {"vlac data collect": CollectConfig, "vlac data repair": RepairConfig}
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    checked = 0

    def default_of(f):
        if f.default_factory is not dataclasses.MISSING:  # a list, written space-separated
            return " ".join(str(x) for x in f.default_factory())
        return f.default

    def defaults(command: str) -> dict:
        if command == "vlac rl learner":  # the nested learner settings: --learner.NAME
            return {f"learner.{f.name}": default_of(f) for f in dataclasses.fields(LearnerConfig)}
        return {f.name: default_of(f) for f in dataclasses.fields(configs[command])}

    # "`vlac data collect` flags ...", and "`vlac rl` learner flags ..." for the nested learner settings
    tables = r"`(vlac [a-z]+(?: [a-z-]+)?)`( learner)? flags \(defaults in brackets\):\n\n((?:\|.*\n)+)"
    found = [(command + learner, body) for command, learner, body in re.findall(tables, readme)]
    assert {command for command, _ in found} == {*configs, "vlac rl learner"}, [c for c, _ in found]
    for command, body in found:
        fields = defaults(command)
        for flag, default in re.findall(r"`--([a-z.-]+)`(?: / `--(?:learner\.)?no-[a-z.-]+`)? \[`?([^`\]]*)`?\]", body):
            value = fields[flag.replace("-", "_")]
            expected = {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) else str(value)
            assert default == expected, f"README says {command} --{flag} [{default}], the CLI's default is {value!r}"
            checked += 1
    assert checked >= 16, checked


def test_rl_compare_and_report_are_vlac_commands(tmp_path, capsys):
    import json

    from vlac.scripts.cli import main

    runs = []
    for name, reward, successes in (("dense", "dense", (0.1, 0.3)), ("sparse", "oracle-sparse", (0.1, 0.2))):
        run = tmp_path / name
        run.mkdir()
        (run / "rl_config.json").write_text(json.dumps({"learner": {"reward": reward}}))
        (run / "eval.jsonl").write_text("".join(json.dumps({"episodes": 4 * k, "version": k, "t": s, "success": s}) + "\n"
                                                for k, s in enumerate(successes)))
        (run / "episodes.jsonl").write_text(json.dumps({"n": 1, "robot": "sim-0", "task": "t", "episode": 0, "steps": 3,
                                                        "reason": "limit", "success": False, "return": 0.1}) + "\n")
        runs.append(str(run))
    main(["rl", "compare", "--runs", ",".join(runs), "--names", "critic,oracle", "--out", str(tmp_path / "cmp.png")])
    assert (tmp_path / "cmp.png").stat().st_size > 0 and "different decodings" not in capsys.readouterr().out
    # runs evaluated in different ways are not comparable: said, and each run's decoding is in the legend
    mean_evals = [{**json.loads(x), "temperature": 0.0, "mean": True} for x in (tmp_path / "sparse" / "eval.jsonl").read_text().splitlines()]
    (tmp_path / "sparse" / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in mean_evals))
    main(["rl", "compare", "--runs", ",".join(runs), "--names", "critic,oracle", "--out", str(tmp_path / "cmp.png")])
    assert "different decodings (critic: greedy; oracle: mean at T=1)" in capsys.readouterr().out
    # the noise band: binomial standard error over the evaluation episodes, which rl_config.json
    # gives per task (older runs) or eval.jsonl per evaluation (all tasks together)
    from vlac.rl.report import standard_errors

    assert standard_errors(runs[0], [{"t": 0.3, "success": 0.3}]) is None  # the count is unknown: no band
    (tmp_path / "dense" / "rl_config.json").write_text(json.dumps({"learner": {"reward": "dense"}, "eval_episodes": 20}))
    assert standard_errors(runs[0], [{"t": 0.3, "success": 0.3}]) == pytest.approx([0.1025], abs=1e-4)
    assert standard_errors(runs[0], [{"a": 0.5, "b": 0.5, "success": 0.5, "eval_episodes": 100}]) == pytest.approx([0.05])
    main(["rl", "report", runs[0]])
    assert "evaluation success, last | 0.30" in (tmp_path / "dense" / "report.md").read_text()
    with pytest.raises(SystemExit, match="no eval.jsonl or episodes.jsonl in .*nowhere"):
        main(["rl", "compare", "--runs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.png")])
    # a run not evaluated (--eval-episodes 0) is drawn by its training episodes' success, per block
    from vlac.rl.report import training_success

    flags = [True, False, None, True] * 10 + [True]  # None: an episode cut by a stop, left out of its block
    (tmp_path / "quiet").mkdir()
    (tmp_path / "quiet" / "episodes.jsonl").write_text("".join(json.dumps({"n": k + 1, "success": f}) + "\n"
                                                               for k, f in enumerate(flags)))
    x, y = training_success([{"success": f} for f in flags], 20)
    assert list(x) == [20, 40] and y == pytest.approx([2 / 3, 2 / 3])  # the 41st episode alone is no block
    main(["rl", "compare", "--runs", str(tmp_path / "quiet"), runs[0], "--out", str(tmp_path / "q.png")])
    assert (tmp_path / "q.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="--names has 1 labels for 2 runs"):
        main(["rl", "compare", "--runs", ",".join(runs), "--names", "one", "--out", str(tmp_path / "x.png")])
    # a label with spaces left unquoted in a script: one line naming the labels, before any actor loads
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["actor", "eval", "--actor", str(tmp_path / "none"), "--names", "oracle", "final", "arm",
              "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert "--names gives 3 labels (oracle, final, arm)" in err and not (tmp_path / "ev").exists()
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err  # one line, not tyro's box
    # a nested config's rejection (the learner's) is one line too, with tyro's usage-error status
    with pytest.raises(SystemExit) as stop:
        main(["rl", "--learner.advantage", "bad", "--out", str(tmp_path / "rl")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.strip() == "error: learner.advantage 'bad' must be one of gae, outcome", err


def test_every_readme_command_names_a_real_command_and_real_flags(capsys):
    """Each `vlac ...` command of the README (command blocks and inline) is a command of the CLI and
    uses only flags that command has (the README and the CLI drifted apart before)."""
    import re
    import shlex
    from pathlib import Path

    from vlac.scripts.cli import main

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    inside, block = False, []
    for ln in readme.splitlines():  # the lines of fenced blocks (fences toggle)
        if ln.startswith("```"):
            inside = not inside
        elif inside:
            block.append(ln)
    lines = [ln.split("  #")[0].strip() for ln in "\n".join(block).replace("\\\n", " ").splitlines()]
    lines += re.findall(r"`(vlac [^`]+)`", readme)
    lines += ["vlac rl compare " + ln.split("vlac.rl.report", 1)[1] for ln in lines if "-m vlac.rl.report " in ln]
    commands = [ln[ln.index("vlac "):] for ln in lines if re.match(r"^(\S+ )?vlac [a-z]", ln.strip())]
    # and the commands `make demo` (the README's first command) runs
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text().replace("\\\n", " ")
    demo = [ln.strip().replace("$(BIN)/", "") for ln in makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0].splitlines()]
    commands += [ln for ln in demo if ln.startswith("vlac ")]
    assert sum(ln.startswith("vlac ") for ln in demo) >= 5, demo
    flags_of: dict = {}
    checked = 0
    for line in commands:
        words = shlex.split(line.replace("[", " ").replace("]", " "))[1:]
        if not words or words[0].startswith("-"):
            continue
        sub = words[:2] if words[0] != "rl" or (len(words) > 1 and words[1] in ("compare", "report")) else words[:1]
        if len(sub) == 2 and sub[1].startswith("-"):
            continue  # `vlac rl --help` style
        key = " ".join(sub)
        if key not in flags_of:
            with pytest.raises(SystemExit) as ex:
                main([*sub, "--help"])
            assert ex.value.code in (0, None), f"README names `vlac {key}`, which the CLI does not have"
            flags_of[key] = set(re.findall(r"--[a-z][\w.-]*", capsys.readouterr().out)) | {"--config", "--help"}
        used = [w.split("=")[0] for w in words if w.startswith("--")]
        unknown = [f for f in used if f not in flags_of[key]]
        assert not unknown, f"README: `{line}` uses {unknown}, which `vlac {key}` does not take"
        checked += 1
    assert checked >= 30 and {"rl", "rl compare", "critic fidelity", "data collect", "actor eval"} <= set(flags_of)


def test_list_flags_split_commas_but_keep_labels_with_spaces_whole():
    from vlac.utils.cli import _split_lists

    flags = {"--tasks", "--names"}
    assert _split_lists(["--tasks", "reach-v3,push-v3", "lever-pull-v3"], flags) == \
        ["--tasks", "reach-v3", "push-v3", "lever-pull-v3"]
    assert _split_lists(["--tasks=reach-v3,push-v3"], flags) == ["--tasks", "reach-v3", "push-v3"]
    assert _split_lists(["--names", "replay, seed 0", "oracle, seed 0", "--out", "a,b"], flags) == \
        ["--names", "replay, seed 0", "oracle, seed 0", "--out", "a,b"]
    assert _split_lists(["--names=replay, seed 1"], flags) == ["--names", "replay, seed 1"]
