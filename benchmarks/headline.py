"""Issue 19's summary across tasks: each arm's success on fresh seeds, per seed and pooled, from the
`vlac actor eval` folders the recipes wrote (report.json), as a markdown table and a bar plot.

    python benchmarks/headline.py --spec benchmarks/headline.json --out docs/figures/rl-headline.png

The spec names, per task, the arms and for each arm its seeds (runs of the loop), each with the
evaluation folders that scored its final actor and the RL episodes it was trained for:

    {"sweep-into-v3": {"critic final": [{"seed": 0, "rl_episodes": 200,
                                        "evals": ["runs/sweep-fresh:critic final", "runs/sweep-fresh41"]}]}}

An evaluation is `FOLDER` (its only checkpoint) or `FOLDER:NAME` (the checkpoint named NAME in
`vlac actor eval --names`). A seed's rate pools its evaluations' episodes; an arm's pooled rate pools
its seeds'. The start actor is an arm like any other (its `rl_episodes` 0). The error bars are one
binomial standard error of the pooled rate. Success is the simulator's flag, read only here.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

from vlac.utils.report import decoding_label

TARGET = 0.8  # issue 19: the critic arm's mean success over the tasks at 200 episodes


@dataclass
class Seed:
    seed: int
    rl_episodes: int
    successes: int
    episodes: int
    decoding: str = "greedy"  # how its evaluations read the actions (vlac.utils.report.decoding_label)

    @property
    def rate(self) -> float:
        return self.successes / self.episodes


def read_eval(entry: str) -> tuple[int, int, str]:
    """(successes, episodes, decoding) of one checkpoint in a `vlac actor eval` folder."""
    folder, _, name = entry.partition(":")
    report_path = Path(folder) / "report.json"
    if not report_path.is_file():
        raise SystemExit(f"{report_path} not found: give a folder written by `vlac actor eval --out`")
    report = json.loads(report_path.read_text())
    overall = report["overall"]
    if not name:
        if len(overall) != 1:
            raise SystemExit(f"{folder} holds {len(overall)} checkpoints ({', '.join(overall)}); "
                             f"name one as {folder}:NAME")
        name = next(iter(overall))
    if name not in overall:
        raise SystemExit(f"{folder} has no checkpoint named {name!r}; it has: {', '.join(overall)}")
    cell = overall[name]
    return round(cell["success"] * cell["episodes"]), int(cell["episodes"]), decoding_label(report.get("config", {}))


def one_decoding(what: str, decodings: dict[str, str]) -> str:
    """The one decoding of evaluations pooled together; pooling greedy with sampled or mean episodes
    would average two different measurements (one button clone: 0.71 greedy, 0.975 by its mean)."""
    kinds = set(decodings.values())
    if len(kinds) > 1:
        raise SystemExit(f"{what} pools evaluations decoded in different ways ("
                         + "; ".join(f"{k}: {v}" for k, v in decodings.items())
                         + "): evaluate them alike (`vlac actor eval` with the same --mean / --temperature)")
    return kinds.pop()


def load(spec: dict) -> dict[str, dict[str, list[Seed]]]:
    out: dict[str, dict[str, list[Seed]]] = {}
    for task, arms in spec.items():
        out[task] = {}
        for arm, seeds in arms.items():
            rows = []
            for s in seeds:
                counts = {e: read_eval(e) for e in s["evals"]}
                rows.append(Seed(int(s.get("seed", 0)), int(s.get("rl_episodes", 0)),
                                 sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values()),
                                 one_decoding(f"{task} / {arm} / seed {s.get('seed', 0)}",
                                              {e: c[2] for e, c in counts.items()})))
            one_decoding(f"{task} / {arm}", {f"seed {r.seed}": r.decoding for r in rows})
            out[task][arm] = rows
    return out


def pooled(seeds: list[Seed]) -> tuple[float, float, int]:
    """(rate, binomial standard error, episodes) over all seeds' evaluation episodes."""
    n = sum(s.episodes for s in seeds)
    p = sum(s.successes for s in seeds) / n
    return p, math.sqrt(p * (1 - p) / n), n


def table(results: dict[str, dict[str, list[Seed]]]) -> str:
    lines = ["| task | arm | RL episodes per seed | fresh success per seed | pooled (episodes) | decoding |",
             "|---|---|---|---|---|---|"]
    for task, arms in results.items():
        for arm, seeds in arms.items():
            p, se, n = pooled(seeds)
            lines.append(f"| {task} | {arm} | {' / '.join(str(s.rl_episodes) for s in seeds)} | "
                         f"{' / '.join(f'{s.rate:.3f}' for s in seeds)} | **{p:.3f}** ± {se:.3f} ({n}) | {seeds[0].decoding} |")
    common = [a for a in next(iter(results.values())) if all(a in arms for arms in results.values())]
    for arm in common:
        rates = [pooled(results[t][arm])[0] for t in results]
        how = ", ".join(dict.fromkeys(results[t][arm][0].decoding for t in results))
        lines.append(f"| mean over {len(results)} tasks | {arm} | | | **{sum(rates) / len(rates):.3f}** | {how} |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, list[Seed]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(a for arms in results.values() for a in arms))
    width = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(2.2 + 2.0 * len(results), 3.8))
    for j, arm in enumerate(arms):
        colour = f"C{j}"
        for i, task in enumerate(results):
            seeds = results[task].get(arm)
            if not seeds:
                continue
            x = i - 0.4 + width * (j + 0.5)
            p, se, _ = pooled(seeds)
            ax.bar(x, p, width * 0.9, yerr=se, color=colour, alpha=0.75, capsize=3,
                   label=arm if i == next(k for k, t in enumerate(results) if arm in results[t]) else None)
            ax.scatter([x] * len(seeds), [s.rate for s in seeds], color="k", s=10, zorder=3)
    ax.axhline(TARGET, color="k", ls="--", lw=0.8)
    ax.text(0.995, TARGET - 0.01, f"target {TARGET}", transform=ax.get_yaxis_transform(), ha="right", va="top",
            fontsize=8)
    ax.set_xticks(range(len(results)), list(results))
    ax.set_ylim(0, 1.18)
    ax.set_ylabel("success on fresh seeds (simulator flag)")
    ax.set_title("Final actors on fresh seeds: bars pooled over seeds (± 1 SE), dots one seed each", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", ncol=min(len(arms), 3), frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", type=Path, default=Path("benchmarks/headline.json"),
                    help="JSON: task -> arm -> list of {seed, rl_episodes, evals}")
    ap.add_argument("--out", type=Path, default=None, help="bar plot (png); the table is printed either way")
    args = ap.parse_args()
    if not args.spec.is_file():
        raise SystemExit(f"{args.spec} not found: give --spec a JSON file (see this script's docstring)")
    results = load(json.loads(args.spec.read_text()))
    print(table(results))
    if args.out:
        plot(results, args.out)
        print(f"plot written to {args.out}")


if __name__ == "__main__":
    main()
