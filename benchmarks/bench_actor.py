"""Actor inference speed on this machine: one action at batch 1 (greedy and sampled; the target
is 50 ms on CPU for the tiny preset), actions/s at batch 8 and 32, and the teacher-forced
re-scoring PPO uses (batch 32).

    python benchmarks/bench_actor.py [--actor DIR] [--threads 2] [--repeats 30]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from timing import time_calls
from vlac.actor.actor import Actor, ActorInput


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--actor", default="builtin")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    actor = Actor.load(args.actor)
    rng = np.random.default_rng(0)

    def inputs(n):
        return [ActorInput(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), np.array([0.0, 600, 200, 1]),
                           "push the puck to the goal") for _ in range(n)]

    one, b8, b32 = inputs(1), inputs(8), inputs(32)
    res = {}
    t = time_calls(lambda: actor.act(one, greedy=True), args.repeats)
    res["action_latency_batch1_greedy_s"] = {"median": float(np.median(t)), "p90": float(np.percentile(t, 90))}
    t = time_calls(lambda: actor.act(one, temperature=1.0), args.repeats)
    res["action_latency_batch1_sampled_s"] = {"median": float(np.median(t)), "p90": float(np.percentile(t, 90))}
    t = time_calls(lambda: actor.act(b8, temperature=1.0), max(5, args.repeats // 3))
    res["actions_per_s_batch8"] = float(8 / np.median(t))
    t = time_calls(lambda: actor.act(b32, temperature=1.0), max(5, args.repeats // 5))
    res["actions_per_s_batch32"] = float(32 / np.median(t))
    samples = actor.act(b32, temperature=1.0)
    with torch.no_grad():
        t = time_calls(lambda: actor.evaluate(b32, samples), max(5, args.repeats // 5))
    res["teacher_forced_rescore_batch32_s"] = float(np.median(t))
    res["threads"] = args.threads
    res["parameters_M"] = round(actor.vlm.num_parameters() / 1e6, 2)
    res["generated_tokens_per_action"] = int(np.mean([len(s.choice_index) for s in samples]))
    res["tokens_per_action"] = int(np.mean([len(s.tokens) for s in samples]))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
