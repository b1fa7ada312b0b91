"""The human-in-the-loop protocol's arms side by side (paper Table 3 and Fig. 6, in simulation): for
each finished `vlac rl` run, evaluation success along the way (the loop's fixed evaluation seeds,
simulator flag), episodes until evaluation first reached a target, the final success, and the
operator effort (takeovers, operator steps, return-and-explore episodes). Also draws the runs'
evaluation curves with `vlac rl compare`.

    python benchmarks/hitl_arms.py --runs runs/hitl-a-baseline runs/hitl-b-replay runs/hitl-c-return \
        runs/hitl-d-guided --names baseline "+ replay" "+ return" "+ guided" --out runs/hitl-arms.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlac.rl.report import read_log  # a run's JSON-lines log, [] when absent


def summary(run: Path, target: float) -> dict:
    evals = read_log(run / "eval.jsonl")
    episodes = read_log(run / "episodes.jsonl")
    stats = json.loads((run / "loop_stats.json").read_text()) if (run / "loop_stats.json").exists() else {}
    reached = next((e["episodes"] for e in evals if e["success"] >= target), None)
    return {"run": str(run), "evaluations": [(e["episodes"], round(e["success"], 3)) for e in evals],
            "episodes": len(episodes), f"episodes_to_{target}": reached,
            "final": evals[-1]["success"] if evals else None,
            "takeovers": stats.get("takeovers", 0) + stats.get("console_takeovers", 0),
            "operator_steps": stats.get("operator_steps", 0), "return_episodes": stats.get("return_episodes", 0),
            "training_successes": sum(bool(e.get("success")) for e in episodes),
            "wall_s": stats.get("wall_seconds")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True)
    ap.add_argument("--names", nargs="+", required=True)
    ap.add_argument("--target", type=float, default=0.8)
    ap.add_argument("--out", default="", help="the evaluation curves, drawn by `vlac rl compare` (PNG)")
    args = ap.parse_args()
    if len(args.names) != len(args.runs):
        raise SystemExit(f"--names gives {len(args.names)} names for {len(args.runs)} --runs")
    rows = [summary(Path(r), args.target) | {"name": n} for r, n in zip(args.runs, args.names)]
    print(json.dumps(rows, indent=1))
    print(f"| arm | evaluation success (episodes: success) | episodes to {args.target} | final | takeovers | "
          "operator steps | return episodes | training episodes the simulator calls successful |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        curve = ", ".join(f"{n}: {s:.2f}" for n, s in r["evaluations"])
        reached = r[f"episodes_to_{args.target}"]
        print(f"| {r['name']} | {curve} | {'not reached' if reached is None else reached} | "
              f"{r['final'] if r['final'] is None else format(r['final'], '.2f')} | {r['takeovers']} | "
              f"{r['operator_steps']} | {r['return_episodes']} | {r['training_successes']} of {r['episodes']} |")
    if args.out:
        from vlac.scripts.cli import main as vlac

        vlac(["rl", "compare", "--runs", *args.runs, "--names", *args.names, "--out", args.out])


if __name__ == "__main__":
    main()
