"""LeRobot v3.0 datasets on real files: round trip, layout, bad input, kill and resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from vlac.data.dataset import FrameDataset, LeRobotDataset
from vlac.data.episode import Episode
from vlac.data.lerobot_format import (
    SIM_ACTION_NAMES, SIM_STATE_NAMES, DatasetError, make_features,
)
from vlac.data.writer import DatasetWriter
from vlac.sim.env import SimEnvConfig
from vlac.sim.rollout import episode_seed, run_episode


def _episodes():
    cfg = SimEnvConfig(task="push-v3", image_size=64)
    return [run_episode(cfg, b, episode_seed(0, "push-v3", i)) for i, b in enumerate(["expert", "regression"])]


def test_round_trip(tmp_path):
    eps = _episodes()
    feats = make_features(["main"], (64, 64), SIM_STATE_NAMES, SIM_ACTION_NAMES)
    with DatasetWriter(tmp_path / "ds", feats, fps=80) as w:
        for ep in eps:
            w.add_episode(ep)
    ds = LeRobotDataset(tmp_path / "ds")
    assert ds.num_episodes == 2 and ds.num_frames == sum(e.length for e in eps)
    for i, ep in enumerate(eps):
        r = ds.episode(i)
        assert np.array_equal(r.state, ep.state) and np.array_equal(r.action, ep.action)
        assert np.array_equal(r.success, ep.success)
        assert r.task == ep.task == "push the puck to the goal"
        assert r.meta["behaviour"] == ep.meta["behaviour"] and r.meta["seed"] == ep.meta["seed"]
        assert r.meta["success"] == ep.is_success
        err = np.abs(r.images["main"].astype(int) - ep.images["main"]).mean()
        assert err < 6.0, f"codec error {err} above tolerance"
    # `roundtrip` gives a clip back as the dataset stores it (what `vlac critic fidelity --codec` scores)
    from vlac.data.video import roundtrip

    assert np.array_equal(roundtrip(eps[0].images["main"]), ds.episode(0).images["main"])


def test_the_codec_washes_out_a_small_coloured_marker():
    """Why `--codec` exists: a 2 px saturated marker (reach's goal at 96 px) comes back from the
    dataset's 4:2:0 video nearly grey, while the scene around it survives."""
    from vlac.data.video import roundtrip

    frames = np.full((4, 96, 96, 3), 150, np.uint8)
    frames[:, :, :48] = (120, 90, 60)  # a table-coloured half
    frames[:, 40:42, 61:63] = (215, 7, 7)  # the marker, on odd pixel positions as a render puts it
    back = roundtrip(frames).astype(int)
    assert np.abs(back - frames).mean() < 2.0  # the scene: nearly exact
    red = lambda img: img[40:42, 61:63, 0] - img[40:42, 61:63, 1:].mean(-1)  # noqa: E731
    assert red(frames[0].astype(int)).mean() > 200 and red(back[0]).mean() < 120
    kept = roundtrip(frames, fmt="h264-444").astype(int)  # full colour resolution keeps it
    assert red(kept[0]).mean() > 180 and np.abs(kept - frames).mean() < 2.0


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="scheduling policies per thread: Linux")
def test_encoding_leaves_every_thread_and_child_process_at_its_scheduling_policy(tmp_path):
    """Run as root (CI, containers), SVT-AV1 switches the thread that opens an encoder to SCHED_FIFO
    priority 99; every process started after it inherited that and starved a 2-core machine (CI's
    workers crashed). Writing a clip leaves the policies as they were."""
    from vlac.data.video import _KeepScheduling, encode_video

    def policies():
        return {int(t): os.sched_getscheduler(int(t)) for t in os.listdir("/proc/self/task")}

    before, mine = policies(), os.sched_getscheduler(0)
    encode_video(np.random.default_rng(0).integers(0, 255, (12, 64, 64, 3), np.uint8), tmp_path / "a.mp4", fps=10)
    after = policies()
    assert all(after[t] == before.get(t, mine) for t in after), (before, after)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
                           capture_output=True, text=True, check=True)
    assert int(child.stdout) == mine
    # the restoring itself, also where the encoder may change nothing (not root): a changed thread is put back
    keep = _KeepScheduling()
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    keep.restore()
    assert os.sched_getscheduler(0) == mine


