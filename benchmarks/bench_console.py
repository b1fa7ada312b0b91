"""Does the operator console slow the robots, and does it stay responsive? The same short `vlac rl`
run (4 simulated robots, lock-step) without and with `--console`; with it, clients poll the page's
snapshot and fetch every robot's newest frame as the page does (one per open tab), for the whole
run. Reported: the loop's observation-to-action latency and episodes per hour in both arms, and the
console's request latencies (snapshot and frame) under that load.

    MUJOCO_GL=egl python benchmarks/bench_console.py --robots 4 --episodes 12 --tabs 2 --out runs/bench_console
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np


def _tab(url: str, stop: threading.Event, lat: dict, every: float) -> None:
    """What one open page does: poll the snapshot, fetch each robot's frame when it changed."""
    seen: dict = {}
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(url + "api/state", timeout=30) as r:
                state = json.loads(r.read())
        except OSError:
            break  # the run ended
        lat["state"].append(time.perf_counter() - t0)
        for robot, info in state["robots"].items():
            if info["obs_id"] is None or seen.get(robot) == info["obs_id"]:
                continue
            seen[robot] = info["obs_id"]
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(f"{url}api/robots/{robot}/frame.jpg", timeout=30) as r:
                    r.read()
            except OSError:
                continue  # the robot is between episodes
            lat["frame"].append(time.perf_counter() - t0)
        stop.wait(every)


def one_run(out: Path, args, console: bool) -> dict:
    cmd = [sys.executable, "-m", "vlac.scripts.cli", "rl", "--out", str(out), "--tasks", "reach-v3", "push-v3",
           "--robots", str(args.robots), "--episodes", str(args.episodes), "--episodes-per-update", "4",
           "--max-steps", str(args.max_steps), "--eval-episodes", "0", "--done-threshold", "1.5",
           "--seed", str(args.seed)]
    if console:
        cmd += ["--console", "127.0.0.1:0"]
    loop = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            env={**os.environ, "TQDM_DISABLE": "1"})
    lat: dict = {"state": [], "frame": []}
    stop, tabs = threading.Event(), []
    if console:
        end = time.monotonic() + 180
        while not (out / "console.txt").exists():
            if time.monotonic() > end or loop.poll() is not None:
                loop.kill()
                raise SystemExit(f"the console did not start: {' '.join(cmd)}")
            time.sleep(0.2)
        url = (out / "console.txt").read_text().strip()
        tabs = [threading.Thread(target=_tab, args=(url, stop, lat, 0.3), daemon=True) for _ in range(args.tabs)]
        for t in tabs:
            t.start()
    code = loop.wait(timeout=3600)
    stop.set()
    for t in tabs:
        t.join(10)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {code}")
    stats = json.loads((out / "loop_stats.json").read_text())
    row = {"console": console, "episodes_per_hour": stats["episodes_per_hour"],
           "obs_to_action_median_ms": 1000 * stats["obs_to_action_median"],
           "obs_to_action_p99_ms": 1000 * stats["obs_to_action_p99"], "wall_s": stats["wall_seconds"]}
    for kind, xs in lat.items():
        if xs:
            row[f"{kind}_requests"] = len(xs)
            row[f"{kind}_median_ms"] = 1000 * float(np.median(xs))
            row[f"{kind}_p99_ms"] = 1000 * float(np.percentile(xs, 99))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--robots", type=int, default=4)
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--max-steps", type=int, default=40)
    ap.add_argument("--tabs", type=int, default=2, help="open pages polling the console")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench_console")
    args = ap.parse_args()
    root = Path(args.out)
    rows = []
    for console in (False, True):
        run = root / ("with-console" if console else "without")
        if run.exists():
            import shutil

            shutil.rmtree(run)
        rows.append(one_run(run, args, console))
        print(json.dumps(rows[-1]), flush=True)
    (root / "bench_console.json").write_text(json.dumps(rows, indent=1))
    print("| console | episodes/h | obs->action median / p99 (ms) | snapshot median / p99 (ms) | frame median / p99 (ms) |")
    print("|---|---|---|---|---|")
    for r in rows:
        def pair(k):
            return f"{r[k + '_median_ms']:.0f} / {r[k + '_p99_ms']:.0f} ({r[k + '_requests']})" if k + "_requests" in r else "-"

        print(f"| {'on' if r['console'] else 'off'} | {r['episodes_per_hour']:.0f} | {r['obs_to_action_median_ms']:.0f} / "
              f"{r['obs_to_action_p99_ms']:.0f} | {pair('state')} | {pair('frame')} |")


if __name__ == "__main__":
    main()
