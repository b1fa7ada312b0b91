"""Read a LeRobot v3.0 dataset: vlac's own or any dataset LeRobot wrote.

    >>> ds = LeRobotDataset("runs/demo")
    >>> ds.num_episodes, ds.fps, ds.camera_keys
    >>> ep = ds.episode(0)                    # Episode: images decoded, state, action, task, metadata
    >>> frames = FrameDataset(ds)             # random access by global frame index (a torch Dataset)
    >>> item = frames[123]                    # {"images": {...}, "state", "action", "task", ...}

Every file is read through one function that turns a failure into a DatasetError naming it.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from vlac.data.episode import Episode
from vlac.data.lerobot_format import (
    ACTION_KEY, CODEBASE_VERSION, EPISODE_META_COLUMNS, STATE_KEY, SUCCESS_KEY, DatasetError, camera_keys,
    feature_key, read_json,
)
from vlac.data.video import VideoError, decode_frame, decode_video


def _read_parquet(path: Path):
    if not path.is_file():
        raise DatasetError(f"{path} is missing; the dataset is incomplete (re-run the command that wrote it)")
    try:
        return pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise DatasetError(f"{path} is corrupt or truncated ({e}); delete it and re-collect that episode") from e


class LeRobotDataset:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset directory {self.root} does not exist")
        self.info = read_json(self.root / "meta" / "info.json")
        version = self.info.get("codebase_version")
        if version != CODEBASE_VERSION:
            raise DatasetError(
                f"{self.root} is a LeRobot {version} dataset; vlac reads {CODEBASE_VERSION}. Convert it with "
                "LeRobot's converter (lerobot.datasets.v30.convert_dataset_v21_to_v30)."
            )
        self.features: dict = self.info["features"]
        self.fps = int(self.info["fps"])
        ep_files = sorted((self.root / "meta" / "episodes").glob("*/*.parquet"))
        if ep_files:
            self.episodes = pd.concat([_read_parquet(p).to_pandas() for p in ep_files], ignore_index=True)
        else:
            self.episodes = pd.DataFrame({"episode_index": [], "length": []})
        if self.info.get("total_episodes", 0) != len(self.episodes):
            # info.json is rewritten after each commit; a kill in between leaves it one behind.
            self.info["total_episodes"] = len(self.episodes)
        tasks_path = self.root / "meta" / "tasks.parquet"
        self.tasks: list[str] = []
        if tasks_path.exists():
            df = _read_parquet(tasks_path).to_pandas().sort_values("task_index")
            self.tasks = [str(t) for t in df.index]
        self._tables: OrderedDict[int, pd.DataFrame] = OrderedDict()

    # ---------------------------------------------------------------- summary
    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return int(self.episodes["length"].sum()) if len(self.episodes) else 0

    @property
    def camera_keys(self) -> list[str]:
        return camera_keys(self.features)

    def meta(self, index: int) -> dict:
        """Per-episode metadata columns (behaviour, seed, ...; None where the dataset lacks them)."""
        row = self.episodes.iloc[index]
        out = {k: (row[k].item() if hasattr(row[k], "item") else row[k]) if k in row and not pd.isna(row[k]) else None
               for k in EPISODE_META_COLUMNS}
        out["task"] = list(row["tasks"])[0] if "tasks" in row else None
        out["length"] = int(row["length"])
        return out

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    # ---------------------------------------------------------------- frames
    def _frame_table(self, index: int) -> pd.DataFrame:
        """Episode ``index``'s frame rows, cached per episode: a shuffled loader asks for the same
        episode many times, and filtering a file's rows on every frame dominated its cost."""
        if index in self._tables:
            self._tables.move_to_end(index)
            return self._tables[index]
        row = self.episodes.iloc[index]
        path = self.root / self.info["data_path"].format(
            chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"]))
        df = _read_parquet(path).to_pandas()
        df = df[df["episode_index"] == int(row["episode_index"])].sort_values("frame_index").reset_index(drop=True)
        self._tables[index] = df
        if len(self._tables) > 256:  # non-video columns are small; keep many episodes
            self._tables.popitem(last=False)
        return df

    def _video_path(self, row, key: str) -> Path:
        return self.root / self.info["video_path"].format(
            video_key=key, chunk_index=int(row[f"videos/{key}/chunk_index"]),
            file_index=int(row[f"videos/{key}/file_index"]))

    def frame(self, index: int, t: int) -> dict:
        """Frame ``t`` of episode ``index`` without decoding the rest of the episode."""
        row = self.episodes.iloc[index]
        frames = self._frame_table(index)
        rec = frames.iloc[t]
        images = {}
        for cam in self.camera_keys:
            key = feature_key(cam, self.features)
            if self.features[key]["dtype"] == "image":
                from PIL import Image

                images[cam] = np.asarray(Image.open(io.BytesIO(rec[key]["bytes"])).convert("RGB"))
                continue
            try:
                images[cam] = decode_frame(self._video_path(row, key),
                                           float(row[f"videos/{key}/from_timestamp"]) + float(rec["timestamp"]))
            except VideoError as e:
                raise DatasetError(str(e)) from e
        task = self.tasks[int(rec["task_index"])] if self.tasks else list(row["tasks"])[0]
        return {"images": images, "state": np.asarray(rec[STATE_KEY], dtype=np.float32),
                "action": np.asarray(rec[ACTION_KEY], dtype=np.float32), "task": task,
                "episode_index": index, "frame_index": t}

    def _images(self, index: int, frames: pd.DataFrame) -> dict[str, np.ndarray]:
        row = self.episodes.iloc[index]
        out = {}
        for cam in self.camera_keys:
            key = feature_key(cam, self.features)
            if self.features[key]["dtype"] == "image":  # PNG bytes stored in the parquet rows
                from PIL import Image

                out[cam] = np.stack([np.asarray(Image.open(io.BytesIO(v["bytes"])).convert("RGB")) for v in frames[key]])
                continue
            path = self._video_path(row, key)
            start = float(row[f"videos/{key}/from_timestamp"])
            end = float(row[f"videos/{key}/to_timestamp"])
            try:
                video = decode_video(path, start, end)
            except VideoError as e:
                raise DatasetError(str(e)) from e
            n = int(row["length"])
            if len(video) < n:
                raise DatasetError(f"{path} holds {len(video)} frames of episode {index}, its metadata says {n}: "
                                   "the video is truncated; delete the episode's files and re-collect it")
            out[cam] = video[:n]
        return out

    def episode(self, index: int, images: bool = True) -> Episode:
        if not 0 <= index < self.num_episodes:
            raise IndexError(f"episode {index} out of range: the dataset has {self.num_episodes} episodes")
        frames = self._frame_table(index)
        meta = self.meta(index)
        n = meta["length"]
        if len(frames) != n:
            raise DatasetError(f"episode {index} has {len(frames)} frame rows, its metadata says {n}")
        state = np.stack(frames[STATE_KEY].to_numpy()).astype(np.float32)
        action = np.stack(frames[ACTION_KEY].to_numpy()).astype(np.float32)
        success = frames[SUCCESS_KEY].to_numpy().astype(bool) if SUCCESS_KEY in frames else None
        task = self.tasks[int(frames["task_index"].iloc[0])] if self.tasks else meta["task"]
        imgs = self._images(index, frames) if images else {}
        return Episode(task=task, images=imgs if images else {}, state=state, action=action, success=success,
                       meta={k: v for k, v in meta.items() if k not in ("task", "length")},
                       timestamp=frames["timestamp"].to_numpy().astype(np.float64))


class FrameDataset:
    """Random access to single frames, as a training data loader reads them (usable as a
    ``torch.utils.data.Dataset``). ``decode="frame"`` seeks to each frame (fast for shuffled
    access); ``decode="episode"`` decodes whole episodes into a small LRU cache (fast when a
    sampler draws many frames of one episode in a row)."""

    def __init__(self, dataset: LeRobotDataset, decode: str = "frame", cache_episodes: int = 16):
        if decode not in ("frame", "episode"):
            raise ValueError(f"decode={decode!r}: use 'frame' or 'episode'")
        self.ds = dataset
        self.decode = decode
        self.cache_episodes = cache_episodes
        self._cache: OrderedDict[int, Episode] = OrderedDict()
        self._starts = np.cumsum([0, *self.ds.episodes["length"].astype(int).tolist()])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        ep = int(np.searchsorted(self._starts, index, side="right") - 1)
        return ep, int(index - self._starts[ep])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        ep_i, t = self.locate(index)
        if self.decode == "frame" and ep_i not in self._cache:
            return self.ds.frame(ep_i, t)
        if ep_i not in self._cache:
            self._cache[ep_i] = self.ds.episode(ep_i)
            if len(self._cache) > self.cache_episodes:
                self._cache.popitem(last=False)
        self._cache.move_to_end(ep_i)
        ep = self._cache[ep_i]
        return {"images": {k: v[t] for k, v in ep.images.items()}, "state": ep.state[t], "action": ep.action[t],
                "task": ep.task, "episode_index": ep_i, "frame_index": t}