def test_a_dataset_written_at_full_colour_resolution(tmp_path):
    eps = _episodes()
    feats = make_features(["main"], (64, 64), SIM_STATE_NAMES, SIM_ACTION_NAMES)
    with DatasetWriter(tmp_path / "ds", feats, fps=80, video="h264-444") as w:
        w.add_episode(eps[0])
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())["features"]["observation.images.main"]["info"]
    assert (info["video.codec"], info["video.pix_fmt"]) == ("h264", "yuv444p")
    from vlac.data.video import roundtrip

    raw = eps[0].images["main"].astype(int)
    got = LeRobotDataset(tmp_path / "ds").episode(0).images["main"].astype(int)
    assert np.abs(got - raw).mean() < np.abs(roundtrip(eps[0].images["main"]) - raw).mean()  # closer than av1
    # appending in another format is refused, naming the format the dataset has; nothing is lost
    with pytest.raises(DatasetError, match="written as h264-444 .*add to it with --video h264-444"):
        DatasetWriter(tmp_path / "ds", feats, fps=80)
    with DatasetWriter(tmp_path / "ds", feats, fps=80, video="h264-444") as w:
        w.add_episode(eps[1])
    assert LeRobotDataset(tmp_path / "ds").num_episodes == 2
    with pytest.raises(ValueError, match="unknown video format 'vp9'; use one of av1, h264-444"):
        DatasetWriter(tmp_path / "other", feats, fps=80, video="vp9")


def test_layout_is_lerobot_v3(small_dataset):
    root = small_dataset
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 4 and info["total_tasks"] == 2
    assert info["splits"] == {"train": "0:4"}
    video_keys = [k for k, v in info["features"].items() if v["dtype"] == "video"]
    assert video_keys == ["observation.images.main", "observation.images.gripper"]
    assert info["features"]["observation.images.main"]["info"]["video.codec"] == "av1"
    # parquet columns are exactly the non-video features; shape-[1] features are scalar columns
    frames = pd.concat([pq.read_table(p).to_pandas() for p in sorted((root / "data").glob("*/*.parquet"))])
    assert set(frames.columns) == {k for k in info["features"] if k not in video_keys}
    assert frames["index"].tolist() == list(range(info["total_frames"]))
    assert np.allclose(frames["timestamp"], frames["frame_index"] / info["fps"])
    # tasks.parquet: the task string is the pandas index named "task"
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert tasks.index.name == "task" and tasks["task_index"].tolist() == [0, 1]
    # episodes: row i is episode i; video frame k sits at from_timestamp + k / fps
    eps = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pandas()
    assert eps["episode_index"].tolist() == [0, 1, 2, 3]
    assert set(eps["behaviour"]) == {"expert", "stall"}
    row = eps.iloc[1]
    path = root / info["video_path"].format(video_key="observation.images.main",
                                            chunk_index=row["videos/observation.images.main/chunk_index"],
                                            file_index=row["videos/observation.images.main/file_index"])
    with av.open(str(path)) as c:
        pts = [Fraction(f.pts) * c.streams.video[0].time_base for f in c.decode(video=0)]
    assert len(pts) == row["length"]
    assert all(abs(float(p) - k / info["fps"]) < 1e-4 for k, p in enumerate(pts))
    stats = json.loads((root / "meta/stats.json").read_text())
    assert np.array(stats["observation.images.main"]["mean"]).shape == (3, 1, 1)
    assert set(stats["action"]) >= {"min", "max", "mean", "std", "count", "q01", "q99"}
    assert stats["action"]["count"] == [info["total_frames"]]


