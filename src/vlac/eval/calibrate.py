"""``vlac critic calibrate-done``: choose the done rule on a validation collection.

The critic's done answer alone calls frames done a little before the simulator's success (and in
some failed episodes). The paper's loop detects done from progress as well (section 7: "progress-based
done detection"); here a frame counts as done where ``p(done) >= threshold`` *and* the critic's own
zero-shot value curve has reached ``min_value``. This command re-reads the per-episode records that
``vlac critic eval`` wrote (no model is run), scores every pair of settings against the simulator's
per-frame flag and reports the one with the best frame-level F1, so the same settings can then be
given to ``vlac critic eval --done-threshold T --done-min-value V`` on the test splits and to the
RL loop (``done_threshold`` / ``done_min_value`` in an RL config).

    vlac critic eval --dataset runs/critic-data/val --no-one-shot --out runs/val-eval
    vlac critic calibrate-done --episodes runs/val-eval --out runs/val-done
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vlac.eval.critic_eval import done_scores, read_episodes
from vlac.utils.report import markdown_table


@dataclass
class CalibrateConfig:
    episodes: list[str]
    """``vlac critic eval`` output folders (or their episodes.jsonl files)."""
    out: str
    """Output folder: calibrate.json, calibrate.md and calibrate.png (F1 over the grid)."""
    thresholds: list[float] = field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    """p(done) thresholds to try."""
    min_values: list[float] = field(default_factory=lambda: [0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9])
    """Value gates to try (0: no gate)."""
    split: str = ""
    """Only episodes of this split (seen, held-out); default: all of them pooled."""


def _floats(values: list[float], name: str) -> list[float]:
    if not values:
        raise ValueError(f"--{name} is empty; give numbers, e.g. --{name} 0.5 0.7 0.9")
    return sorted(set(float(v) for v in values))


def load_records(spec: list[str]) -> list[dict]:
    """Episode records of one or more ``vlac critic eval`` runs, with done probabilities."""
    records = []
    for part in spec:
        path = Path(part)
        path = path / "episodes.jsonl" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"{part}: no episodes.jsonl; give a folder written by `vlac critic eval --out`")
        records += [r for r in read_episodes(path) if "p" in r.get("done", {})]
    if not records:
        raise ValueError(f"{', '.join(spec)}: no episode has done probabilities (the evaluated dataset needs the "
                         "per-frame success flag, sim.success)")
    return records


def calibrate(cfg: CalibrateConfig) -> dict:
    records = load_records(cfg.episodes)
    if cfg.split:
        splits = sorted({r["split"] for r in records})
        records = [r for r in records if r["split"] == cfg.split]
        if not records:
            raise ValueError(f"--split {cfg.split!r} has no episodes; the records hold {', '.join(splits)}")
    for r in records:  # one split key for the pooled scores
        r["split"] = "pooled"
    ths, mvs = _floats(cfg.thresholds, "thresholds"), _floats(cfg.min_values, "min-values")
    grid = []
    for th in ths:
        for mv in mvs:
            d = done_scores(records, th, mv)["pooled"]
            ep = d["episodes"]
            grid.append({"threshold": th, "min_value": mv, "f1": d["f1"], "precision": d["precision"],
                         "recall": d["recall"], "early_patience_2": ep["patience 2"]["early"],
                         "on_time_patience_2": ep["patience 2"]["on-time"]})
    f1 = np.array([g["f1"] for g in grid], dtype=np.float64)
    best = grid[int(np.nanargmax(np.nan_to_num(f1, nan=-1.0)))]  # first best: lowest threshold, no gate first
    base = {k: v for k, v in done_scores(records, 0.5, 0.0)["pooled"].items() if k != "episodes"}
    result = {"best": best, "ungated_at_0.5": base, "episodes": len(records),
              "frames": int(sum(len(r["done"]["p"]) for r in records)), "grid": grid, "config": asdict(cfg)}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibrate.json").write_text(json.dumps(result, indent=1))
    rows = [[g["threshold"], g["min_value"], g["f1"], g["precision"], g["recall"], g["early_patience_2"],
             g["on_time_patience_2"]] for g in grid]
    md = ["# Done calibration", "", f"{result['episodes']} episodes, {result['frames']} scored frames "
          f"({', '.join(cfg.episodes)}).", "",
          f"Best frame-level F1 {best['f1']:.3f}: `--done-threshold {best['threshold']} --done-min-value "
          f"{best['min_value']}`.", "",
          markdown_table(["threshold", "min value", "F1", "precision", "recall", "early (patience 2)",
                          "on time (patience 2)"], rows)]
    (out / "calibrate.md").write_text("\n".join(md) + "\n")
    _plot(grid, ths, mvs, out / "calibrate.png")
    print("\n".join(md[:6]))
    print(f"wrote {out / 'calibrate.md'}, {out / 'calibrate.json'} and {out / 'calibrate.png'}")
    return result


def _plot(grid: list[dict], ths: list[float], mvs: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f1 = np.full((len(ths), len(mvs)), np.nan)
    for g in grid:
        f1[ths.index(g["threshold"]), mvs.index(g["min_value"])] = g["f1"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(mvs), 1.0 + 0.5 * len(ths)))
    im = ax.imshow(f1, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
    for i in range(len(ths)):
        for j in range(len(mvs)):
            if np.isfinite(f1[i, j]):
                ax.text(j, i, f"{f1[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if f1[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(mvs)), [f"{v:g}" for v in mvs])
    ax.set_yticks(range(len(ths)), [f"{t:g}" for t in ths])
    ax.set(xlabel="value gate (min value)", ylabel="p(done) threshold", title="done F1 (frames)")
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
