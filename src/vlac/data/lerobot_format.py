"""The LeRobot dataset layout v3.0: paths, feature schemas and small helpers shared by the
writer and the reader.

    root/meta/info.json            schema (features), fps, counters, path templates
    root/meta/stats.json           per-feature statistics
    root/meta/tasks.parquet        task strings (pandas index "task") -> task_index
    root/meta/episodes/chunk-000/file-000.parquet   one row per episode, in order
    root/data/chunk-CCC/file-FFF.parquet            frame rows (non-video features)
    root/videos/{camera}/chunk-CCC/file-FFF.mp4     camera frames

vlac writes one data file and one video file per episode (a valid v3.0 layout: each episode row
says which file holds it), which makes every episode an atomic unit on disk. It reads datasets
that pack many episodes per file, as LeRobot writes them.

What LeRobot (0.6.1) relies on when it loads a dataset, and every writer here keeps:
- the episodes files, in sorted path order, list episodes 0..N-1 in order (row position is the
  episode index);
- every episodes file's columns are among those of the first one: LeRobot infers the schema from
  the first file and casts the others to it (missing columns become null, extra ones are an error);
- each row's ``meta/episodes/*``, ``data/*`` and ``videos/{key}/*`` indices name the files that
  hold it; a new session writes to the file after the last one used, never into an old one;
- frame rows carry the global ``index`` and the ``episode_index`` of their episode, and
  info.json's totals and ``splits`` count what the episodes files list.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
IMAGE_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"
SUCCESS_KEY = "sim.success"
"""The simulator's success flag per frame. Deliberately outside ``observation.*``, which LeRobot
policies would take as an input: it is ground truth for measurement only."""
DONE_KEY = "next.done"

DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}

SIM_STATE_NAMES = ["x_mm", "y_mm", "z_mm", "gripper_opening"]
SIM_ACTION_NAMES = ["dx_mm", "dy_mm", "dz_mm", "open"]
EPISODE_META_COLUMNS = {"behaviour": "string", "seed": "int64", "scene_variant": "string",
                        "env_task": "string", "plan_index": "int64", "success": "bool"}
"""vlac's per-episode columns in meta/episodes (LeRobot keeps extra columns as they are)."""


class DatasetError(RuntimeError):
    """A dataset that cannot be used as asked; the message names the path and the fix."""


class EpisodeOutOfRange(DatasetError, IndexError):
    """An episode index the dataset does not have; the message gives the valid range."""


class DamagedEpisode(DatasetError):
    """An episode whose data or video cannot be read back in full. ``reason`` names the file and
    what is wrong with it; the message adds the fix (``vlac data repair``)."""

    def __init__(self, reason: str, root: str | Path):
        self.reason = reason
        super().__init__(f"{reason}; {repair_hint(root)}")


def make_features(camera_keys: list[str], image_size: tuple[int, int], state_names: list[str],
                  action_names: list[str], with_success: bool = True) -> dict:
    """The ``features`` block of info.json for a robot with these cameras, state and action."""
    h, w = image_size
    feats: dict = {}
    for key in camera_keys:
        feats[IMAGE_PREFIX + key] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"]}
    feats[STATE_KEY] = {"dtype": "float32", "shape": [len(state_names)], "names": list(state_names)}
    feats[ACTION_KEY] = {"dtype": "float32", "shape": [len(action_names)], "names": list(action_names)}
    if with_success:
        feats[SUCCESS_KEY] = {"dtype": "bool", "shape": [1], "names": None}
    feats[DONE_KEY] = {"dtype": "bool", "shape": [1], "names": None}
    feats.update(DEFAULT_FEATURES)
    return feats


def schema_of(features: dict) -> dict:
    """Features without the descriptive ``info`` blocks: what must match to append to a dataset."""
    return {k: {kk: vv for kk, vv in v.items() if kk != "info"} for k, v in features.items()}


def schema_difference(old: dict, new: dict) -> list[str]:
    a, b = schema_of(old), schema_of(new)
    diffs = [f"feature {k!r} only in the existing dataset" for k in a if k not in b]
    diffs += [f"feature {k!r} only in the new data" for k in b if k not in a]
    diffs += [f"feature {k!r}: existing {a[k]} vs new {b[k]}" for k in a if k in b and a[k] != b[k]]
    return diffs


def camera_keys(features: dict) -> list[str]:
    """Camera keys (without the ``observation.images.`` prefix) of video or image features."""
    return [k[len(IMAGE_PREFIX):] if k.startswith(IMAGE_PREFIX) else k
            for k, v in features.items() if v["dtype"] in ("video", "image")]


def feature_key(camera: str, features: dict) -> str:
    return IMAGE_PREFIX + camera if IMAGE_PREFIX + camera in features else camera


def repair_hint(root: str | Path) -> str:
    """The advice every damaged-episode error ends with; ``vlac data repair`` is what works."""
    return (f"run `vlac data repair {root}` to drop the damaged episodes and keep the rest "
            "(then `vlac data collect` with the same flags collects the dropped ones again)")


def repair_staging(root: str | Path) -> tuple[Path, Path]:
    """Where ``vlac data repair`` builds its copy of ``root``, and where the finished copy waits
    to be swapped in (beside ``root``, so the swap is a rename)."""
    root = Path(root)
    return root.parent / f".{root.name}.repair-tmp", root.parent / f".{root.name}.repair-ready"


def check_no_pending_repair(root: str | Path) -> None:
    """Refuse to open a dataset whose repair was killed half-way through the swap: the repaired
    copy is ready but not in place, and only ``vlac data repair`` may finish the job."""
    if (repair_staging(root)[1] / "plan.json").exists():
        raise DatasetError(f"a repair of {root} was interrupted before it finished; run `vlac data repair {root}` "
                           "again to finish it")


def next_location(last: tuple[int, int] | None, chunks_size: int = CHUNKS_SIZE) -> tuple[int, int]:
    """The (chunk, file) after ``last``, numbered as LeRobot numbers them; (0, 0) for the first."""
    if last is None:
        return 0, 0
    chunk, file = last
    return (chunk + 1, 0) if file + 1 >= chunks_size else (chunk, file + 1)


_LOCATION = re.compile(r"chunk-(\d+)/file-(\d+)\.[a-z0-9]+$")


def location_of(path: Path) -> tuple[int, int] | None:
    """(chunk, file) of a path laid out as ``.../chunk-CCC/file-FFF.ext``; None for anything else."""
    m = _LOCATION.search(path.as_posix())
    return (int(m.group(1)), int(m.group(2))) if m else None


def episodes_files(root: Path) -> list[Path]:
    """The episodes tables in the order LeRobot concatenates them (sorted paths)."""
    return sorted((Path(root) / "meta" / "episodes").glob("*/*.parquet"))


def check_episode_indices(indices: list[int], root: Path) -> None:
    """Refuse episodes files whose rows are not episodes 0..N-1 in order: LeRobot takes the row
    position as the episode index, so anything else silently mixes episodes up."""
    for position, index in enumerate(indices):
        if index != position:
            raise DatasetError(
                f"{root}: the episodes files list episode_index {index} at position {position} (expected "
                f"0..{len(indices) - 1} in order), so episodes would be mixed up; {repair_hint(root)}")


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing: {path.parent.parent} is not a LeRobot v3.0 dataset") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path} is corrupt ({e}); restore it or re-run the command that wrote it") from None
