"""Success of several actors on the same start states, and who beat whom start for start: for each pair
of arms, the starts only the first solved against those only the second solved, with an exact two-sided
sign test. Paired, the comparison sees through the spread between start states that an unpaired rate
carries (on lever-pull about half of the flag's variance lies between starts).

    python benchmarks/paired_success.py --arm "start=runs/leverb-start-fresh-mean30000,runs/leverb-start-fresh-mean41000" \\
        --arm "defaults=runs/leverb-kl02-fresh-mean30000,runs/leverb-kl02-fresh-mean41000"

An arm is ``NAME=EVAL[,EVAL...]``; an evaluation is a `vlac actor eval` folder, ``FOLDER`` (its only
checkpoint) or ``FOLDER:CHECKPOINT`` (one of its `--names`), as in `benchmarks/headline.py`. A start is
(task, variant, seed) of `episodes.jsonl`; success is the simulator's flag, read only here. Arms evaluated
with different decodings (greedy, by the mean, sampled) are refused: they measure different things.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import runpy
from pathlib import Path

HEADLINE = runpy.run_path(str(Path(__file__).with_name("headline.py")))


def read_starts(entry: str) -> tuple[dict[tuple, bool], str]:
    """{(task, variant, seed): success} of one checkpoint of a `vlac actor eval` folder, and its decoding."""
    folder, _, name = entry.partition(":")
    _, _, decoding = HEADLINE["read_eval"](entry)  # checks the folder and the checkpoint's name
    if not name:
        name = next(iter(json.loads((Path(folder) / "report.json").read_text())["overall"]))
    starts = {}
    for line in (Path(folder) / "episodes.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e.get("checkpoint") == name:
            starts[(e["task"], e.get("variant", "default"), e["seed"])] = bool(e["success"])
    return starts, decoding


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial sign test of ``wins`` against ``losses`` (ties left out)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def load(arms: list[str]) -> dict[str, dict[tuple, bool]]:
    out, decodings = {}, {}
    for arm in arms:
        name, eq, evals = arm.partition("=")
        if not eq or not evals:
            raise SystemExit(f"--arm {arm!r}: give NAME=FOLDER[,FOLDER...] (a `vlac actor eval` folder, or FOLDER:CHECKPOINT)")
        starts = {}
        for entry in evals.split(","):
            part, decodings[entry] = read_starts(entry)
            starts.update(part)
        out[name] = starts
    HEADLINE["one_decoding"]("these arms", decodings)
    return out


def table(arms: dict[str, dict[tuple, bool]]) -> str:
    rows = ["| arm | successes / starts | success |", "|---|---|---|"]
    rows += [f"| {n} | {sum(s.values())} / {len(s)} | {sum(s.values()) / max(len(s), 1):.3f} |" for n, s in arms.items()]
    rows += ["", "| A | B | starts both ran | only A solved | only B solved | sign test p |", "|---|---|---|---|---|---|"]
    for (a, sa), (b, sb) in itertools.combinations(arms.items(), 2):
        both = sa.keys() & sb.keys()
        wins = sum(sa[k] and not sb[k] for k in both)
        losses = sum(sb[k] and not sa[k] for k in both)
        rows.append(f"| {a} | {b} | {len(both)} | {wins} | {losses} | {sign_test(wins, losses):.3f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arm", action="append", required=True, help="NAME=FOLDER[:CHECKPOINT][,FOLDER...]")
    print(table(load(ap.parse_args().arm)))


if __name__ == "__main__":
    main()
