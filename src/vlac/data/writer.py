"""Append episodes to a LeRobot v3.0 dataset, one atomic commit per episode.

An episode's video and data files are written under temporary names and renamed into place;
the episode then becomes part of the dataset when the episodes table that lists it is renamed
into place (the commit). info.json, tasks.parquet and stats.json follow. A process killed at
any moment therefore leaves every committed episode readable; opening the dataset again
removes half-written files of the episode that was in flight and repairs the metadata.

    >>> with DatasetWriter(root, features, fps=80) as w:
    ...     w.add_episode(episode)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vlac.data.episode import Episode
from vlac.data.lerobot_format import (
    ACTION_KEY, CHUNKS_SIZE, CODEBASE_VERSION, DATA_PATH, DONE_KEY, EPISODE_META_COLUMNS, EPISODES_PATH,
    IMAGE_PREFIX, STATE_KEY, SUCCESS_KEY, VIDEO_PATH, DatasetError, read_json, schema_difference,
    write_json_atomic,
)
from vlac.data.stats import STAT_KEYS, feature_stats, merge_stats, to_jsonable
from vlac.data.video import encode_video, video_info


def _replace(tmp: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)


def _locate(index: int) -> dict:
    return {"chunk_index": index // CHUNKS_SIZE, "file_index": index % CHUNKS_SIZE}


class DatasetWriter:
    """Creates ``root`` or opens it to append (``resume``). Refuses a dataset of another schema."""

    def __init__(self, root: str | Path, features: dict, fps: int, robot_type: str = "unknown",
                 resume: bool = True):
        self.root = Path(root)
        self.fps = int(fps)
        self.features = features
        self.robot_type = robot_type
        self.video_keys = [k for k, v in features.items() if v["dtype"] == "video"]
        self.rows: list[dict] = []
        info_path = self.root / "meta" / "info.json"
        if info_path.exists():
            if not resume:
                raise DatasetError(f"{self.root} already holds a dataset; pass resume=True to append to it")
            info = read_json(info_path)
            diffs = schema_difference(info["features"], features)
            if info.get("fps") != self.fps:
                diffs.append(f"fps: existing {info.get('fps')} vs new {self.fps}")
            if diffs:
                raise DatasetError(
                    f"{self.root} holds a dataset with a different schema, so these episodes cannot be added to it:\n  "
                    + "\n  ".join(diffs) + "\nUse another --out directory, or collect with the settings of the existing one."
                )
            self.features = info["features"]  # keeps the probed video info
            self._load_rows()
            self._remove_uncommitted()
            self._write_meta()  # repairs info/tasks/stats if a kill came between commit and meta
        elif self.root.exists() and any(self.root.iterdir()):
            raise DatasetError(
                f"{self.root} exists, is not empty and has no meta/info.json: it is not a LeRobot dataset. "
                "Choose an empty or new output directory."
            )
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self._write_meta()  # an empty but valid dataset from the start

    # ---------------------------------------------------------------- state on disk
    def _load_rows(self) -> None:
        path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        if not path.exists():
            return
        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 - any parquet failure means the same thing here
            raise DatasetError(f"{path} is corrupt ({e}); the episode list cannot be recovered automatically") from e
        self.rows = table.to_pylist()

    def _committed_files(self) -> set[Path]:
        files = set()
        for r in self.rows:
            files.add(self.root / DATA_PATH.format(chunk_index=r["data/chunk_index"], file_index=r["data/file_index"]))
            for vk in self.video_keys:
                files.add(self.root / VIDEO_PATH.format(
                    video_key=vk, chunk_index=r[f"videos/{vk}/chunk_index"], file_index=r[f"videos/{vk}/file_index"]))
        return files

    def _remove_uncommitted(self) -> None:
        keep = self._committed_files()
        for sub in ("data", "videos", "meta"):
            d = self.root / sub
            if not d.exists():
                continue
            for p in d.rglob("*"):
                if p.is_file() and (p.name.endswith(".tmp") or (sub != "meta" and p not in keep)):
                    p.unlink()

    @property
    def num_episodes(self) -> int:
        return len(self.rows)

    @property
    def num_frames(self) -> int:
        return int(sum(r["length"] for r in self.rows))

    def episode_meta(self, key: str) -> list:
        return [r.get(key) for r in self.rows]

    # ---------------------------------------------------------------- append
    def add_episode(self, ep: Episode) -> int:
        """Write and commit one episode; returns its episode_index."""
        index = self.num_episodes
        start = self.num_frames
        n = ep.length
        cams = [k[len(IMAGE_PREFIX):] for k in self.video_keys]
        if sorted(ep.images) != sorted(cams):
            raise DatasetError(f"episode has cameras {sorted(ep.images)} but the dataset expects {sorted(cams)}")
        for key in (STATE_KEY, ACTION_KEY):
            want = self.features[key]["shape"][0]
            got = (ep.state if key == STATE_KEY else ep.action).shape
            if got != (n, want):
                raise DatasetError(f"episode {key} has shape {got}, the dataset expects ({n}, {want})")
        loc = _locate(index)
        row: dict = {"episode_index": index, "tasks": [ep.task], "length": n,
                     "data/chunk_index": loc["chunk_index"], "data/file_index": loc["file_index"],
                     "dataset_from_index": start, "dataset_to_index": start + n}
        stats: dict[str, dict] = {}

        # 1. videos, each under a temporary name, then renamed into place
        for vk in self.video_keys:
            frames = ep.images[vk[len(IMAGE_PREFIX):]]
            h, w = self.features[vk]["shape"][:2]
            if frames.shape[1:3] != (h, w):
                raise DatasetError(f"camera {vk} frames are {frames.shape[1:3]}, the dataset expects {(h, w)}")
            final = self.root / VIDEO_PATH.format(video_key=vk, **loc)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(final.name + ".tmp")
            encode_video(frames, tmp, self.fps)
            _replace(tmp, final)
            if "info" not in self.features[vk]:
                self.features[vk]["info"] = video_info(final)
            row.update({f"videos/{vk}/chunk_index": loc["chunk_index"], f"videos/{vk}/file_index": loc["file_index"],
                        f"videos/{vk}/from_timestamp": 0.0, f"videos/{vk}/to_timestamp": n / self.fps})
            stats[vk] = feature_stats(frames, is_image=True)

        # 2. frame rows
        task_index = self._task_index(ep.task)
        cols = {
            STATE_KEY: ep.state.astype(np.float32), ACTION_KEY: ep.action.astype(np.float32),
            "timestamp": (np.arange(n) / self.fps).astype(np.float32),
            "frame_index": np.arange(n, dtype=np.int64),
            "episode_index": np.full(n, index, dtype=np.int64),
            "index": np.arange(start, start + n, dtype=np.int64),
            "task_index": np.full(n, task_index, dtype=np.int64),
            DONE_KEY: np.arange(n) == n - 1,
        }
        if SUCCESS_KEY in self.features:
            if ep.success is None:
                raise DatasetError(f"this dataset records {SUCCESS_KEY} but the episode has no success flags")
            cols[SUCCESS_KEY] = np.asarray(ep.success, dtype=bool)
        arrays, names = [], []
        for key, spec in self.features.items():
            if spec["dtype"] in ("video", "image"):
                continue
            v = cols[key]
            if spec["shape"] == [1]:
                arrays.append(pa.array(v))
            else:
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), spec["shape"][0]))
            names.append(key)
            stats[key] = feature_stats(v.reshape(n, -1))
        final = self.root / DATA_PATH.format(**loc)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(pa.Table.from_arrays(arrays, names=names), tmp)
        _replace(tmp, final)

        # 3. the commit: the episodes table listing this episode replaces the old one
        for feat, s in stats.items():
            for k in STAT_KEYS:
                row[f"stats/{feat}/{k}"] = np.asarray(s[k]).tolist()
        for k in EPISODE_META_COLUMNS:
            row[k] = ep.meta.get(k)
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        self.rows.append(row)
        try:
            self._write_episodes()
        except BaseException:
            self.rows.pop()
            raise
        self._write_meta()
        return index

    def _task_index(self, task: str) -> int:
        if not task or not task.strip():
            raise DatasetError("episode has an empty task string; every episode needs its instruction")
        tasks = self._tasks()
        return tasks.index(task) if task in tasks else len(tasks)

    def _tasks(self) -> list[str]:
        seen: list[str] = []
        for r in self.rows:
            for t in r["tasks"]:
                if t not in seen:
                    seen.append(t)
        return seen

    def _write_episodes(self) -> None:
        path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        types = {k: pa.from_numpy_dtype(np.dtype(t)) if t != "string" else pa.string()
                 for k, t in EPISODE_META_COLUMNS.items()}
        keys = list(self.rows[0])
        schema = pa.schema([(k, types[k]) if k in types else (k, pa.array([self.rows[0][k]]).type) for k in keys])
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(self.rows, schema=schema), tmp)
        os.replace(tmp, path)

    def _write_meta(self) -> None:
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        tasks = self._tasks()
        if tasks:
            tmp = meta / "tasks.parquet.tmp"
            pd.DataFrame({"task_index": np.arange(len(tasks), dtype=np.int64)},
                         index=pd.Index(tasks, name="task")).to_parquet(tmp)
            os.replace(tmp, meta / "tasks.parquet")
        if self.rows:
            merged = {}
            for feat in self.features:
                per_ep = [{k: np.asarray(r[f"stats/{feat}/{k}"]) for k in STAT_KEYS if f"stats/{feat}/{k}" in r}
                          for r in self.rows if f"stats/{feat}/mean" in r]
                if per_ep:
                    merged[feat] = merge_stats(per_ep)
            write_json_atomic(meta / "stats.json", to_jsonable(merged))
        info = {
            "codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
            "total_episodes": self.num_episodes, "total_frames": self.num_frames, "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
            "fps": self.fps, "splits": {"train": f"0:{self.num_episodes}"},
            "data_path": DATA_PATH, "video_path": VIDEO_PATH if self.video_keys else None,
            "features": self.features,
        }
        write_json_atomic(meta / "info.json", info)

    def close(self) -> None:
        pass  # every episode is already committed; kept for symmetry with the context manager

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def remove_dataset(root: str | Path) -> None:
    """Delete a dataset directory (used by ``--overwrite``)."""
    root = Path(root)
    if (root / "meta" / "info.json").exists() or not root.exists():
        shutil.rmtree(root, ignore_errors=True)
    else:
        raise DatasetError(f"{root} is not a LeRobot dataset; refusing to delete it")
