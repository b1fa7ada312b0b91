"""Could the critic's value curve replace its done answer? Per-frame done F1 against the
simulator's flag, from a `vlac critic eval` report's `episodes.jsonl`, for the done probability
alone, the value curve alone (value >= threshold) and both together. No model is run: the eval
already stored, for every scored frame, the value (zero-shot and one-shot) and p_done.

    python benchmarks/done_from_value.py runs/s3sym/eval-seen/episodes.jsonl --thresholds 0.7,0.8,0.9,0.95
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from vlac.critic import metrics as M
from vlac.utils.report import markdown_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("episodes", help="episodes.jsonl written by `vlac critic eval`")
    ap.add_argument("--thresholds", default="0.7,0.8,0.9,0.95", help="value thresholds, comma-separated")
    ap.add_argument("--done-threshold", type=float, default=0.5, help="p_done that counts as done")
    args = ap.parse_args()
    recs = [json.loads(line) for line in open(args.episodes)]
    rows = []
    for mode in ("zero_shot", "one_shot"):
        use = [r for r in recs if r.get(mode) and r.get("done")]
        if not use:
            continue
        truth = np.concatenate([np.asarray(r["done"]["truth"], bool) for r in use])
        p = np.concatenate([np.asarray(r["done"]["p"], float) for r in use])
        value = np.concatenate([np.asarray(r[mode]["values"], float) for r in use])

        def row(name, pred):
            s = M.binary_scores(pred, truth)
            rows.append([mode.replace("_", "-"), name, f"{s['f1']:.2f}", f"{s['precision']:.2f}",
                         f"{s['recall']:.2f}", s["n"]])

        row(f"p_done >= {args.done_threshold}", M.done_frames(p, args.done_threshold))
        for th in (float(x) for x in args.thresholds.split(",")):
            row(f"value >= {th}", value >= th)
            row(f"value >= {th} and p_done >= {args.done_threshold}",
                M.done_frames(M.gate_done(p, value, th), args.done_threshold))
    print(markdown_table(["reading", "done rule", "F1", "precision", "recall", "frames"], rows))


if __name__ == "__main__":
    main()
