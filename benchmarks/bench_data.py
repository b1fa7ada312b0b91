"""Data benchmarks: collection throughput (1 and 2 workers), disk per 1,000 frames, read throughput.

    python benchmarks/bench_data.py --out runs/bench_data      # prints a Markdown table and writes results.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


from vlac.sim.collect import CollectConfig, collect  # noqa: E402
from vlac.data.dataset import FrameDataset, LeRobotDataset  # noqa: E402

TASKS = "reach-v3,push-v3,drawer-open-v3,button-press-topdown-v3,window-close-v3,pick-place-v3"


def bench_collect(root: Path, workers: int, episodes_per_task: int) -> dict:
    shutil.rmtree(root, ignore_errors=True)
    t = time.perf_counter()
    s = collect(CollectConfig(out=str(root), tasks=TASKS, episodes_per_task=episodes_per_task, workers=workers),
                progress=False)
    dt = time.perf_counter() - t
    ds = LeRobotDataset(root)
    return {"workers": workers, "episodes": s["episodes"], "frames": s["frames"], "seconds": round(dt, 1),
            "frames_per_s": round(s["frames"] / dt, 1),
            "mb_per_1000_frames": round(ds.size_bytes() / ds.num_frames * 1000 / 1e6, 3)}


def bench_read(root: Path) -> dict:
    import torch

    ds = LeRobotDataset(root)
    t = time.perf_counter()
    n = sum(ds.episode(i).length for i in range(ds.num_episodes))
    seq = n / (time.perf_counter() - t)
    out = {"sequential_episode_decode_frames_per_s": round(seq, 1)}
    for workers in (0, 2):
        frames = FrameDataset(LeRobotDataset(root), cache_episodes=8)
        loader = torch.utils.data.DataLoader(
            frames, batch_size=32, shuffle=True, num_workers=workers, collate_fn=lambda b: b,
            generator=torch.Generator().manual_seed(0), persistent_workers=False)
        t = time.perf_counter()
        count = sum(len(b) for b in loader)
        out[f"random_frames_per_s_workers{workers}"] = round(count / (time.perf_counter() - t), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench_data")
    ap.add_argument("--episodes-per-task", type=int, default=4)
    args = ap.parse_args()
    out = Path(args.out)
    results = {"collect": [bench_collect(out / f"w{w}", w, args.episodes_per_task) for w in (1, 2)]}
    results["read"] = bench_read(out / "w1")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
