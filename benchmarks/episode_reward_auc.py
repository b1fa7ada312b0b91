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
(1 where the `final` reward reaches it, else 0). ``--by-scene`` takes the advantages within the
episodes of each update that began from one start, as `--learner.outcome-groups scene` does (an
episode without a start id, or begun at a return point, is a group of its own, with no signal);
``--undivided`` leaves them undivided by the group's spread, as `--learner.no-outcome-by-std`.
The agreement is then the cosine of the two advantage vectors over each update (with one group
and standardised advantages that is their correlation). Per window of episodes as the policy
moves: `benchmarks/done_detector.py --run RUN --window N`.

    python benchmarks/episode_reward_auc.py runs/lever100-scene --group 8 --by-scene
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def readings(run: Path) -> list[tuple]:
    """(success, dense return, last p(done), final reward, (task, start id, return point)) of each
    training episode with a flag."""
    from vlac.rl.episodes import FINAL_FRAMES

    rows = []
    for path in sorted((run / "rl_steps").glob("episode_*.json")):
        ep = json.loads(path.read_text())
        scored = [s for s in ep["steps_detail"] if s.get("p_done") is not None and np.isfinite(s["p_done"])]
        if ep.get("success") is None or not scored:
            continue  # a real robot (no flag) or an arm run without a critic
        p_done = [s["p_done"] for s in scored]
        rows.append((bool(ep["success"]), float(sum(s["reward"] for s in scored)), p_done[-1],
                     float(np.mean(p_done[-FINAL_FRAMES:])), (ep.get("task", ""), ep.get("scene"), ep.get("start"))))
    return rows


def start_groups(starts: list) -> np.ndarray:
    """Group ids of one update's episodes, each given as (task, start id, return point), by the
    learner's own rule (`outcome_group` with ``by="scene"``)."""
    from vlac.rl.episodes import EpisodeRecord
    from vlac.rl.learner import outcome_group

    keys = [outcome_group(EpisodeRecord("", task, i, start=start, scene=scene), i, "scene")
            for i, (task, scene, start) in enumerate(starts)]
    ids = {k: n for n, k in enumerate(dict.fromkeys(keys))}
    return np.array([ids[k] for k in keys])


def advantage_agreement(success: np.ndarray, reward: np.ndarray, group: int, scenes: list | None = None,
                        by_std: bool = True) -> float:
    """Mean over consecutive updates of ``group`` episodes of the cosine between the outcome
    advantages ``reward`` gives them and those the success flag gives them, taken within the update
    (``scenes`` None) or within its episodes of one start (updates where either is all 0, so one of
    the two says nothing, are left out); NaN when no update has both."""
    from vlac.rl.ppo import outcome_advantages

    corr = []
    for i in range(0, len(success) - group + 1, group):
        ids = np.zeros(group, int) if scenes is None else start_groups(scenes[i:i + group])
        a = outcome_advantages(reward[i:i + group], ids, by_std=by_std)
        b = outcome_advantages(success[i:i + group].astype(float), ids, by_std=by_std)
        if a.any() and b.any():
            corr.append(float(a @ b) / float(np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.mean(corr)) if corr else float("nan")


def main() -> None:
    from vlac.eval.fidelity import auc

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="`vlac rl --out` folders")
    ap.add_argument("--group", type=int, default=0,
                    help="also the outcome advantages' agreement with the flag's, updates of GROUP episodes (0: off)")
    ap.add_argument("--thresholds", type=float, nargs="*", default=[],
                    help="with --group: the agreement of the `final` verdict made binary at each of these")
    ap.add_argument("--by-scene", action="store_true",
                    help="with --group: advantages within each update's episodes of one start (outcome-groups scene)")
    ap.add_argument("--undivided", action="store_true",
                    help="with --group: advantages not divided by their group's spread (--learner.no-outcome-by-std)")
    args = ap.parse_args()
    if args.group < 0 or ((args.thresholds or args.by_scene or args.undivided) and not args.group):
        ap.error(f"--group {args.group}: give a number of episodes per update >= 1 (0: off; --thresholds needs it, "
                 "as do --by-scene and --undivided)")
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
            scenes = [r[4] for r in rows] if args.by_scene else None

            def agree(reward: np.ndarray) -> str:
                return f"{advantage_agreement(flag, reward, args.group, scenes, not args.undivided):.3f}"

            within = "episodes of one start" if args.by_scene else "the update"
            print(f"  outcome advantages (within {within}{', undivided' if args.undivided else ''}) against the "
                  f"flag's, mean cosine over updates of {args.group}: `final` {agree(final)}, dense return "
                  f"{agree(np.array([r[1] for r in rows]))}"
                  + "".join(f", `final` >= {t:g} {agree((final >= t).astype(float))}" for t in args.thresholds))


if __name__ == "__main__":
    main()
