"""Shared fixtures: real MuJoCo simulation and real files in temporary directories."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

from vlac.data.collect import CollectConfig, collect  # noqa: E402


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """Two tasks x 2 episodes (one expert, one stall each) with a second camera."""
    out = tmp_path_factory.mktemp("data") / "small"
    collect(CollectConfig(out=str(out), tasks="reach-v3,push-v3", episodes_per_task=2, variant="gripper-cam"),
            progress=False)
    return out


@pytest.fixture(scope="session")
def expert_dataset(tmp_path_factory):
    """reach-v3 x 3 expert episodes: every episode successful, so every objective has data."""
    out = tmp_path_factory.mktemp("data") / "experts"
    collect(CollectConfig(out=str(out), tasks="reach-v3", episodes_per_task=3, behaviours="expert:1", seed=5),
            progress=False)
    return out
