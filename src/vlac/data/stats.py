"""Feature statistics in LeRobot's layout: per episode, and merged over a dataset.

Each feature gets min, max, mean, std, count and the quantiles q01, q10, q50, q90, q99.
Vectors give per-dimension values; images give per-channel values of shape (3, 1, 1) in 0..1.
Merging over episodes does what LeRobot 0.6.1 does (``aggregate_feature_stats`` in its
``datasets/compute_stats.py``), so that a dataset both tools append to has one meaning for
meta/stats.json: min of mins, max of maxes, mean and std pooled over all frames, and each
quantile the mean of the episodes' quantiles weighted by their counts (an estimate: exact
quantiles of the union cannot be recovered from per-episode quantiles).

    >>> merged = merge_stats([feature_stats(ep_a), feature_stats(ep_b)])
"""

from __future__ import annotations

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QKEYS = tuple(f"q{int(q * 100):02d}" for q in QUANTILES)
STAT_KEYS = ("min", "max", "mean", "std", "count", *QKEYS)


def feature_stats(values: np.ndarray, is_image: bool = False, max_images: int = 100) -> dict[str, np.ndarray]:
    """Stats of (T, ...) values. Images (T, H, W, 3) uint8 are subsampled to ``max_images`` frames
    and reduced per channel to (3, 1, 1), scaled to 0..1."""
    if is_image:
        idx = np.linspace(0, len(values) - 1, min(len(values), max_images)).round().astype(int)
        x = values[idx].astype(np.float64) / 255.0  # (N, H, W, 3)
        flat = x.reshape(-1, 3)
        count = np.array([len(idx)])

        def shape(v):
            return np.asarray(v).reshape(3, 1, 1)
    else:
        flat = values.astype(np.float64).reshape(len(values), -1)
        count = np.array([len(values)])

        def shape(v):
            return np.asarray(v).reshape(-1)
    out = {
        "min": shape(flat.min(0)), "max": shape(flat.max(0)),
        "mean": shape(flat.mean(0)), "std": shape(flat.std(0)), "count": count,
    }
    qs = np.quantile(flat, QUANTILES, axis=0)
    for k, q in zip(QKEYS, qs):
        out[k] = shape(q)
    return out


def merge_stats(per_episode: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Merge one feature's stats over episodes (see the module docstring for the rules)."""
    counts = np.array([s["count"][0] for s in per_episode], dtype=np.float64)
    w = counts / counts.sum()
    means = np.stack([s["mean"] for s in per_episode])
    mean = np.tensordot(w, means, axes=1)
    # pooled variance of the union: within-episode variance plus the spread of episode means
    # around the pooled mean (no E[x^2] - E[x]^2 cancellation for features far from zero)
    spread = np.stack([s["std"] ** 2 + (s["mean"] - mean) ** 2 for s in per_episode])
    out = {
        "min": np.min([s["min"] for s in per_episode], axis=0),
        "max": np.max([s["max"] for s in per_episode], axis=0),
        "mean": mean,
        "std": np.sqrt(np.tensordot(w, spread, axes=1)),
        "count": np.array([int(counts.sum())]),
    }
    for k in QKEYS:
        if all(k in s for s in per_episode):  # LeRobot skips a quantile some episode lacks
            out[k] = np.tensordot(w, np.stack([s[k] for s in per_episode]), axes=1)
    return out


def dataset_stats(rows: list[dict], features: dict) -> dict[str, dict[str, np.ndarray]]:
    """meta/stats.json of a dataset from its episode rows (columns ``stats/{feature}/{key}``):
    each feature merged over the episodes that carry its stats."""
    merged = {}
    for feat in features:
        per_ep = [{k: np.asarray(r[f"stats/{feat}/{k}"]) for k in STAT_KEYS if r.get(f"stats/{feat}/{k}") is not None}
                  for r in rows if r.get(f"stats/{feat}/mean") is not None]
        if per_ep:
            merged[feat] = merge_stats(per_ep)
    return merged


def to_jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {f: {k: np.asarray(v).tolist() for k, v in s.items()} for f, s in stats.items()}
