"""How the RL loop's done rule would end episodes, from a `vlac critic eval` report's per-frame
done probabilities (`episodes.jsonl`), for several thresholds and patiences.

    python benchmarks/done_rule.py runs/critic-eval/episodes.jsonl --thresholds 0.5,0.9 --patience 1,4,12

Per setting: among failed episodes, the share the rule would end (a false done: the episode is
cut and scored as finished); among successful ones, the share it ends at all and on time (at or
after the simulator's first successful frame). Scored frames are every `--skip`-th frame of the
evaluation (use `--skip 1` there to match the loop, which scores every step).
"""

from __future__ import annotations

import argparse
import json

from vlac.critic import metrics as M
from vlac.utils.report import markdown_table


def summarise(records: list[dict], threshold: float, patience: int) -> dict:
    failed = [r for r in records if not r["success"]]
    good = [r for r in records if r["success"]]
    fired = lambda r: M.first_done(r["done"]["p"], threshold, patience) is not None  # noqa: E731
    on_time = [M.termination(r["done"]["p"], r["done"]["truth"], threshold, patience) == "on-time" for r in good]
    return {"threshold": threshold, "patience": patience, "failed": len(failed), "successful": len(good),
            "failed_ended": sum(map(fired, failed)) / max(len(failed), 1),
            "successful_ended": sum(map(fired, good)) / max(len(good), 1),
            "successful_on_time": sum(on_time) / max(len(good), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("episodes", help="episodes.jsonl of a `vlac critic eval` report")
    ap.add_argument("--thresholds", default="0.5,0.9")
    ap.add_argument("--patience", default="1,4,12")
    args = ap.parse_args()
    with open(args.episodes) as f:
        records = [r for r in map(json.loads, f) if "p" in r.get("done", {})]
    if not records:
        raise SystemExit(f"error: {args.episodes} has no per-frame done probabilities; run `vlac critic eval` "
                         "on a dataset whose episodes carry the simulator flag (sim.success)")
    rows = [summarise(records, float(t), int(k)) for t in args.thresholds.split(",") for k in args.patience.split(",")]
    print(markdown_table(["threshold", "patience", "failed episodes ended (false done)", "successful ended",
                          "successful on time"],
                         [[r["threshold"], r["patience"], f"{r['failed_ended']:.2f} of {r['failed']}",
                           f"{r['successful_ended']:.2f} of {r['successful']}", f"{r['successful_on_time']:.2f}"]
                          for r in rows]))


if __name__ == "__main__":
    main()
