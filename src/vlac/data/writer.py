"""Append episodes to a LeRobot v3.0 dataset, one atomic commit per episode.

An episode's video and data files are written under temporary names and renamed into place;
the episode then becomes part of the dataset when the episodes table that lists it is renamed
into place (the commit). info.json, tasks.parquet and stats.json follow. A process killed at
any moment therefore leaves every committed episode readable; opening the dataset again
removes half-written files of the episode that was in flight and repairs the metadata.

Appending follows LeRobot's own rules (see ``vlac.data.lerobot_format``), so vlac and LeRobot can
take turns on one dataset: every episodes file is read; each session lists its episodes in a new
episodes file after the last one and writes each episode's data and video to the files after the
last ones used; info.json keeps the keys it already had and tasks keep their indices.

    >>> with DatasetWriter(root, features, fps=80) as w:
    ...     w.add_episode(episode)
"""

from __future__ import annotations

import io
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
    STATE_KEY, SUCCESS_KEY, VIDEO_PATH, DatasetError, camera_keys, check_episode_indices, check_no_pending_repair,
    episodes_files, feature_key, location_of, next_location, read_json, schema_difference, write_json_atomic,
)
from vlac.data.stats import STAT_KEYS, dataset_stats, feature_stats, to_jsonable
from vlac.data.video import check_video_format, encode_video, format_of, video_info

META_LOCATION = "meta/episodes"
"""Prefix of the columns that say which episodes file lists an episode."""


def _replace(tmp: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)


def read_episode_rows(root: Path) -> list[dict]:
    """Every episode row of every episodes file, in order. An unreadable file raises: without it
    the writer cannot tell committed files from half-written ones, so it must not touch any."""
    rows: list[dict] = []
    for path in episodes_files(root):
        try:
            rows += pq.read_table(path).to_pylist()
        except Exception as e:  # noqa: BLE001 - any parquet failure means the same thing here
            raise DatasetError(f"{path} is corrupt ({e}); it lists episodes, so the dataset cannot be appended to "
                               "or repaired automatically; restore it from a backup") from e
    return rows


def last_location(rows: list[dict], prefix: str) -> tuple[int, int] | None:
    """The highest (chunk, file) that ``rows`` use under ``prefix`` (data, videos/KEY, meta/episodes)."""
    locs = [(int(r[f"{prefix}/chunk_index"]), int(r[f"{prefix}/file_index"]))
            for r in rows if r.get(f"{prefix}/chunk_index") is not None]
    return max(locs, default=None)


def _png_column(frames: np.ndarray) -> pa.Array:
    """An ``image`` feature as LeRobot stores it: one PNG per frame in a {bytes, path} struct."""
    from PIL import Image

    cells = []
    for t, img in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        cells.append({"bytes": buf.getvalue(), "path": f"frame-{t:06d}.png"})
    return pa.array(cells, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))


