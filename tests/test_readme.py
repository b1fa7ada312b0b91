"""Every command of the README's command blocks runs as written, on a tiny budget (issue 24).

The README's commands are read from the file itself, so a command that stops working, a flag that
is renamed or an output that moves fails here. Each command runs in a scratch folder with its
placeholders filled in (``DIR`` the dataset the README collects, ``PORT`` the running loop's
gateway, ``HOST`` this machine) and budget flags appended (fewer episodes, steps and threads; the
last value of a flag wins), then its outputs are checked. Commands of ``vlac rl`` and ``vlac robot
sim`` run as processes, as a user runs them; the rest in this process (the same ``main``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vlac.scripts.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# Appended to each command (the last value of a repeated flag wins): the smallest run that still
# goes through every stage of the command.
BUDGET = {
    "critic score": "--threads 1",
    "critic eval": "--threads 1 --max-episodes 1",
    "critic filter": "--threads 1",
    "critic fidelity": "--episodes 2 --max-steps 6 --ranking-episodes 1 --policies expert,stall --threads 1",
    "critic train": "--steps 2 --val-episodes 0 --threads 1",
    "actor train": "--steps 2 --val-episodes 0 --threads 1",
    "actor eval": "--episodes 1 --max-steps 6 --threads 1",
    "rl": "--episodes 2 --max-steps 6 --eval-episodes 1 --episodes-per-update 2",
    "robot sim": "--episodes 1 --max-steps 6",
}


def readme_commands() -> list[str]:
    """The `vlac ...` lines of the README's fenced command blocks, continuations joined, comments
    and the brackets around optional parts removed (the optional parts are run too)."""
    lines, inside, shell = [], False, False
    for ln in README.read_text().splitlines():
        if ln.startswith("```"):
            inside, shell = not inside, ln.strip() in ("```bash", "```")
        elif inside and shell:
            lines.append(ln)
    joined = "\n".join(lines).replace("\\\n", " ")
    out = []
    for ln in joined.splitlines():
        ln = ln.split("  #")[0].strip().replace("[", "").replace("]", "")
        if ln.startswith("vlac "):
            out.append(" ".join(ln.split()))
    return out


def _command(words: list[str]) -> str:
    """`data collect`, `rl compare`, ...; `rl` for the loop itself."""
    return "rl" if words[0] == "rl" and (len(words) < 2 or words[1] not in ("compare", "report")) else " ".join(words[:2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process(words: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "MUJOCO_GL": "egl", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.Popen([sys.executable, "-m", "vlac.scripts.cli", *words], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _finish(proc: subprocess.Popen, what: str, timeout: float = 240) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"`{what}` did not finish in {timeout:.0f} s:\n{out[-3000:]}") from None
    assert proc.returncode == 0, f"`{what}` failed:\n{out[-3000:]}"
    return out


def _gateway_port(run: Path, proc: subprocess.Popen, what: str) -> int:
    end = time.monotonic() + 120
    while not (run / "gateway.txt").is_file():
        assert proc.poll() is None, f"`{what}` ended before its gateway listened:\n{proc.communicate()[0][-3000:]}"
        assert time.monotonic() < end, f"`{what}`: no gateway after 120 s"
        time.sleep(0.3)
    return int((run / "gateway.txt").read_text().strip().rsplit(":", 1)[1])


def _prepare(cwd: Path) -> None:
    """What the README's commands assume a user has from the start: the configs."""
    shutil.copytree(ROOT / "configs", cwd / "configs")


def _media(cwd: Path) -> None:
    """What they assume once a dataset exists: a video, a reference video and a folder of frames."""
    from PIL import Image

    from vlac.data.dataset import LeRobotDataset

    for name in ("clip.mp4", "ref.mp4"):
        main(["data", "render", str(cwd / "data"), "--episode", "0", "--out", str(cwd / name)])
    (cwd / "frames_dir").mkdir()
    for i, frame in enumerate(LeRobotDataset(cwd / "data").episode(1).images["main"]):
        Image.fromarray(frame).save(cwd / "frames_dir" / f"{i}.png")


def test_readme_optional_values_are_the_cli_defaults():
    """A value the README shows as optional (`[--steps 3000]`) is the command's default."""
    from vlac.train.config import TrainConfig

    readme = README.read_text()
    assert f"[--steps {TrainConfig.steps}]" in readme
    assert f"default `{' '.join(TrainConfig(data=['x'], out='y').weights)}`" in readme


