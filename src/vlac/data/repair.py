"""Find damaged episodes (``vlac data info --check``) and drop them (``vlac data repair``).

An episode is damaged when a file it needs cannot be read back in full: its data file (missing,
corrupt, fewer frame rows than its length) or one of its videos (missing, corrupt, truncated).
Repair writes the dataset without those episodes, as LeRobot's delete-episodes tool would: the
rest renumbered 0..N-1 in order, the frame rows' ``episode_index`` and ``index`` rewritten where
they changed, one new episodes table, info.json totals and stats.json recomputed. Videos and
unchanged data files are kept byte for byte (never re-encoded); files no remaining episode uses
are left out; tasks keep their indices. A following ``vlac data collect`` with the flags that
made the dataset collects the dropped episodes again (at the end).

Nothing is deleted: the new dataset is built beside the old one with hard links, then swapped in
by renames, and the old one stays at ``DIR.before-repair`` (unless ``backup=False``). A repair
killed at any moment leaves the old or the repaired dataset at DIR, and running it again
finishes the job. A ``vlac rl`` run folder (``OUT/episodes`` beside ``OUT/rl_steps``) has its
per-episode RL records renumbered with the episodes.

    >>> report = repair_dataset("runs/demo")
    >>> report.dropped, report.backup
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlac.data.dataset import LeRobotDataset
from vlac.data.lerobot_format import EPISODES_PATH, DatasetError, episodes_files, repair_staging, write_json_atomic
from vlac.data.stats import dataset_stats, to_jsonable
from vlac.data.writer import read_episode_rows

RL_STEPS = "rl_steps"
"""The folder of per-episode RL records that ``vlac rl`` keeps beside OUT/episodes."""


@dataclass
class Damage:
    episode: int
    reasons: list[str]
    """What is wrong, one entry per file at fault."""


@dataclass
class RepairReport:
    root: Path
    damaged: list[Damage] = field(default_factory=list)
    kept: int = 0
    renumbered: bool = False
    """The episodes files did not list 0..N-1 in order (or episodes were dropped)."""
    backup: Path | None = None
    changed: bool = False

    @property
    def dropped(self) -> list[int]:
        return [d.episode for d in self.damaged]


# ---------------------------------------------------------------- finding damage
def _shared_frames(ds: LeRobotDataset) -> dict[int, int]:
    """Episodes whose row names the same (data file, episode_index) as an earlier row: both would
    read the same frames (what a writer that missed an episodes file leaves behind)."""
    seen: dict[tuple, int] = {}
    out = {}
    for i, episode_index in enumerate(ds.episodes["episode_index"].astype(int)):
        key = (ds.data_path(i), episode_index)
        if key in seen:
            out[i] = seen[key]
        else:
            seen[key] = i
    return out


def find_damaged(ds: LeRobotDataset, progress: bool = False) -> list[Damage]:
    """Every damaged episode of ``ds``, each with the file at fault: reads every episode in full."""
    from tqdm import tqdm

    shared = _shared_frames(ds)
    out = []
    for i in tqdm(range(ds.num_episodes), desc="check", unit="ep", disable=not progress):
        if i in shared:
            out.append(Damage(i, [f"its row names the same frames as episode {shared[i]} "
                                  f"({ds.data_path(i)}, episode_index {int(ds.episodes.iloc[i]['episode_index'])})"]))
            continue
        try:
            reasons = ds.damage(i)
            if not reasons:
                ds.episode(i, images=False)  # cameras read above; now state, action and task
        except (DatasetError, OSError, ValueError, KeyError, IndexError) as e:  # anything else unreadable
            reasons = [f"{type(e).__name__}: {e}"]
        if reasons:
            out.append(Damage(i, reasons))
    return out


# ---------------------------------------------------------------- building the repaired copy
def _link(src: Path, dst: Path) -> None:
    """Hard link (the bytes stay shared with the backup); a copy where links are not possible."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _renumbered_frames(table: pa.Table, new_index: dict[int, int], new_from: dict[int, int]) -> pa.Table | None:
    """``table`` (one data file) with only the kept episodes, their ``episode_index`` and global
    ``index`` set to the new numbers; None when nothing changes, so the file can be linked."""
    ep = table.column("episode_index").to_numpy()
    frame = table.column("frame_index").to_numpy()
    keep = np.isin(ep, list(new_index))
    new_ep = np.array([new_index.get(int(e), -1) for e in ep], dtype=np.int64)
    new_global = np.array([new_from.get(int(e), 0) for e in ep], dtype=np.int64) + frame
    if keep.all() and np.array_equal(new_ep, ep) and np.array_equal(new_global, table.column("index").to_numpy()):
        return None
    names = table.column_names
    table = table.set_column(names.index("episode_index"), "episode_index", pa.array(new_ep))
    table = table.set_column(names.index("index"), "index", pa.array(new_global))
    return table.filter(pa.array(keep))