class DatasetWriter:
    """Creates ``root`` or opens it to append (``resume``). Refuses a dataset of another schema."""

    def __init__(self, root: str | Path, features: dict, fps: int, robot_type: str = "unknown",
                 resume: bool = True, video: str = "av1"):
        self.root = Path(root)
        check_no_pending_repair(self.root)
        self.fps = int(fps)
        self.video = check_video_format(video)  # see vlac.data.video.VIDEO_FORMATS
        self.features = features
        self.rows: list[dict] = []
        self.tasks: list[str] = []
        self._tasks_table: pd.DataFrame | None = None
        self._tasks_dirty = False
        info_path = self.root / "meta" / "info.json"
        if info_path.exists():
            if not resume:
                raise DatasetError(f"{self.root} already holds a dataset; pass resume=True to append to it")
            self._open(read_json(info_path), features)
        elif self.root.exists() and any(self.root.iterdir()):
            raise DatasetError(
                f"{self.root} exists, is not empty and has no meta/info.json: it is not a LeRobot dataset. "
                "Choose an empty or new output directory."
            )
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self.info = {"codebase_version": CODEBASE_VERSION, "robot_type": robot_type, "chunks_size": CHUNKS_SIZE,
                         "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": self.fps,
                         "data_path": DATA_PATH, "video_path": None}
        self.chunks_size = int(self.info.get("chunks_size", CHUNKS_SIZE))
        self.video_keys = [k for k, v in self.features.items() if v["dtype"] == "video"]
        if self.video_keys and not self.info.get("video_path"):
            self.info["video_path"] = VIDEO_PATH
        # This session's episodes go to a new episodes file after the last one, as LeRobot's do.
        self._session_start = len(self.rows)
        self._session_file = next_location(last_location(self.rows, META_LOCATION), self.chunks_size)
        self._remove_uncommitted()
        self._write_meta()  # repairs info/tasks/stats if a kill came between commit and meta

    # ---------------------------------------------------------------- state on disk
    def _open(self, info: dict, features: dict) -> None:
        """Take an existing dataset's metadata, after checking that ``features`` fit it; every
        key of its info.json is kept (LeRobot's, or a newer version's)."""
        diffs = schema_difference(info["features"], features)
        if info.get("fps") != self.fps:
            diffs.append(f"fps: existing {info.get('fps')} vs new {self.fps}")
        if diffs:
            raise DatasetError(
                f"{self.root} holds a dataset with a different schema, so these episodes cannot be added to it:\n  "
                + "\n  ".join(diffs)
                + "\nUse another --out directory, or collect with the settings of the existing one."
            )
        for key, feat in info["features"].items():  # one known format per dataset (one from elsewhere: as before)
            written = format_of(feat.get("info", {})) if feat.get("dtype") == "video" else None
            if written is not None and written != self.video:
                raise DatasetError(f"{self.root}: its video {key!r} is written as {written} ({feat['info']['video.codec']}, "
                                   f"{feat['info']['video.pix_fmt']}), not {self.video}; add to it with --video {written} "
                                   "or use another --out directory")
        self.info = info
        self.features = info["features"]  # keeps the probed video info
        self.rows = read_episode_rows(self.root)
        check_episode_indices([int(r["episode_index"]) for r in self.rows], self.root)
        self._load_tasks()

    def _load_tasks(self) -> None:
        """Tasks keep the indices the frame rows already use; tasks of committed episodes missing
        from tasks.parquet (a kill between commit and meta) are appended in episode order."""
        path = self.root / "meta" / "tasks.parquet"
        if path.exists():
            try:
                table = pq.read_table(path).to_pandas()
            except Exception as e:  # noqa: BLE001
                raise DatasetError(f"{path} is corrupt ({e}); restore it from a backup") from e
            table = table.set_index("task") if "task" in table.columns else table
            self._tasks_table = table.sort_values("task_index")
            self.tasks = [str(t) for t in self._tasks_table.index]
        for r in self.rows:
            for t in r["tasks"]:
                self._add_task(t)

    def _add_task(self, task: str) -> None:
        if task not in self.tasks:
            self.tasks.append(task)
            self._tasks_dirty = True

    def _remove_uncommitted(self) -> None:
        """Delete leftovers of the episode that was in flight: ``.tmp`` files, and data or video
        files past the last ones an episode row uses (where the next episode would go). Files
        no row lists but that lie before that point are left alone: vlac never writes them, so
        they are someone's data."""
        prefixes = {self.root / "data": "data"}
        prefixes.update({self.root / "videos" / vk: f"videos/{vk}" for vk in self.video_keys})
        for sub in ("data", "videos", "meta"):
            for p in (self.root / sub).rglob("*.tmp") if (self.root / sub).exists() else []:
                p.unlink()
        for folder, prefix in prefixes.items():
            last = last_location(self.rows, prefix)
            for p in folder.rglob("*") if folder.exists() else []:
                loc = location_of(p.relative_to(self.root))
                if p.is_file() and loc is not None and (last is None or loc > last):
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
    def _check(self, ep: Episode) -> None:
        cams = camera_keys(self.features)
        if sorted(ep.images) != sorted(cams):
            raise DatasetError(f"episode has cameras {sorted(ep.images)} but the dataset expects {sorted(cams)}")
        for cam in cams:
            h, w = self.features[feature_key(cam, self.features)]["shape"][:2]
            if ep.images[cam].shape[1:3] != (h, w):
                raise DatasetError(f"camera {cam} frames are {ep.images[cam].shape[1:3]}, the dataset expects {(h, w)}")
        n = ep.length
        for key in (STATE_KEY, ACTION_KEY):
            want = self.features[key]["shape"][0]
            got = (ep.state if key == STATE_KEY else ep.action).shape
            if got != (n, want):
                raise DatasetError(f"episode {key} has shape {got}, the dataset expects ({n}, {want})")
        if SUCCESS_KEY in self.features and ep.success is None:
            raise DatasetError(f"this dataset records {SUCCESS_KEY} but the episode has no success flags")
        if not ep.task or not ep.task.strip():
            raise DatasetError("episode has an empty task string; every episode needs its instruction")

    def add_episode(self, ep: Episode) -> int:
        """Write and commit one episode; returns its episode_index."""
        self._check(ep)
        index = self.num_episodes
        start = self.num_frames
        n = ep.length
        row: dict = {"episode_index": index, "tasks": [ep.task], "length": n,
                     "dataset_from_index": start, "dataset_to_index": start + n}
        stats: dict[str, dict] = {}

        # 1. videos, each under a temporary name, then renamed into place
        for vk in self.video_keys:
            frames = ep.images[camera_keys({vk: self.features[vk]})[0]]
            chunk, file = next_location(last_location(self.rows, f"videos/{vk}"), self.chunks_size)
            final = self.root / self.info["video_path"].format(video_key=vk, chunk_index=chunk, file_index=file)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(final.name + ".tmp")
            encode_video(frames, tmp, self.fps, fmt=self.video)
            _replace(tmp, final)
            if "info" not in self.features[vk]:
                self.features[vk]["info"] = video_info(final)
            row.update({f"videos/{vk}/chunk_index": chunk, f"videos/{vk}/file_index": file,
                        f"videos/{vk}/from_timestamp": 0.0, f"videos/{vk}/to_timestamp": n / self.fps})
            stats[vk] = feature_stats(frames, is_image=True)

        # 2. frame rows
        chunk, file = next_location(last_location(self.rows, "data"), self.chunks_size)
        row.update({"data/chunk_index": chunk, "data/file_index": file})
        table = self._frame_rows(ep, index, start, stats)
        final = self.root / self.info["data_path"].format(chunk_index=chunk, file_index=file)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(table, tmp)
        _replace(tmp, final)

        # 3. the commit: this session's episodes table, now listing this episode, replaces the old one
        for feat, s in stats.items():
            for k in STAT_KEYS:
                row[f"stats/{feat}/{k}"] = np.asarray(s[k]).tolist()
        for k in EPISODE_META_COLUMNS:
            row[k] = ep.meta.get(k)
        row[f"{META_LOCATION}/chunk_index"], row[f"{META_LOCATION}/file_index"] = self._session_file
        self.rows.append(row)
        try:
            self._write_episodes()
        except BaseException:
            self.rows.pop()
            raise
        self._add_task(ep.task)
        self._write_meta()
        return index

    def _frame_rows(self, ep: Episode, index: int, start: int, stats: dict) -> pa.Table:
        """The episode's frame rows, one column per non-video feature; fills ``stats`` for them."""
        n = ep.length
        task_index = self.tasks.index(ep.task) if ep.task in self.tasks else len(self.tasks)
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
            cols[SUCCESS_KEY] = np.asarray(ep.success, dtype=bool)
        arrays, names = [], []
        for key, spec in self.features.items():
            if spec["dtype"] == "video":
                continue
            if spec["dtype"] == "image":
                frames = ep.images[camera_keys({key: spec})[0]]
                arrays.append(_png_column(frames))
                stats[key] = feature_stats(frames, is_image=True)
            else:
                if key not in cols:
                    raise DatasetError(f"the dataset has feature {key!r}, which vlac episodes do not record; "
                                       "append to it with the tool that made it")
                v = cols[key]
                if spec["shape"] == [1]:
                    arrays.append(pa.array(v))
                else:
                    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), spec["shape"][0]))
                stats[key] = feature_stats(v.reshape(n, -1))
            names.append(key)
        return pa.Table.from_arrays(arrays, names=names)

    def _episodes_schema(self, rows: list[dict]) -> pa.Schema:
        """The first episodes file's schema when another file comes first (LeRobot casts every
        file to it, so columns it lacks, e.g. vlac's behaviour and seed on a dataset LeRobot
        started, are left out); else one built from the rows."""
        files = episodes_files(self.root)
        own = self.root / EPISODES_PATH.format(chunk_index=self._session_file[0], file_index=self._session_file[1])
        if files and files[0] != own:
            return pq.read_schema(files[0]).remove_metadata()
        types = {k: pa.from_numpy_dtype(np.dtype(t)) if t != "string" else pa.string()
                 for k, t in EPISODE_META_COLUMNS.items()}
        return pa.schema([(k, types[k]) if k in types else (k, pa.array([rows[0][k]]).type) for k in rows[0]])

    def _write_episodes(self) -> None:
        rows = self.rows[self._session_start:]
        chunk, file = self._session_file
        path = self.root / EPISODES_PATH.format(chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(rows, schema=self._episodes_schema(rows)), tmp)
        os.replace(tmp, path)

    def _write_tasks(self) -> None:
        """tasks.parquet: the task string is the pandas index "task"; columns the file already had
        (a newer LeRobot's) are kept, empty for new tasks."""
        meta = self.root / "meta"
        table = pd.DataFrame(index=pd.Index([], name="task")) if self._tasks_table is None else self._tasks_table
        table = table.reindex(pd.Index(self.tasks, name="task"))
        table["task_index"] = np.arange(len(self.tasks), dtype=np.int64)
        tmp = meta / "tasks.parquet.tmp"
        table.to_parquet(tmp)
        os.replace(tmp, meta / "tasks.parquet")
        self._tasks_table, self._tasks_dirty = table, False

    def _write_meta(self) -> None:
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        if self._tasks_dirty:
            self._write_tasks()
        if self.rows:
            write_json_atomic(meta / "stats.json", to_jsonable(dataset_stats(self.rows, self.features)))
        self.info.update({
            "total_episodes": self.num_episodes, "total_frames": self.num_frames, "total_tasks": len(self.tasks),
            "splits": {**self.info.get("splits", {}), "train": f"0:{self.num_episodes}"},
            "features": self.features,
        })
        write_json_atomic(meta / "info.json", self.info)

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
