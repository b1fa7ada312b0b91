"""Damaged files on real datasets: `vlac data info --check` lists every one, `vlac data repair`
drops the damaged episodes and keeps the rest, collect refills what was dropped, and a resumed RL
run quarantines a damaged episode instead of stopping."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from lerobot_layout import assert_lerobot_layout

from vlac.sim.collect import CollectConfig, collect
from vlac.data.dataset import LeRobotDataset
from vlac.data.lerobot_format import DatasetError
from vlac.data.repair import repair_dataset
from vlac.data.writer import DatasetWriter
from vlac.rl.episodes import EpisodeRecord, Step
from vlac.scripts.cli import main

MAIN = "videos/observation.images.main/chunk-000/file-{:03d}.mp4"
DATA = "data/chunk-000/file-{:03d}.parquet"


def _truncate(path, keep=1 / 3):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_check_lists_every_damaged_file_then_repair_and_collect_restore_the_dataset(expert_dataset, tmp_path,
                                                                                   capsys):
    root = tmp_path / "ds"
    shutil.copytree(expert_dataset, root)
    original = _bytes(root)
    kept = LeRobotDataset(root).episode(2)
    _truncate(root / MAIN.format(0), keep=0.5)  # episode 0: its video cut short
    _truncate(root / DATA.format(1))  # episode 1: its frames and its video
    _truncate(root / MAIN.format(1))

    with pytest.raises(SystemExit, match=f"vlac data repair {root}"):
        main(["data", "info", str(root), "--check"])
    listed = capsys.readouterr().out
    for path in (MAIN.format(0), DATA.format(1), MAIN.format(1)):
        assert str(root / path) in listed, f"{path} not listed:\n{listed}"
    assert "episode 2:" not in listed

    main(["data", "repair", str(root)])
    assert "dropped 2 episode(s), kept 1" in capsys.readouterr().out
    main(["data", "info", str(root), "--check"])
    assert "all 1 episodes decode" in capsys.readouterr().out
    assert_lerobot_layout(root)
    ep = LeRobotDataset(root).episode(0)
    assert ep.meta == kept.meta and np.array_equal(ep.state, kept.state)
    assert np.array_equal(ep.images["main"], kept.images["main"])
    now = _bytes(root)
    assert now[MAIN.format(2)] == original[MAIN.format(2)]  # the video byte for byte; its frame rows renumbered
    renumbered = pq.read_table(root / DATA.format(2)).to_pandas()
    assert set(renumbered["episode_index"]) == {0} and renumbered["index"].tolist() == list(range(ep.length))
    assert DATA.format(1) not in now and MAIN.format(0) not in now  # files of dropped episodes left out
    backup = _bytes(tmp_path / "ds.before-repair")  # the dataset as it was, damaged files included
    assert backup.keys() == original.keys() and backup[DATA.format(2)] == original[DATA.format(2)]
    assert len(backup[DATA.format(1)]) == len(original[DATA.format(1)]) // 3

    s = collect(CollectConfig(out=str(root), tasks="reach-v3", episodes_per_task=3, behaviours="expert:1", seed=5),
                progress=False)
    assert (s["committed"], s["episodes"]) == (2, 3)
    ds = LeRobotDataset(root)
    assert sorted(ds.meta(i)["plan_index"] for i in range(3)) == [0, 1, 2]
    main(["data", "info", str(root), "--check"])
    assert "all 3 episodes decode" in capsys.readouterr().out
    assert_lerobot_layout(root)


def test_a_repair_killed_after_its_copy_was_ready_is_finished_by_the_next_run(expert_dataset, tmp_path):
    from vlac.data.lerobot_format import repair_staging
    from vlac.data.repair import _build
    from vlac.data.writer import read_episode_rows

    root = tmp_path / "ds"
    shutil.copytree(expert_dataset, root)
    _truncate(root / DATA.format(1))
    tmp, ready = repair_staging(root)
    _build(root, tmp, LeRobotDataset(root), read_episode_rows(root), [0, 2])
    (tmp / "plan.json").write_text(json.dumps({"items": ["ds"], "backup": True, "suffix": ".before-repair"}))
    tmp.rename(ready)
    root.rename(tmp_path / "ds.before-repair")  # killed between the two renames: no dataset at ROOT
    with pytest.raises(DatasetError, match=f"run `vlac data repair {root}` again"):
        DatasetWriter(root, {}, fps=80)  # would start an empty dataset where the repaired one belongs
    report = repair_dataset(root)
    assert not ready.exists() and not report.damaged and LeRobotDataset(root).num_episodes == 2
    assert (tmp_path / "ds.before-repair" / DATA.format(1)).exists()


def _record(n: int, seed: int) -> EpisodeRecord:
    rng = np.random.default_rng(seed)
    rec = EpisodeRecord("sim-0", "reach the red goal point with the gripper", seed, reason="limit", success=False)
    for k in range(n):
        img = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
        rec.steps.append(Step(k, 0.0, img, np.full(4, k, np.float32), {"action": [1, 2, 3, 1]}, 0.0,
                              float(rng.normal()), 0.1, 0))
    rec.steps.append(Step(n, 0.0, img, np.zeros(4, np.float32)))
    return rec


def test_a_restarted_data_service_does_not_store_the_killed_ones_last_episode_twice(tmp_path):
    """A data service killed after committing an episode but before answering (DataLink then offers
    the episode again to a new service): the new service recognises it by its rl_steps record and
    returns its index; the same robot and episode number observed at other times (a robot started
    again counts its episodes anew) is a new episode."""
    from vlac.rl.storage import DataService

    first = _record(3, 0)
    assert DataService(str(tmp_path)).add(first) == 0
    again = DataService(str(tmp_path))
    assert again.add(first) == 0 and again.count() == 1
    other = _record(3, 0)
    for k, s in enumerate(other.steps):
        s.t_obs = 100.0 + k
    assert DataService(str(tmp_path)).add(other) == 1
    assert LeRobotDataset(tmp_path / "episodes").num_episodes == 2


def test_resumed_rl_run_quarantines_a_damaged_episode_and_repair_renumbers_its_records(tmp_path, capsys):
    from vlac.rl.storage import DataService

    data = DataService(str(tmp_path))
    recs = [_record(n, seed) for seed, n in enumerate((3, 4, 5))]
    assert [data.add(r) for r in recs] == [0, 1, 2]
    video = tmp_path / "episodes" / MAIN.format(1)
    _truncate(video)

    resumed = DataService(str(tmp_path))
    back = resumed.untrained(0)  # this raised, and `vlac rl` exited, on the damaged episode
    assert [len(r.acted) for r in back] == [3, 5]
    [line] = resumed.quarantined()
    assert "episode 1" in line and str(video) in line and f"vlac data repair {tmp_path / 'episodes'}" in line
    assert line in capsys.readouterr().err
    assert LeRobotDataset(tmp_path / "episodes").num_episodes == 3  # nothing was deleted

    first_frames = (tmp_path / "episodes" / DATA.format(0)).read_bytes()
    repair_dataset(tmp_path / "episodes")
    assert (tmp_path / "episodes" / DATA.format(0)).read_bytes() == first_frames  # before the drop: untouched
    assert sorted(p.name for p in (tmp_path / "rl_steps").iterdir()) == ["episode_000000.json", "episode_000001.json"]
    again = DataService(str(tmp_path))
    back = again.untrained(0)
    assert not again.quarantined() and [len(r.acted) for r in back] == [3, 5]
    assert back[1].rewards("dense").tolist() == pytest.approx(recs[2].rewards("dense").tolist())
    assert again.add(_record(2, 7)) == 2  # a new episode's record takes the next free number
    assert len(again.untrained(2)) == 1
    assert (tmp_path / "rl_steps.before-repair" / "episode_000001.json").exists()
