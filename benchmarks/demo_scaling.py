"""Is this actor's success limited by how many demonstrations it sees, or by the actor? (issue 19)

Demonstration replay is the one lever that has raised the built-in actor's success in the loop
(lever-pull-v3: 0.28 -> 0.55 on fresh seeds with 40 demonstrations), and it levels off there. This
separates the two readings of that plateau offline: behaviour cloning from the prior on N scripted
expert demonstrations of one task, evaluated greedy on held-out seeds after several numbers of
gradient steps. If success rises with N at equal steps, more demonstrations (an operator's) are the
lever; if it stays flat, the actor is.

One N per process, so two N run side by side on two cores:

    python benchmarks/demo_scaling.py --task lever-pull-v3 --demos 160 --evals 300,600,1200 --threads 1 --out runs/demo-scale-160

Demonstration seeds come from 40000 and evaluation seeds from 41000 (the same as
``dagger_probe.py``, so N=40 at 300 steps repeats its ``demos`` arm). The simulator's success flag
is used to measure only. Writes OUT/report.json, updated after every evaluation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dagger_probe import bc_steps, expert_demos, success


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="lever-pull-v3")
    ap.add_argument("--actor", default="builtin", help="prior actor (default: the built-in tiny actor)")
    ap.add_argument("--demos", type=int, default=40, help="expert demonstrations to clone")
    ap.add_argument("--evals", default="300,600,1200",
                    help="gradient steps after which to evaluate; training stops at the last")
    ap.add_argument("--eval-episodes", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", action="store_true", help="write the last actor to OUT/model")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    evals = sorted({int(s) for s in args.evals.split(",") if s})
    if not evals or evals[0] < 0:
        ap.error(f"--evals {args.evals!r}: give step counts such as 300,600,1200")

    from vlac.actor.actor import Actor, ActorInput
    from vlac.data.tasks import TASKS
    from vlac.sim.rollout import episode_seed

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = TASKS[args.task].instruction
    t0 = time.perf_counter()
    demos = expert_demos(args.task, [episode_seed(40_000, args.task, i) for i in range(args.demos)], args.max_steps)
    data = [(ActorInput(f, s, text, []), a) for d in demos for f, s, a in zip(d["frames"], d["states"], d["expert"])]
    eval_seeds = [episode_seed(41_000, args.task, i) for i in range(args.eval_episodes)]
    report = {"args": vars(args), "demos_successful": int(sum(d["success"] for d in demos)),
              "samples": len(data), "evals": []}

    actor = Actor.load(args.actor)
    opt = torch.optim.AdamW(actor.parameters(), lr=args.lr)
    rng = np.random.default_rng(0)
    losses: list[float] = []
    done = 0
    for target in tqdm(evals, desc="evaluations", unit="eval"):
        bc_steps(actor, opt, data, target - done, args.batch, rng, losses, desc=f"steps to {target}", leave=False)
        done = target
        rate = success(actor, args.task, eval_seeds, 0.0, args.max_steps)
        report["evals"].append({"steps": target, "epochs": round(target * args.batch / len(data), 2),
                                "loss_last_20": float(np.mean(losses[-20:])) if losses else None,
                                "greedy": rate, "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(report["evals"][-1]), flush=True)
        (out / "report.json").write_text(json.dumps(report, indent=1))
    if args.save:
        actor.save(out / "model")


if __name__ == "__main__":
    main()
