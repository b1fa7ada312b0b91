"""Does the critic's dense reward rank the policy's own episodes by their outcome?

Scores every step pair (frame t -> t+1, as the RL loop does) of every episode of a dataset, e.g.
rollouts of the actor recorded with `vlac actor eval --record DIR --temperature 1`, and reports
per task and outcome (simulator flag, measurement only) the mean return (sum of step rewards, the
loop's dense return before discounting), the mean reward per step and the final value (Eq. 7,
clamped), plus their AUCs: the probability that a successful episode's figure beats a failed
one's of the same task (0.5: no signal; 1: a perfect ranking). Successful rollouts stop a few
steps after success while failed ones run to the limit, so the return also measures length (the
per-step mean does not), unlike the loop with the critic's done off, where every episode runs
to the limit.

    python benchmarks/reward_fidelity.py runs/policy-rollouts [--symmetric] [--out fidelity.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from tqdm import tqdm

from vlac.eval.fidelity import auc  # the one AUC of success against failure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("--critic", default="builtin")
    ap.add_argument("--symmetric", action="store_true")
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    from vlac.critic.critic import Critic
    from vlac.critic.metrics import value_curve
    from vlac.utils.report import markdown_table
    from vlac.data.dataset import LeRobotDataset

    ds = LeRobotDataset(args.dataset)
    critic = Critic.load(args.critic, symmetric=args.symmetric)
    key = ds.camera_keys[0]
    rows = []
    for i in tqdm(range(ds.num_episodes), desc="score", unit="ep"):
        meta, ep = ds.meta(i), ds.episode(i)
        frames = ep.images[key]
        d = critic.progress(list(zip(frames[:-1], frames[1:])), ep.task)
        rows.append({"task": meta.get("env_task", ep.task), "success": bool(meta.get("success")), "steps": len(d),
                     "return": float(d.sum()), "per_step": float(d.mean()), "final_value": float(value_curve(d)[-1])})
    summary = []
    for task in sorted({r["task"] for r in rows}):
        good = [r for r in rows if r["task"] == task and r["success"]]
        bad = [r for r in rows if r["task"] == task and not r["success"]]
        mean = lambda rs, k: float(np.mean([r[k] for r in rs])) if rs else float("nan")  # noqa: E731
        summary.append({"task": task, "successful": len(good), "failed": len(bad),
                        "return_successful": mean(good, "return"), "return_failed": mean(bad, "return"),
                        "value_successful": mean(good, "final_value"), "value_failed": mean(bad, "final_value"),
                        "per_step_successful": mean(good, "per_step"), "per_step_failed": mean(bad, "per_step"),
                        "auc_return": auc([r["return"] for r in good], [r["return"] for r in bad]),
                        "auc_per_step": auc([r["per_step"] for r in good], [r["per_step"] for r in bad]),
                        "auc_value": auc([r["final_value"] for r in good], [r["final_value"] for r in bad])})
    print(f"\nsymmetric={args.symmetric}")
    print(markdown_table(["task", "successful / failed", "return successful vs failed", "per step successful vs failed",
                          "final value successful vs failed", "AUC return", "AUC per step", "AUC value"],
                         [[s["task"], f"{s['successful']} / {s['failed']}",
                           f"{s['return_successful']:+.2f} vs {s['return_failed']:+.2f}",
                           f"{s['per_step_successful']:+.3f} vs {s['per_step_failed']:+.3f}",
                           f"{s['value_successful']:.2f} vs {s['value_failed']:.2f}",
                           s["auc_return"], s["auc_per_step"], s["auc_value"]] for s in summary]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"symmetric": args.symmetric, "summary": summary, "episodes": rows}, f, indent=1)


if __name__ == "__main__":
    main()
