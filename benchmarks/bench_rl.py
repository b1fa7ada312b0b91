"""The RL loop's speed on this machine with 1, 2 and 4 simulated robots: observation-to-action
latency (median, p99), robot idle fraction (time waiting for actions), allocation latency,
critic reward latency, learner update time and episodes per hour. Each setting is a real
`vlac rl` run (Ray and ZeroMQ on 127.0.0.1, lock-step robots) with evaluation off.

    python benchmarks/bench_rl.py [--robots 1,2,4] [--episodes-per-robot 3] [--max-steps 30] [--out runs/bench_rl]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from vlac.rl.report import SPEED_KEYS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--robots", default="1,2,4")
    ap.add_argument("--episodes-per-robot", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--inference-workers", type=int, default=1)
    ap.add_argument("--out", default="runs/bench_rl")
    args = ap.parse_args()
    rows = {}
    for n in [int(x) for x in args.robots.split(",")]:
        run = Path(args.out) / f"robots-{n}"
        subprocess.run(["rm", "-rf", str(run)], check=True)
        cmd = [sys.executable, "-m", "vlac.scripts.cli", "rl", "--out", str(run), "--robots", str(n),
               "--tasks", "reach-v3,push-v3", "--episodes", str(n * args.episodes_per_robot),
               "--episodes-per-update", str(max(2, n)), "--max-steps", str(args.max_steps), "--eval-episodes", "0",
               "--inference-workers", str(args.inference_workers)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        stats = json.loads((run / "loop_stats.json").read_text())
        idle = stats["robot_idle_fraction"]
        rows[n] = {k: stats[k] for k in (*SPEED_KEYS, "updates", "wall_seconds")}
        rows[n]["robot_idle_fraction_mean"] = sum(idle.values()) / max(len(idle), 1)
        print(json.dumps({n: rows[n]}), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench_rl.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