# Where each README command runs: three groups, each in its own folder, so that pytest-xdist runs them side
# by side (in a row they took 8.5 min alone on a slow 2-core machine, the suite's longest test by far). A
# group that reads a dataset collects it first with the README's own `vlac data collect` line.
GROUPS = {"data": "data-critic", "critic": "data-critic", "actor": "actor", "rl": "rl", "robot": "rl"}
NEEDS_DATA = ("data-critic", "actor")


def _group(line: str) -> str:
    first = shlex.split(line)[1]
    if first not in GROUPS:
        raise AssertionError(f"README command `{line}` belongs to no group of tests/test_readme.py: add `{first}` to GROUPS")
    return GROUPS[first]


def test_every_readme_command_is_in_a_group():
    commands = readme_commands()
    assert len(commands) >= 25, commands
    by_group = {g: [c for c in commands if _group(c) == g] for g in set(GROUPS.values())}
    assert sum(map(len, by_group.values())) == len(commands)
    assert all(by_group.values()), by_group
    groups = {" ".join(shlex.split(c)[1:3]) for c in commands}
    assert {"data collect", "critic fidelity", "actor eval", "robot keys", "rl compare"} <= groups, groups
    # `vlac robot sim ... PORT` joins the loop started by the line before it, in the same group
    for k, c in enumerate(commands):
        if c.startswith("vlac robot sim") and "PORT" in c:
            assert commands[k - 1].startswith("vlac rl "), c


