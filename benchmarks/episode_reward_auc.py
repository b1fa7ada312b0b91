"""How well a finished `vlac rl` run's critic readings rank its own training episodes, success
against failure (the simulator's flag, measurement only), from the per-step details the run saved
in RUN/rl_steps/:

- the dense return (the sum of the critic's progress deltas, `--learner.reward dense`);
- the last frame's p(done);
- the `final` reward (the mean p(done) of the last ``FINAL_FRAMES`` transitions, `--learner.reward final`).

    python benchmarks/episode_reward_auc.py runs/dialo-critic-final runs/dialo-critic

An AUC of 0.5 is chance: a reward whose AUC is at or under it cannot steer the learner towards
success, whatever the learner.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def readings(run: Path) -> list[tuple[bool, float, float, float]]:
    """(success, dense return, last p(done), final reward) of each training episode with a flag."""
    from vlac.rl.episodes import FINAL_FRAMES

    rows = []
    for path in sorted((run / "rl_steps").glob("episode_*.json")):
        ep = json.loads(path.read_text())
        scored = [s for s in ep["steps_detail"] if s.get("p_done") is not None and np.isfinite(s["p_done"])]
        if ep.get("success") is None or not scored:
            continue  # a real robot (no flag) or an arm run without a critic
        p_done = [s["p_done"] for s in scored]
        rows.append((bool(ep["success"]), float(sum(s["reward"] for s in scored)), p_done[-1],
                     float(np.mean(p_done[-FINAL_FRAMES:]))))
    return rows


def main() -> None:
    from vlac.eval.fidelity import auc

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="`vlac rl --out` folders")
    args = ap.parse_args()
    print(f"{'run':40s} {'eps':>4s} {'succ':>4s} {'dense':>6s} {'last':>6s} {'final':>6s}   (AUC, success vs failure)")
    for run in args.runs:
        rows = readings(Path(run))
        if not rows:
            print(f"{run:40s} no episodes with a success flag and critic readings")
            continue
        ok = [r for r in rows if r[0]]
        bad = [r for r in rows if not r[0]]
        aucs = [auc([r[k] for r in ok], [r[k] for r in bad]) for k in (1, 2, 3)]
        print(f"{run:40s} {len(rows):4d} {len(ok):4d} " + " ".join(f"{a:6.2f}" for a in aucs))


if __name__ == "__main__":
    main()
