"""Critic inference speed on this machine: reward latency for one step pair at batch 1 (the
paper's real-time budget is 0.1 s), throughput in pairs/s at batch 32, one-shot and done.

    python benchmarks/bench_critic.py [--critic DIR] [--threads 2] [--repeats 30]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from timing import time_calls as _time
from vlac.critic.critic import Critic, Reference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--critic", default="builtin")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    critic = Critic.load(args.critic)
    rng = np.random.default_rng(0)
    img = lambda: rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)  # noqa: E731
    pair = [(img(), img())]
    pairs32 = [(img(), img()) for _ in range(32)]
    ref = Reference.from_episode([img() for _ in range(30)])
    task = "open the drawer"
    res = {}
    t = _time(lambda: critic.progress(pair, task), args.repeats)
    res["pair_latency_batch1_s"] = {"median": float(np.median(t)), "p90": float(np.percentile(t, 90))}
    t = _time(lambda: critic.progress(pair, task, reference=ref, first_frame=pair[0][0]), args.repeats)
    res["one_shot_pair_latency_batch1_s"] = {"median": float(np.median(t)), "p90": float(np.percentile(t, 90))}
    t = _time(lambda: critic.done([pair[0][1]], task), args.repeats)
    res["done_latency_batch1_s"] = {"median": float(np.median(t))}
    t = _time(lambda: critic.progress(pairs32, task), max(5, args.repeats // 5))
    res["pairs_per_s_batch32"] = float(32 / np.median(t))
    t = _time(lambda: critic.progress(pairs32, task, reference=ref, first_frame=pairs32[0][0]), max(5, args.repeats // 5))
    res["one_shot_pairs_per_s_batch32"] = float(32 / np.median(t))
    t = _time(lambda: critic.progress(pair, task, symmetric=True), args.repeats)
    res["symmetric_pair_latency_batch1_s"] = {"median": float(np.median(t)), "p90": float(np.percentile(t, 90))}
    t = _time(lambda: critic.progress(pairs32, task, symmetric=True), max(5, args.repeats // 5))
    res["symmetric_pairs_per_s_batch32"] = float(32 / np.median(t))
    res["threads"] = args.threads
    res["parameters_M"] = round(critic.vlm.num_parameters() / 1e6, 2)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
