"""Datasets written by the real lerobot library (tests/data/lerobot, see its README): vlac reads
them, resumes collecting into one LeRobot appended to, appends to them the way LeRobot does, and
aggregates meta/stats.json as LeRobot does."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from lerobot_layout import assert_lerobot_layout

from vlac.sim.collect import CollectConfig, collect
from vlac.data.dataset import FrameDataset, LeRobotDataset
from vlac.data.episode import Episode
from vlac.data.lerobot_format import DatasetError
from vlac.data.stats import STAT_KEYS, merge_stats
from vlac.data.writer import DatasetWriter
from vlac.scripts.cli import main

DATA = Path(__file__).parent / "data" / "lerobot"
FIXTURES = ["lerobot-video", "lerobot-image", "vlac-appended-by-lerobot"]


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATA / name, tmp_path / name))


def _bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", FIXTURES)
def test_datasets_lerobot_wrote_are_read_and_checked(name, capsys):
    root = DATA / name
    assert_lerobot_layout(root)  # the rules the other tests hold vlac to, true of LeRobot's own output
    main(["data", "info", str(root), "--check"])
    info = json.loads((root / "meta/info.json").read_text())
    assert f"all {info['total_episodes']} episodes decode" in capsys.readouterr().out
    ds = LeRobotDataset(root)
    cam = ds.camera_keys[0]
    h, w = info["features"]["observation.images." + cam]["shape"][:2]
    lengths = [ds.episode(i).length for i in range(ds.num_episodes)]
    assert sum(lengths) == info["total_frames"]
    last = ds.episode(ds.num_episodes - 1)
    assert last.images[cam].shape == (lengths[-1], h, w, 3)
    frames = FrameDataset(ds)
    item = frames[len(frames) - 1]  # the last frame of the last episode (packed or appended file)
    assert item["images"][cam].shape == (h, w, 3) and item["task"] == last.task
    assert np.array_equal(item["state"], last.state[-1])


def test_collect_resumes_a_dataset_lerobot_appended_to(tmp_path):
    """LeRobot lists its episode in a second episodes file; resuming must keep it (it was deleted)."""
    root = _copy("vlac-appended-by-lerobot", tmp_path)
    before = _bytes(root)
    lerobot_episode = LeRobotDataset(root).episode(4)
    s = collect(CollectConfig(out=str(root), tasks="reach-v3", episodes_per_task=3), progress=False)
    assert (s["committed"], s["skipped"], s["episodes"]) == (1, 2, 6)
    after = _bytes(root)
    kept = [k for k in before if not k.startswith("meta/") or k.startswith("meta/episodes/")]
    assert all(after[k] == before[k] for k in kept), "a file of the existing episodes changed"
    assert "meta/episodes/chunk-000/file-002.parquet" in after  # the new session's own episodes file
    assert_lerobot_layout(root)
    ds = LeRobotDataset(root)
    again = ds.episode(4)
    assert again.task == "a new task" and np.array_equal(again.state, lerobot_episode.state)
    assert np.array_equal(again.images["main"], lerobot_episode.images["main"])
    assert ds.episode(5).task == "reach the red goal point with the gripper" and ds.meta(5)["plan_index"] == 2
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert tasks.loc["a new task", "task_index"] == 2  # the index LeRobot's frames use
    s = collect(CollectConfig(out=str(root), tasks="reach-v3", episodes_per_task=3), progress=False)
    assert (s["committed"], s["episodes"]) == (0, 6)


def _synthetic(task: str, n: int, seed: int, shape=(64, 80)) -> Episode:
    """Smooth moving gradients (what a codec keeps well) and random state and action."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    frames = np.stack([np.stack([(x * 3 + 5 * t) % 256, (y * 4) % 256, np.full_like(x, 40 * seed)], -1)
                       for t in range(n)]).astype(np.uint8)
    return Episode(task=task, images={"front": frames},
                   state=rng.normal(size=(n, 6)).astype(np.float32), action=rng.normal(size=(n, 6)).astype(np.float32),
                   meta={"behaviour": "teleop", "seed": seed})


@pytest.mark.parametrize("name", ["lerobot-video", "lerobot-image"])
def test_vlac_appends_to_a_lerobot_dataset_as_lerobot_does(name, tmp_path):
    root = _copy(name, tmp_path)
    before = _bytes(root)
    info = json.loads((root / "meta/info.json").read_text())
    eps = [_synthetic("open the drawer", 12, 1), _synthetic("stack the blocks", 9, 2)]
    with DatasetWriter(root, info["features"], fps=info["fps"]) as w:
        assert [w.add_episode(ep) for ep in eps] == [3, 4]
    assert_lerobot_layout(root)
    after = _bytes(root)
    assert all(after[k] == before[k] for k in before if not k.startswith("meta/") or "episodes/" in k)
    new_rows = pq.read_table(root / "meta/episodes/chunk-000/file-001.parquet")
    assert new_rows.column("episode_index").to_pylist() == [3, 4]
    assert "behaviour" not in new_rows.column_names  # LeRobot's first file has no such column
    new_info = json.loads((root / "meta/info.json").read_text())
    assert new_info["robot_type"] == "synthetic_arm" and new_info["total_tasks"] == 3
    assert {k: v for k, v in new_info.items() if not k.startswith("total") and k not in ("splits", "features")} == \
        {k: v for k, v in info.items() if not k.startswith("total") and k not in ("splits", "features")}
    ds = LeRobotDataset(root)
    assert ds.tasks == ["pick up the red cube", "open the drawer", "stack the blocks"]
    for i, ep in zip((3, 4), eps):
        back = ds.episode(i)
        assert back.task == ep.task and np.array_equal(back.action, ep.action)
        err = np.abs(back.images["front"].astype(int) - ep.images["front"]).mean()
        assert err < (1e-9 if name == "lerobot-image" else 6.0), err  # PNG is lossless, AV1 close
    assert ds.episode(1).task == "open the drawer"  # LeRobot's episodes read as before


@pytest.mark.parametrize("name", ["lerobot-video", "lerobot-image"])
def test_stats_json_matches_lerobots_aggregation(name):
    """meta/stats.json from the per-episode stats in the episodes table, merged by vlac, equals
    what LeRobot 0.6.1 wrote (count-weighted quantiles, not an envelope)."""
    root = DATA / name
    rows = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    info = json.loads((root / "meta/info.json").read_text())
    ours = {feat: merge_stats([{k: np.asarray(r[f"stats/{feat}/{k}"]) for k in STAT_KEYS} for r in rows])
            for feat in info["features"]}
    theirs = json.loads((root / "meta/stats.json").read_text())
    assert set(ours) == set(theirs)
    for feat, stats in theirs.items():
        assert set(ours[feat]) == set(stats), feat
        for k, v in stats.items():
            np.testing.assert_allclose(np.asarray(ours[feat][k], dtype=float).reshape(-1),
                                       np.asarray(v, dtype=float).reshape(-1), rtol=1e-6, atol=1e-9,
                                       err_msg=f"{feat}/{k}")


def test_an_unreadable_episodes_file_stops_appending_before_anything_is_deleted(tmp_path):
    root = _copy("vlac-appended-by-lerobot", tmp_path)
    listing = root / "meta/episodes/chunk-000/file-001.parquet"
    listing.write_bytes(listing.read_bytes()[:200])
    before = _bytes(root)
    info = json.loads((root / "meta/info.json").read_text())
    with pytest.raises(DatasetError, match=str(listing)):
        DatasetWriter(root, info["features"], fps=info["fps"])
    assert _bytes(root) == before  # LeRobot's episode files are still there
