"""The RL run's final report: success on evaluation episodes and return per robot (PNG), and a
summary table (report.md) from the logs the loop wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vlac.critic.report import _plt, fmt, markdown_table


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def _smooth(y: np.ndarray, k: int = 10) -> np.ndarray:
    if len(y) < 2:
        return y
    k = max(1, min(k, len(y)))
    return np.convolve(y, np.ones(k) / k, mode="valid")


def write_report(run: str | Path) -> Path:
    run = Path(run)
    episodes, evals, learner = _rows(run / "episodes.jsonl"), _rows(run / "eval.jsonl"), _rows(run / "learner.jsonl")
    stats = json.loads((run / "loop_stats.json").read_text()) if (run / "loop_stats.json").is_file() else {}
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if evals:
        axes[0].plot([e["episodes"] for e in evals], [e["success"] for e in evals], "o-")
    axes[0].set(xlabel="training episodes", ylabel="success (evaluation episodes)", ylim=(0, 1),
                title="success (simulator flag)")
    for robot in sorted({e["robot"] for e in episodes}):
        mine = [e for e in episodes if e["robot"] == robot]
        x, raw = [e["n"] for e in mine], np.array([e["return"] for e in mine])
        line = axes[1].plot(x, raw, ".", alpha=0.35)[0]
        y = _smooth(raw, max(1, len(raw) // 4))
        axes[1].plot(x[len(x) - len(y):], y, "-", color=line.get_color(), label=robot)
    axes[1].set(xlabel="training episodes", ylabel="critic return (smoothed)", title="reward per robot")
    if episodes:
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=120)
    plt.close(fig)
    rows = [["episodes", len(episodes)], ["policy updates", len(learner)],
            ["evaluation success, first", fmt(evals[0]["success"]) if evals else "-"],
            ["evaluation success, last", fmt(evals[-1]["success"]) if evals else "-"],
            ["mean critic return, first 20 episodes", fmt(np.mean([e["return"] for e in episodes[:20]])) if episodes else "-"],
            ["mean critic return, last 20 episodes", fmt(np.mean([e["return"] for e in episodes[-20:]])) if episodes else "-"],
            ["episodes ended by the critic's done", sum(e["reason"] == "done" for e in episodes)],
            ["simulator success among training episodes", fmt(np.mean([bool(e["success"]) for e in episodes])) if episodes else "-"]]
    for k in ("episodes_per_hour", "obs_to_action_median", "obs_to_action_p99", "assign_median", "assign_p99",
              "critic_seconds_per_pair", "update_seconds_median"):
        if k in stats:
            rows.append([k.replace("_", " "), fmt(stats[k], 3)])
    if learner:
        last = learner[-1]
        for k in ("clip_fraction", "approx_kl", "entropy", "explained_variance", "inference_ratio_drift"):
            if k in last:
                rows.append([f"last update: {k.replace('_', ' ')}", fmt(last[k], 3)])
    md = ("# RL run\n\n![curves](curves.png)\n\n" + markdown_table(["", "value"], rows) + "\n\n"
          "Success is measured on separate evaluation episodes with the simulator's flag, which the learner never "
          "sees; rewards and done come from the critic only.\n")
    (run / "report.md").write_text(md)
    return run / "report.md"


def compare(runs: list[str], names: list[str], out: str | Path) -> None:
    """Evaluation success against training episodes for several runs on one plot (e.g. dense
    critic rewards against the sparse baseline)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for run, name in zip(runs, names):
        evals = _rows(Path(run) / "eval.jsonl")
        ax.plot([e["episodes"] for e in evals], [e["success"] for e in evals], "o-", label=name)
    ax.set(xlabel="training episodes", ylabel="success (evaluation episodes)", ylim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Plot evaluation success of several `vlac rl` runs together.")
    ap.add_argument("--runs", required=True, help="comma-separated run folders")
    ap.add_argument("--names", required=True, help="comma-separated labels")
    ap.add_argument("--out", required=True, help="PNG file")
    a = ap.parse_args()
    compare(a.runs.split(","), a.names.split(","), a.out)
