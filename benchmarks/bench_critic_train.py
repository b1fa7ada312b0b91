"""Time one critic training step, split into its parts, at several batch sizes.

Parts: drawing samples (numpy), encoding them (tokenizer + image preprocessing, on the CPU),
and forward + backward + AdamW step on the chosen device. Tells how large a batch a device can
take before the CPU side (one Python thread, as in `vlac critic train`) is the bottleneck.

    python benchmarks/bench_critic_train.py --device cuda --batch-sizes 32,128,256
    python benchmarks/bench_critic_train.py --data runs/critic-data/train --device cpu --threads 2

Without --data, trajectories of random frames stand in (the timing does not depend on the
pictures); with --data, the dataset's successful episodes are used.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--critic", default="builtin", help="critic checkpoint (default: the built-in one)")
    ap.add_argument("--data", default="", help="LeRobot dataset (default: random frames)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-sizes", default="32,128")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per batch size (after 2 warm-up steps)")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    import torch

    from vlac.model import model_path
    from vlac.train.samples import SampleSource, Trajectory, load_trajectories
    from vlac.data.dataset import LeRobotDataset
    from vlac.model.vlm import VLM

    if args.threads:
        torch.set_num_threads(args.threads)
    vlm = VLM.load(model_path(args.critic, "critic"), device=args.device)
    if args.data:
        trajs = load_trajectories([LeRobotDataset(args.data)])
    else:
        rng = np.random.default_rng(0)
        size = vlm.preprocess.image_size
        trajs = [Trajectory(f"task {k % 4}", rng.integers(0, 256, (60, size, size, 3), dtype=np.uint8), str(k))
                 for k in range(16)]
    source = SampleSource(trajs)
    vlm.train(True)
    opt = torch.optim.AdamW(vlm.model.parameters(), lr=1e-5)
    rng = np.random.default_rng(1)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    rows = []
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        parts = {"draw": [], "encode": [], "step": []}
        for k in range(args.steps + 2):
            t0 = time.perf_counter()
            prompts, answers = source.draw("progress", rng, bs)
            t1 = time.perf_counter()
            batch = vlm.encode(prompts, answers)
            sync()
            t2 = time.perf_counter()
            loss = vlm.loss(batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync()
            t3 = time.perf_counter()
            if k >= 2:
                parts["draw"].append(t1 - t0)
                parts["encode"].append(t2 - t1)
                parts["step"].append(t3 - t2)
        row = {"batch": bs, **{f"{k}_ms": 1000 * float(np.median(v)) for k, v in parts.items()}}
        total = sum(row[f"{k}_ms"] for k in parts)
        row["samples_per_s"] = bs / total * 1000
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n| batch | draw ms | encode ms | fwd+bwd+step ms | samples/s |  ({args.device})\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['draw_ms']:.1f} | {r['encode_ms']:.1f} | {r['step_ms']:.1f} | {r['samples_per_s']:.0f} |")


if __name__ == "__main__":
    main()