# each command keeps its own time limit (`_finish`); the rl group is the longest, ~5 min alone on a slow machine
@pytest.mark.timeout(1200)
@pytest.mark.slow(300)
@pytest.mark.parametrize("group", ["rl", "data-critic", "actor"])
def test_every_readme_command_runs(group, tmp_path, monkeypatch, capsys):
    cwd = tmp_path
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("MUJOCO_GL", "egl")
    _prepare(cwd)
    every = readme_commands()
    commands = [c for c in every if _group(c) == group]
    if group in NEEDS_DATA and not commands[0].startswith("vlac data collect"):
        commands.insert(0, next(c for c in every if c.startswith("vlac data collect")))
    ran, seen, joined = [], set(), {}
    # the runs a later `vlac rl compare` sets side by side keep their (budget) evaluations
    compared = {run for c in commands if c.startswith("vlac rl compare")
                for run in _flag_values(shlex.split(c), "--runs")}
    ray_head = None
    try:
        for k, line in enumerate(commands):
            started = time.monotonic()
            text = line
            if "--ray-address HOST" in text or "tcp://HOST:" in text or "tcp://0.0.0.0:" in text:
                if ray_head is None:  # a cluster to join, on this machine
                    ray_port = _free_port()
                    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
                    ray_head = subprocess.Popen(
                        [ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(ray_port),
                         "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                    joined["cluster"] = _free_port()
                text = text.replace("HOST:6379", f"127.0.0.1:{ray_port}")
                # everything here listens on 127.0.0.1 only: the README's 0.0.0.0 is the machine's loopback
                text = re.sub(r"tcp://(HOST|0\.0\.0\.0):5555", f"tcp://127.0.0.1:{joined['cluster']}", text)
            text = re.sub(r"--console 127\.0\.0\.1:\d+", "--console 127.0.0.1:0", text)  # a free port, not the README's
            text = re.sub(r"\bDIR2\b", "data2", re.sub(r"\bDIR\b", "data", text)).replace("/some/dir", "data")
            text = re.sub(r"\bFILE\b", "configs/rl/reach-v3.yaml", text)
            words = shlex.split(text)[1:]
            if words[:2] == ["robot", "sim"] and "PORT" in text:
                text = text.replace("PORT", str(joined["loop"]))
                words = shlex.split(text)[1:]
            key = " ".join(words)
            if key in seen:
                continue  # the same command again, later in the README
            seen.add(key)
            cmd = _command(words)
            words += shlex.split(BUDGET.get(cmd, ""))
            if cmd == "rl" and words[words.index("--out") + 1] not in compared:
                words += ["--eval-episodes", "0"]  # no `rl compare` reads its evaluations: no evaluator process
            if cmd == "rl":
                nxt = commands[k + 1] if k + 1 < len(commands) else ""
                if nxt.startswith("vlac robot sim"):  # that robot joins this loop: the loop starts none itself
                    words += ["--robots", "0", "--episodes", "1"]
                    if ray_head is not None:
                        _wait_for_ray(ray_port, ray_head)
                    proc = _process(words, cwd)
                    out = words[words.index("--out") + 1]
                    joined["loop"] = _gateway_port(cwd / out, proc, line)
                    joined["proc"], joined["line"], joined["out"] = proc, line, out
                    ran.append(line)
                    continue
                _finish(_process(words, cwd), line)
                _check_rl(cwd / words[words.index("--out") + 1])
                if "--console" in words:  # the console served the run: its address was written
                    assert (cwd / words[words.index("--out") + 1] / "console.txt").read_text().startswith("http://127.0.0.1:")
            elif words[:2] == ["robot", "sim"]:
                _finish(_process(words, cwd), line, timeout=120)
                loop = joined.pop("proc")
                _finish(loop, joined["line"])
                # every episode came from the robot this line started (the loop started none)
                _check_rl(cwd / joined["out"], robot="arm-1" if "--keys" in words else "sim-reach-v3-")
            else:
                try:
                    main(words)
                except SystemExit as e:
                    assert e.code in (0, None), f"`{line}` exited with {e.code}: {capsys.readouterr().err[-2000:]}"
                _check_outputs(cwd, words, line)
                if words[:2] == ["data", "collect"] and group == "data-critic" and not (cwd / "data2").exists():
                    shutil.copytree(cwd / "data", cwd / "data2")
                    _media(cwd)
            ran.append(line)
            print(f"{time.monotonic() - started:6.1f} s  {line}")  # shown with `pytest -rP`
    finally:
        if "proc" in joined:
            os.killpg(joined["proc"].pid, signal.SIGKILL)
        if ray_head is not None:
            os.killpg(ray_head.pid, signal.SIGTERM)
            ray_head.wait(timeout=60)
    assert set(ran) == set(commands), set(commands) - set(ran)  # every one of them ran


def _flag_values(words: list[str], flag: str) -> list[str]:
    """The values after ``flag`` up to the next flag (space- or comma-separated)."""
    k = words.index(flag) + 1
    values = []
    while k < len(words) and not words[k].startswith("--"):
        values += words[k].split(",")
        k += 1
    return values


def _wait_for_ray(port: int, head: subprocess.Popen) -> None:
    end = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < end and head.poll() is None, "ray start --head did not come up"
            time.sleep(0.5)


def _check_rl(run: Path, robot: str = "") -> None:
    stats = json.loads((run / "loop_stats.json").read_text())
    assert stats["episodes"] >= 1 and (run / "report.md").is_file() and (run / "episodes" / "meta" / "info.json").is_file()
    rows = [json.loads(x) for x in (run / "episodes.jsonl").read_text().splitlines()]
    assert rows and all(np.isfinite(r["return"]) or np.isfinite(r.get("oracle_return", np.nan)) for r in rows)
    assert all(r["robot"].startswith(robot) for r in rows), (robot, rows)


def _check_outputs(cwd: Path, words: list[str], line: str) -> None:
    """What each command promises: its --out exists (a folder with files in it), and the named files."""
    if "--out" in words:
        out = cwd / words[len(words) - 1 - words[::-1].index("--out") + 1]
        assert out.exists() and (out.is_file() or any(out.iterdir())), f"`{line}` wrote nothing to {out}"
    sub = " ".join(words[:2])
    promised = {
        "critic score": ["scores.json", "scores.png"],
        "critic eval": ["report.md", "report.json"],
        "critic fidelity": ["rollouts/settings.json"] if "--rollouts-only" in words else ["fidelity.png"],
        "critic train": ["model/config.json"],
        "actor train": ["model/config.json"],
        "actor eval": ["success.png"],
    }.get(sub, [])
    for name in promised:
        assert (out / name).is_file(), f"`{line}` did not write {name}"
    if sub == "critic report":
        assert (cwd / words[words.index("--eval") + 1] / "report.md").is_file()
    if sub == "robot keys":
        name = words[words.index("--name") + 1]
        assert (out / f"{name}.key").is_file() and (out / f"{name}.pub").is_file()
