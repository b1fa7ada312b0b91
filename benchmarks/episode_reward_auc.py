"""How well a finished `vlac rl` run's critic readings rank its own training episodes, success
against failure (the simulator's flag, measurement only), from the per-step details the run saved
in RUN/rl_steps/:

- the dense return (the sum of the critic's progress deltas, `--learner.reward dense`);
- the last frame's p(done);
- the `final` reward (the mean p(done) of the last ``FINAL_FRAMES`` transitions, `--learner.reward final`).

    python benchmarks/episode_reward_auc.py runs/dialo-critic-final runs/dialo-critic
    python benchmarks/episode_reward_auc.py runs/leverb-final --group 8 --thresholds 0.5

An AUC of 0.5 is chance: a reward whose AUC is at or under it cannot steer the learner towards
success, whatever the learner.

``--group G`` adds what the learner got from the `final` reward under `--learner.advantage outcome`:
the outcome advantages of each G consecutive episodes (one on-policy update of configs/rl/outcome.yaml:
8 episodes of one task) against those the simulator's flag would have given the same episodes (the
oracle-sparse arm's signal), as their mean correlation over the updates (1: the reference arm's
signal; 0: none of it). ``--thresholds`` adds the same for the verdict made binary at each threshold
(1 where the `final` reward reaches it, else 0). Per window of episodes as the policy moves:
`benchmarks/done_detector.py --run RUN --window N`.
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


def advantage_agreement(success: np.ndarray, reward: np.ndarray, group: int) -> float:
    """Mean over consecutive groups of ``group`` episodes of the correlation between the outcome
    advantages ``reward`` gives them and those the success flag gives them (groups where either is
    constant, so one of the two says nothing, are left out); NaN when no group has both."""
    from vlac.rl.ppo import outcome_advantages

    corr = []
    for i in range(0, len(success) - group + 1, group):
        a = outcome_advantages(reward[i:i + group], np.zeros(group))
        b = outcome_advantages(success[i:i + group].astype(float), np.zeros(group))
        if a.any() and b.any():
            corr.append(float(a @ b) / group)  # both are standardised: their mean product is the correlation
    return float(np.mean(corr)) if corr else float("nan")


def main() -> None:
    from vlac.eval.fidelity import auc

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="`vlac rl --out` folders")
    ap.add_argument("--group", type=int, default=0,
                    help="also the outcome advantages' agreement with the flag's, updates of GROUP episodes (0: off)")
    ap.add_argument("--thresholds", type=float, nargs="*", default=[],
                    help="with --group: the agreement of the `final` verdict made binary at each of these")
    args = ap.parse_args()
    if args.group < 0 or (args.thresholds and not args.group):
        ap.error(f"--group {args.group}: give a number of episodes per update >= 1 (0: off; --thresholds needs it)")
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
        if args.group:
            flag = np.array([r[0] for r in rows])
            final = np.array([r[3] for r in rows])
            print(f"  outcome advantages against the flag's, mean correlation over updates of {args.group}: "
                  f"`final` {advantage_agreement(flag, final, args.group):.3f}, dense return "
                  f"{advantage_agreement(flag, np.array([r[1] for r in rows]), args.group):.3f}"
                  + "".join(f", `final` >= {t:g} "
                            f"{advantage_agreement(flag, (final >= t).astype(float), args.group):.3f}"
                            for t in args.thresholds))


if __name__ == "__main__":
    main()
