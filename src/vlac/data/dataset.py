"""Read a LeRobot v3.0 dataset: vlac's own or any dataset LeRobot wrote.

    >>> ds = LeRobotDataset("runs/demo")
    >>> ds.num_episodes, ds.fps, ds.camera_keys
    >>> ep = ds.episode(0)                    # Episode: images decoded, state, action, task, metadata
    >>> frames = FrameDataset(ds)             # random access by global frame index (a torch Dataset)
    >>> item = frames[123]                    # {"images": {...}, "state", "action", "task", ...}

Every file is read through one function that turns a failure into a DatasetError naming it; a
damaged episode's error ends with the command that repairs the dataset (``vlac data repair``).
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
    ACTION_KEY, CODEBASE_VERSION, EPISODE_META_COLUMNS, STATE_KEY, SUCCESS_KEY, DamagedEpisode, DatasetError,
    EpisodeOutOfRange,
    camera_keys, check_episode_indices, check_no_pending_repair, episodes_files, feature_key, read_json,
)
from vlac.data.video import VideoError, decode_frame, decode_video


METADATA_FIX = "restore it from a backup; it describes the dataset, so it cannot be rebuilt from the rest"


def _read_metadata(path: Path):
    """A metadata table (episodes, tasks); one that is missing or unreadable cannot be rebuilt."""
    if not path.is_file():
        raise DatasetError(f"{path} is missing; {METADATA_FIX}")
    try:
        return pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise DatasetError(f"{path} is corrupt or truncated ({e}); {METADATA_FIX}") from e


def _decode_png(cell: dict, where: str, root: Path) -> np.ndarray:
    """One frame of an ``image`` feature (PNG bytes in the parquet row)."""
    from PIL import Image

    try:
        return np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB"))
    except (OSError, ValueError, TypeError) as e:  # PIL: UnidentifiedImageError, truncated data
        raise DamagedEpisode(f"an image of {where} does not decode ({e})", root) from e


class LeRobotDataset:
    """``strict=False`` opens episodes files that do not list episodes 0..N-1 in order (for
    ``vlac data repair``, which renumbers them); everything else refuses such a dataset."""

    def __init__(self, root: str | Path, strict: bool = True):
        self.root = Path(root)
        check_no_pending_repair(self.root)
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
        ep_files = episodes_files(self.root)
        if ep_files:
            self.episodes = pd.concat([_read_metadata(p).to_pandas() for p in ep_files], ignore_index=True)
        else:
            self.episodes = pd.DataFrame({"episode_index": [], "length": []})
        if strict:
            check_episode_indices(self.episodes["episode_index"].astype(int).tolist(), self.root)
        if self.info.get("total_episodes", 0) != len(self.episodes):
            # info.json is rewritten after each commit; a kill in between leaves it one behind.
            self.info["total_episodes"] = len(self.episodes)
        tasks_path = self.root / "meta" / "tasks.parquet"
        self.tasks: list[str] = []
        if tasks_path.exists():
            df = _read_metadata(tasks_path).to_pandas()
            df = (df.set_index("task") if "task" in df.columns else df).sort_values("task_index")
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
        path = self.data_path(index)
        if not path.is_file():
            raise DamagedEpisode(f"{path} (frames of episode {index}) is missing", self.root)
        try:
            df = pq.read_table(path).to_pandas()
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for bad files
            raise DamagedEpisode(f"{path} (frames of episode {index}) is corrupt or truncated ({e})", self.root) from e
        df = df[df["episode_index"] == int(row["episode_index"])].sort_values("frame_index").reset_index(drop=True)
        self._tables[index] = df
        if len(self._tables) > 256:  # non-video columns are small; keep many episodes
            self._tables.popitem(last=False)
        return df

    def data_path(self, index: int) -> Path:
        """The data file that holds episode ``index``'s frame rows."""
        row = self.episodes.iloc[index]
        return self.root / self.info["data_path"].format(
            chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"]))

    def video_path(self, row, key: str) -> Path:
        """The video file of feature ``key`` that holds the episode of episodes-table ``row``."""
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
                images[cam] = _decode_png(rec[key], f"episode {index} frame {t} in {self.data_path(index)}", self.root)
                continue
            try:
                images[cam] = decode_frame(self.video_path(row, key),
                                           float(row[f"videos/{key}/from_timestamp"]) + float(rec["timestamp"]))
            except VideoError as e:
                raise DamagedEpisode(str(e), self.root) from e
        task = self.tasks[int(rec["task_index"])] if self.tasks else list(row["tasks"])[0]
        return {"images": images, "state": np.asarray(rec[STATE_KEY], dtype=np.float32),
                "action": np.asarray(rec[ACTION_KEY], dtype=np.float32), "task": task,
                "episode_index": index, "frame_index": t}

    def _camera(self, index: int, cam: str, frames: pd.DataFrame | None) -> np.ndarray:
        """All frames of one camera of episode ``index``, (T, H, W, 3) uint8; ``frames`` (the
        episode's frame rows) is needed only for an ``image`` feature."""
        row = self.episodes.iloc[index]
        key = feature_key(cam, self.features)
        if self.features[key]["dtype"] == "image":  # PNG bytes stored in the parquet rows
            where = f"episode {index} in {self.data_path(index)}"
            return np.stack([_decode_png(v, where, self.root) for v in frames[key]])
        path = self.video_path(row, key)
        start = float(row[f"videos/{key}/from_timestamp"])
        end = float(row[f"videos/{key}/to_timestamp"])
        try:
            video = decode_video(path, start, end)
        except VideoError as e:
            raise DamagedEpisode(str(e), self.root) from e
        n = int(row["length"])
        if len(video) < n:
            raise DamagedEpisode(f"{path} holds {len(video)} frames of episode {index}, its metadata says {n}: "
                                 "the video is truncated", self.root)
        return video[:n]

    def _episode_frames(self, index: int) -> pd.DataFrame:
        """The episode's frame rows, checked against its length."""
        frames = self._frame_table(index)
        n = int(self.episodes.iloc[index]["length"])
        if len(frames) != n:
            raise DamagedEpisode(f"{self.data_path(index)} holds {len(frames)} frame rows of episode {index}, its "
                                 f"metadata says {n}", self.root)
        return frames

    def damage(self, index: int) -> list[str]:
        """Why episode ``index`` cannot be read back (empty when it can), with each file at fault:
        its data file and every camera are checked on their own, so one report lists them all."""
        reasons = []
        try:
            frames = self._episode_frames(index)
        except DamagedEpisode as e:
            reasons.append(e.reason)
            frames = None
        for cam in self.camera_keys:
            if frames is None and self.features[feature_key(cam, self.features)]["dtype"] == "image":
                continue  # its images live in the data file already reported
            try:
                self._camera(index, cam, frames)
            except DamagedEpisode as e:
                reasons.append(e.reason)
        return reasons

    def episode(self, index: int, images: bool = True) -> Episode:
        if not 0 <= index < self.num_episodes:
            raise EpisodeOutOfRange(f"episode {index} is not in {self.root}: it has {self.num_episodes} episodes "
                                    f"(0 to {self.num_episodes - 1}); see `vlac data info {self.root}`")
        frames = self._episode_frames(index)
        meta = self.meta(index)
        state = np.stack(frames[STATE_KEY].to_numpy()).astype(np.float32)
        action = np.stack(frames[ACTION_KEY].to_numpy()).astype(np.float32)
        success = frames[SUCCESS_KEY].to_numpy().astype(bool) if SUCCESS_KEY in frames else None
        task = self.tasks[int(frames["task_index"].iloc[0])] if self.tasks else meta["task"]
        imgs = {cam: self._camera(index, cam, frames) for cam in self.camera_keys} if images else {}
        return Episode(task=task, images=imgs, state=state, action=action, success=success,
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