def _write_data(root: Path, new: Path, ds: LeRobotDataset, rows: list[dict], keep: list[int],
                starts: list[int]) -> None:
    """Data files of the kept episodes: linked when unchanged, else rewritten without the dropped
    episodes and with the new numbers."""
    by_file: dict[Path, tuple[dict, dict]] = {}
    for new_i, old in enumerate(keep):
        path = ds.data_path(old)
        new_index, new_from = by_file.setdefault(path, ({}, {}))
        new_index[int(rows[old]["episode_index"])] = new_i
        new_from[int(rows[old]["episode_index"])] = starts[new_i]
    for path, (new_index, new_from) in by_file.items():
        dst = new / path.relative_to(root)
        table = pq.read_table(path)
        rewritten = _renumbered_frames(table, new_index, new_from)
        if rewritten is None:
            _link(path, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(rewritten, dst)


def _write_episodes(new: Path, rows: list[dict], keep: list[int], starts: list[int], root: Path) -> list[dict]:
    """All kept rows, renumbered, in one episodes file whose schema covers every column the old
    files had (the first file's first: LeRobot reads the first file's schema)."""
    out = []
    for new_i, old in enumerate(keep):
        row = dict(rows[old])
        row.update({"episode_index": new_i, "dataset_from_index": starts[new_i],
                    "dataset_to_index": starts[new_i] + int(row["length"]),
                    "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        out.append(row)
    schema = pa.unify_schemas([pq.read_schema(p).remove_metadata() for p in episodes_files(root)])
    path = new / EPISODES_PATH.format(chunk_index=0, file_index=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(out, schema=schema), path)
    return out


def _copy_rest(root: Path, new: Path, ds: LeRobotDataset, keep: list[int]) -> None:
    """Videos of the kept episodes and any file outside data/, videos/ and the metadata that
    repair rewrites (tasks.parquet, a README, ...); leftover ``.tmp`` files stay behind."""
    for old in keep:
        row = ds.episodes.iloc[old]
        for key in ds.features:
            if ds.features[key]["dtype"] == "video":
                src = ds.video_path(row, key)
                dst = new / src.relative_to(root)
                if not dst.exists():
                    _link(src, dst)
    rewritten = {Path("meta/info.json"), Path("meta/stats.json")}
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if (p.is_file() and rel.parts[0] not in ("data", "videos") and rel.parts[:2] != ("meta", "episodes")
                and rel not in rewritten and not p.name.endswith(".tmp")):
            dst = new / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dst)  # small metadata: a copy, so a tool writing it in place cannot touch the backup


def _renumber_rl_steps(src: Path, dst: Path, keep: list[int]) -> None:
    """A ``vlac rl`` run's records (``episode_NNNNNN.json`` per dataset episode) follow the
    renumbering; records of dropped episodes stay in the backup only."""
    dst.mkdir(parents=True, exist_ok=True)
    for new_i, old in enumerate(keep):
        path = src / f"episode_{old:06d}.json"
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            shutil.copy2(path, dst / f"episode_{new_i:06d}.json")  # kept as it is: the reader will quarantine it
            continue
        record["dataset_index"] = new_i
        (dst / f"episode_{new_i:06d}.json").write_text(json.dumps(record))


def _build(root: Path, stage: Path, ds: LeRobotDataset, rows: list[dict], keep: list[int]) -> None:
    new = stage / "items" / root.name
    new.mkdir(parents=True)
    lengths = [int(rows[old]["length"]) for old in keep]
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(int).tolist()
    _write_data(root, new, ds, rows, keep, starts)
    kept_rows = _write_episodes(new, rows, keep, starts, root)
    _copy_rest(root, new, ds, keep)
    write_json_atomic(new / "meta" / "stats.json", to_jsonable(dataset_stats(kept_rows, ds.features)))
    info = dict(ds.info)
    info.update({"total_episodes": len(keep), "total_frames": int(sum(lengths)),
                 "splits": {**info.get("splits", {}), "train": f"0:{len(keep)}"}})
    write_json_atomic(new / "meta" / "info.json", info)
    rl_steps = root.parent / RL_STEPS
    if root.name == "episodes" and rl_steps.is_dir():
        _renumber_rl_steps(rl_steps, stage / "items" / RL_STEPS, keep)


# ---------------------------------------------------------------- swapping it in
def _free_backup_suffix(parent: Path, names: list[str]) -> str:
    k = 1
    while True:
        suffix = ".before-repair" + ("" if k == 1 else f"-{k}")
        if not any((parent / (n + suffix)).exists() for n in names):
            return suffix
        k += 1


def _swap(root: Path, ready: Path) -> Path | None:
    """Move each staged item into place, the current one to its backup first. Safe to run again
    after a kill: items already moved are skipped."""
    plan = json.loads((ready / "plan.json").read_text())
    for name in plan["items"]:
        staged, target = ready / "items" / name, root.parent / name
        backup = root.parent / (name + plan["suffix"])
        if not staged.exists():
            continue  # moved in before the kill
        if target.exists() and backup.exists():  # something made a new target after the kill
            raise DatasetError(f"{target} and {backup} both exist and the finished repair of {root} waits in "
                               f"{staged}: move {target} away and run `vlac data repair {root}` again")
        if target.exists():
            os.replace(target, backup)
        os.replace(staged, target)
    shutil.rmtree(ready)
    if not plan["backup"]:
        for name in plan["items"]:
            shutil.rmtree(root.parent / (name + plan["suffix"]), ignore_errors=True)
        return None
    return root.parent / (root.name + plan["suffix"])


def finish_interrupted(root: Path) -> Path | None:
    """Complete a repair that was killed after its copy was ready; discard one killed earlier."""
    tmp, ready = repair_staging(root)
    shutil.rmtree(tmp, ignore_errors=True)
    return _swap(root, ready) if (ready / "plan.json").exists() else None


def repair_dataset(root: str | Path, dry_run: bool = False, backup: bool = True,
                   progress: bool = False) -> RepairReport:
    """Drop the damaged episodes of the dataset at ``root`` (see the module docstring)."""
    root = Path(root)
    finish_interrupted(root)
    ds = LeRobotDataset(root, strict=False)
    report = RepairReport(root, damaged=find_damaged(ds, progress))
    rows = read_episode_rows(root)
    dropped = set(report.dropped)
    keep = [i for i in range(len(rows)) if i not in dropped]
    report.kept = len(keep)
    report.renumbered = bool(dropped) or [int(r["episode_index"]) for r in rows] != list(range(len(rows)))
    if not report.renumbered or dry_run:
        return report
    if not keep:
        raise DatasetError(f"every episode of {root} is damaged, so repair would leave an empty dataset; restore "
                           "the files listed above from a backup, or collect into a new directory")
    tmp, ready = repair_staging(root)
    _build(root, tmp, ds, rows, keep)
    items = sorted(p.name for p in (tmp / "items").iterdir())
    (tmp / "plan.json").write_text(json.dumps({"items": items, "backup": backup,
                                               "suffix": _free_backup_suffix(root.parent, items)}))
    os.replace(tmp, ready)  # the copy is complete: from here on a re-run finishes the swap
    report.backup = _swap(root, ready)
    report.changed = True
    return report
