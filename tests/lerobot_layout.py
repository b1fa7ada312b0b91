"""The layout rules LeRobot 0.6.1 relies on when it loads a v3.0 dataset, checked on files
(lerobot itself is not a dependency). The tests run this on datasets LeRobot wrote too, so a
rule stated wrongly here fails there.

- episodes files, concatenated in sorted path order, list episodes 0..N-1 (LeRobot takes the
  row position as the episode index); each row's meta/episodes indices name its own file;
- every episodes file's columns are among the first file's, with the same types (LeRobot's
  parquet loader infers the schema from the first file and casts the others to it);
- dataset_from_index / dataset_to_index tile 0..total_frames; each episode's data file holds
  exactly ``length`` rows with its episode_index, global ``index`` from..to, frame_index 0..;
- each video file exists and its [from, to) timestamps span ``length`` frames;
- frame columns are among info.json's non-video features (LeRobot loads them with those features);
- info.json totals and splits count the episodes; tasks.parquet numbers tasks 0..T-1 and every
  frame's task_index is one of them.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq


def episode_rows(root: Path) -> tuple[list[Path], list[dict]]:
    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    rows = []
    for f in files:
        for r in pq.read_table(f).to_pylist():
            rows.append({**r, "_file": f})
    return files, rows


def assert_lerobot_layout(root: Path) -> None:
    root = Path(root)
    info = json.loads((root / "meta/info.json").read_text())
    files, rows = episode_rows(root)
    first = pq.read_schema(files[0])
    for f in files[1:]:
        schema = pq.read_schema(f)
        extra = set(schema.names) - set(first.names)
        assert not extra, f"{f} has columns {sorted(extra)} that the first episodes file lacks"
        for name in schema.names:
            assert schema.field(name).type == first.field(name).type, f"{f}: column {name} type differs"
    assert [r["episode_index"] for r in rows] == list(range(len(rows)))
    for r in rows:
        own = root / "meta/episodes" / f"chunk-{r['meta/episodes/chunk_index']:03d}" / \
            f"file-{r['meta/episodes/file_index']:03d}.parquet"
        assert own == r["_file"], f"episode {r['episode_index']} says it is in {own}, it is in {r['_file']}"
    ends = [0] + [r["dataset_to_index"] for r in rows]
    assert [r["dataset_from_index"] for r in rows] == ends[:-1]
    assert all(r["dataset_to_index"] - r["dataset_from_index"] == r["length"] for r in rows)
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert tasks["task_index"].tolist() == list(range(len(tasks)))
    frame_features = {k for k, v in info["features"].items() if v["dtype"] != "video"}
    video_keys = [k for k, v in info["features"].items() if v["dtype"] == "video"]
    for r in rows:
        data = root / info["data_path"].format(chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
        table = pq.read_table(data)
        assert set(table.column_names) <= frame_features, f"{data} has columns info.json does not declare"
        frames = table.to_pandas()
        frames = frames[frames["episode_index"] == r["episode_index"]]
        assert len(frames) == r["length"], f"{data}: episode {r['episode_index']} has {len(frames)} rows"
        assert frames["index"].tolist() == list(range(r["dataset_from_index"], r["dataset_to_index"]))
        assert frames["frame_index"].tolist() == list(range(r["length"]))
        assert frames["task_index"].between(0, len(tasks) - 1).all()
        for vk in video_keys:
            video = root / info["video_path"].format(video_key=vk, chunk_index=r[f"videos/{vk}/chunk_index"],
                                                     file_index=r[f"videos/{vk}/file_index"])
            assert video.is_file(), f"{video} is missing"
            span = r[f"videos/{vk}/to_timestamp"] - r[f"videos/{vk}/from_timestamp"]
            assert np.isclose(span * info["fps"], r["length"], atol=1e-3)
    assert info["total_episodes"] == len(rows)
    assert info["total_frames"] == ends[-1]
    assert info["total_tasks"] == len(tasks)
    assert info["splits"]["train"] == f"0:{len(rows)}"
