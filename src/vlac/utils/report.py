"""Plots and Markdown tables for critic scores and evaluations (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scores(score, title: str, path: str | Path) -> None:
    """Value curve, pairwise deltas and done probability of one scored trajectory; ``title``
    says what was scored and how (task, episode or video, outcome, reading)."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    idx = np.asarray(score.indices)
    axes[0].plot(idx, score.values, "o-", ms=3)
    axes[0].set_ylabel("value")
    axes[0].set_ylim(-0.05, 1.05)
    axes[0].set_title(title, fontsize=8)
    axes[1].bar(idx[1:], score.deltas, width=max(1, (idx[1] - idx[0]) * 0.8),
                color=np.where(score.deltas >= 0, "tab:green", "tab:red"))
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].set_ylabel("progress delta")
    if score.done is not None:
        axes[2].plot(idx, score.done, "o-", ms=3, color="tab:purple")
        axes[2].axhline(0.5, color="k", lw=0.5, ls="--")
    axes[2].set_ylabel("p(done)")
    axes[2].set_ylim(-0.05, 1.05)
    axes[2].set_xlabel("frame")
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))  # frames are whole numbers
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_value_curves(curves: dict[str, list[tuple[np.ndarray, np.ndarray, bool]]], path: str | Path,
                      title: str = "") -> None:
    """One panel per task; each curve (frame indices, values, success) drawn green if the
    episode succeeded, red if it failed (grey if it has no flag), so failures stand out against successes."""
    plt = pyplot()
    tasks = sorted(curves)
    if not tasks:
        return
    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for idx, values, ok in curves[task]:
            ax.plot(np.asarray(idx) / max(idx[-1], 1), values, color={True: "tab:green", False: "tab:red"}.get(ok, "tab:gray"),
                    alpha=0.8, lw=1.2)
        ax.set_title(task, fontsize=8)
        ax.set_ylim(-0.05, 1.05)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.suptitle(f"{title}  (green: successful, red: failed, grey: no flag; x: fraction of episode)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fmt(x, digits: int = 2) -> str:
    """A figure for a report; "n/a" where it is undefined (e.g. precision with nothing predicted)."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(v) if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


def mean_of_known(xs) -> float:
    """The mean of the values that exist (None and NaN left out); NaN when none does."""
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


def decoding_label(cfg: dict) -> str:
    """How an evaluation read the actor's numbers, in a few words, from an eval.jsonl record of the
    loop or the config of ``vlac actor eval``: ``greedy``, ``sampled at T=...`` or ``mean at T=...``.
    Success under two decodings is two different measurements of one actor (BENCHMARKS.md, "Mean
    decoding": one clone, 0.71 greedy, 0.975 by its mean), so plots and tables that set runs side
    by side name it."""
    temp = float(cfg.get("temperature") or 0.0)
    if cfg.get("mean"):
        return f"mean at T={temp or 1:g}"
    return f"sampled at T={temp:g}" if temp > 0 else "greedy"
