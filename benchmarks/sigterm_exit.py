"""How `vlac rl` exits when stopped by SIGTERM (a scheduler's or `kill`'s stop): the exit code of
N runs, each started as the SIGTERM test starts it and sent SIGTERM once 2 episodes are on disk.
128 + 15 = 143 is right; Ray once turned a signal landing inside its waits into 1.

    MUJOCO_GL=egl python benchmarks/sigterm_exit.py --runs 6 [--critic none]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(out: Path, critic: str) -> int:
    cmd = [sys.executable, "-m", "vlac.scripts.cli", "rl", "--out", str(out), "--tasks", "reach-v3", "--robots", "1",
           "--episodes", "1000", "--episodes-per-update", "1000", "--max-steps", "6", "--eval-episodes", "0"]
    if critic == "none":
        cmd += ["--learner.reward", "oracle-sparse", "--critic", "none"]
    loop = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TQDM_DISABLE": "1"})
    log = out / "episodes.jsonl"
    end = time.monotonic() + 180
    while not (log.exists() and log.read_text().count("\n") >= 2):
        if time.monotonic() > end or loop.poll() is not None:
            loop.kill()
            raise SystemExit(f"no 2 episodes from {' '.join(cmd)}")
        time.sleep(0.2)
    loop.send_signal(signal.SIGTERM)
    return loop.wait(timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--critic", default="builtin", help="builtin, or none (the oracle-sparse reference arm)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    codes = [one_run(root / f"run{k}", args.critic) for k in range(args.runs)]
    shutil.rmtree(root, ignore_errors=True)
    print(f"exit codes: {codes}; {sum(c == 143 for c in codes)} of {len(codes)} are 143")


if __name__ == "__main__":
    main()
