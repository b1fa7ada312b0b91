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