def test_frame_dataset_works_with_a_torch_loader(small_dataset):
    torch = pytest.importorskip("torch")
    frames = FrameDataset(LeRobotDataset(small_dataset))
    item = frames[5]
    assert item["images"]["main"].shape == (96, 96, 3) and item["state"].shape == (4,)
    loader = torch.utils.data.DataLoader(frames, batch_size=8, shuffle=True,
                                         collate_fn=lambda b: b, generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    assert len(batch) == 8 and all(b["task"] for b in batch)


def test_other_schema_is_refused(small_dataset, tmp_path):
    feats = make_features(["main"], (64, 64), SIM_STATE_NAMES, SIM_ACTION_NAMES)
    with pytest.raises(DatasetError, match="different schema") as e:
        DatasetWriter(small_dataset, feats, fps=80)
    assert "observation.images.gripper" in str(e.value)
    (tmp_path / "notes.txt").write_text("my thesis")
    with pytest.raises(DatasetError, match="not a LeRobot dataset"):
        DatasetWriter(tmp_path, feats, fps=80)
    assert (tmp_path / "notes.txt").read_text() == "my thesis"


def test_bad_episode_input_is_rejected_without_losing_data(tmp_path):
    ep = _episodes()[0]
    feats = make_features(["main"], (64, 64), SIM_STATE_NAMES, SIM_ACTION_NAMES)
    w = DatasetWriter(tmp_path / "ds", feats, fps=80)
    w.add_episode(ep)
    with pytest.raises(ValueError, match="uint8"):
        Episode(task="x", images={"main": ep.images["main"].astype(np.float32)}, state=ep.state, action=ep.action)
    wrong_cam = Episode(task=ep.task, images={"top": ep.images["main"]}, state=ep.state, action=ep.action,
                        success=ep.success)
    with pytest.raises(DatasetError, match="cameras"):
        w.add_episode(wrong_cam)
    small = Episode(task=ep.task, images={"main": ep.images["main"][:, :32, :32]}, state=ep.state,
                    action=ep.action, success=ep.success)
    with pytest.raises(DatasetError, match="expects"):
        w.add_episode(small)
    empty_task = Episode(task=" ", images=ep.images, state=ep.state, action=ep.action, success=ep.success)
    with pytest.raises(DatasetError, match="empty task"):
        w.add_episode(empty_task)
    ds = LeRobotDataset(tmp_path / "ds")
    assert ds.num_episodes == 1 and np.array_equal(ds.episode(0).action, ep.action)
    assert DatasetWriter(tmp_path / "ds", feats, fps=80).num_episodes == 1  # leftovers cleaned on reopen


def test_corrupt_files_are_reported_by_path(small_dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(small_dataset, root)
    data_file = root / "data/chunk-000/file-001.parquet"
    data_file.write_bytes(data_file.read_bytes()[:100])
    video = root / "videos/observation.images.main/chunk-000/file-002.mp4"
    video.write_bytes(video.read_bytes()[: len(video.read_bytes()) // 3])
    ds = LeRobotDataset(root)
    with pytest.raises(DatasetError, match=str(data_file)) as e:
        ds.episode(1)
    assert f"run `vlac data repair {root}`" in str(e.value)  # the advice that works (deleting the file did not)
    with pytest.raises(DatasetError, match="file-002.mp4") as e:
        ds.episode(2)
    assert f"run `vlac data repair {root}`" in str(e.value)
    assert ds.episode(0).length > 0 and ds.episode(3).length > 0  # the rest is intact
    (root / "meta/info.json").write_text("{not json")
    with pytest.raises(DatasetError, match="info.json is corrupt"):
        LeRobotDataset(root)


def _committed(root):
    try:
        return json.loads((root / "meta/info.json").read_text())["total_episodes"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_killed_collection_leaves_a_valid_dataset_and_resumes(tmp_path):
    root = tmp_path / "killed"
    cmd = [sys.executable, "-m", "vlac.scripts.cli", "data", "collect", "--tasks", "reach-v3,push-v3,drawer-open-v3",
           "--episodes-per-task", "2", "--image-size", "48", "--out", str(root)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while _committed(root) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.7)  # land the kill somewhere inside the next episode's writing or simulation
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ds = LeRobotDataset(root)
    n = ds.num_episodes
    assert 2 <= n < 6
    for i in range(n):
        assert ds.episode(i).length > 0
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 6
    keys = [(ds.meta(i)["env_task"], ds.meta(i)["plan_index"]) for i in range(6)]
    assert len(set(keys)) == 6
    assert not list(root.rglob("*.tmp"))
    info = json.loads((root / "meta/info.json").read_text())
    assert info["total_frames"] == ds.num_frames == len(FrameDataset(ds))


def test_merged_stats_follow_lerobot_by_hand():
    """Two episodes of a 1-d feature, 0 1 2 3 and 10 20, merged as LeRobot 0.6.1 does: quantiles
    are the means of the episodes' quantiles weighted by frame count (an envelope gave q01 = 0.03
    and q99 = 19.9); mean and std are those of all six values."""
    from vlac.data.stats import feature_stats, merge_stats

    a, b = np.array([[0.0], [1], [2], [3]]), np.array([[10.0], [20]])
    m = merge_stats([feature_stats(a), feature_stats(b)])
    assert m["count"].tolist() == [6] and m["min"].tolist() == [0] and m["max"].tolist() == [20]
    assert m["mean"] == pytest.approx([6.0])  # 36 / 6
    assert m["std"] == pytest.approx([np.sqrt(298 / 6)])  # squared deviations 36 25 16 9 16 196
    assert m["q01"] == pytest.approx([(4 * 0.03 + 2 * 10.1) / 6])  # per episode: 0.03 and 10.1
    assert m["q50"] == pytest.approx([(4 * 1.5 + 2 * 15.0) / 6])
    assert m["q99"] == pytest.approx([(4 * 2.97 + 2 * 19.9) / 6])
