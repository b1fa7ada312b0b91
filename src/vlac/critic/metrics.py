"""Progress metrics (paper section 4.3, Eq. 7-9) and the value recursion, as pure functions.

    >>> v = value_curve([0.5, 0.5])            # [0, 0.5, 0.75]
    >>> voc(v)                                  # 1.0: values rise with time
    >>> voc_f1(0.9, 0.8)                        # harmonic mean 0.847

VOC is the Spearman rank correlation of a value curve with time. VROC scores the video fed in
reverse: every pair is inverted, the value curve is built over the reversed video and correlated
with the frames' true (forward) order, so a good critic scores high on both.
"""

from __future__ import annotations

import numpy as np


def value_curve(deltas, v0: float = 0.0, clamp: bool = True) -> np.ndarray:
    """Eq. 7: ``v_{k+1} = v_k + (1 - v_k) c_k`` from ``v_0``; returns len(deltas) + 1 values.

    ``clamp`` keeps v in [0, 1] (a progress value; what rewards and plots use). Without it this is
    Eq. 7 literally: a negative c from v < 0 pushes v further down (the recursion diverges, but
    monotonically, so rank metrics stay meaningful)."""
    c = np.asarray(deltas, dtype=np.float64)
    v = np.empty(len(c) + 1)  # (N+1,)
    v[0] = v0
    for k, ck in enumerate(c):
        v[k + 1] = value_step(v[k], ck, clamp)
    return v


def value_step(v: float, delta: float, clamp: bool = True) -> float:
    """One step of Eq. 7 (what ``value_curve`` iterates; the RL loop keeps a running value with it)."""
    nxt = v + (1.0 - v) * delta
    return min(max(nxt, 0.0), 1.0) if clamp else nxt


def done_frames(p_done, threshold: float) -> np.ndarray:
    """The one done rule, shared by the RL loop, `vlac critic eval` and `calibrate-done`: a frame
    is done where p(done) >= ``threshold`` (after the value gate, ``gate_done``, where one is set)."""
    return np.asarray(p_done, dtype=np.float64) >= threshold


def gate_done(p_done, values, min_value: float = 0.0) -> np.ndarray:
    """Progress-gated done: ``p_done`` where the critic's own value curve has reached
    ``min_value``, 0 elsewhere (a frame cannot be done while the critic rates the progress low).
    ``min_value`` 0 leaves ``p_done`` as it is."""
    p, v = np.asarray(p_done, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if p.shape != v.shape:
        raise ValueError(f"p_done {p.shape} and values {v.shape} must be the same shape (one value per scored frame)")
    return np.where(v >= min_value, p, 0.0)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of ``a`` and ``b``; NaN where either is constant (no order), ``a``
    is not finite or there are fewer than 2 points."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0 or not np.isfinite(a).all():
        return float("nan")  # a constant curve has no order
    return float(spearmanr(a, b).statistic)


def voc(values) -> float:
    """Rank correlation of values with frame order (-1..1; NaN for a constant curve)."""
    v = np.asarray(values)
    return spearman(v, np.arange(len(v)))


def vroc(reversed_values) -> float:
    """``reversed_values[k]`` is the value of the k-th frame of the reversed video, i.e. of
    forward frame n-1-k; correlate with that forward order."""
    v = np.asarray(reversed_values)
    return spearman(v, np.arange(len(v))[::-1])


def voc_f1(voc_value: float, vroc_value: float) -> float:
    """Eq. 8, the harmonic mean. When either is <= 0 the harmonic mean is meaningless (it can be
    negative-over-negative); we report the smaller of the two, so failing either direction
    cannot score well."""
    a, b = voc_value, vroc_value
    if not (np.isfinite(a) and np.isfinite(b)):
        return float("nan")
    if a <= 0 or b <= 0:
        return float(min(a, b))
    return float(2 * a * b / (a + b))


def negative_rate(deltas) -> float:
    """Eq. 9: the fraction of pairwise deltas below zero."""
    c = np.asarray(deltas, dtype=np.float64)
    return float((c < 0).mean()) if len(c) else float("nan")


def pair_indices(n_frames: int, skip: int) -> list[int]:
    """Frames scored with step ``skip``: 0, skip, 2 skip, ..., always ending at the last frame."""
    if n_frames < 2:
        raise ValueError(f"a trajectory needs at least 2 frames to score, got {n_frames}")
    if skip < 1:
        raise ValueError(f"skip must be >= 1, got {skip}")
    idx = list(range(0, n_frames, skip))
    if idx[-1] != n_frames - 1:
        idx.append(n_frames - 1)
    return idx


def binary_scores(pred, truth) -> dict:
    """Accuracy, precision, recall and F1 of boolean predictions."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"accuracy": float((p == t).mean()) if len(p) else float("nan"), "precision": prec,
            "recall": rec, "f1": f1, "n": int(len(p))}


class DoneRule:
    """The RL loop's done rule, one implementation online and offline: a transition counts where
    p(done) >= ``threshold`` and the value curve has reached ``min_value`` (0: no gate); the
    episode ends at the ``patience``-th such transition in a row.

        >>> rule = DoneRule(0.9, patience=2)
        >>> [rule.step(p, v) for p, v in [(0.95, 0.5), (0.2, 0.6), (0.91, 0.7), (0.99, 0.8)]]
        [False, False, False, True]
        >>> DoneRule(0.9, 2).first([0.95, 0.2, 0.91, 0.99], [0.5, 0.6, 0.7, 0.8])
        3
    """

    def __init__(self, threshold: float = 0.5, patience: int = 1, min_value: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.threshold, self.patience, self.min_value = threshold, patience, min_value
        self.streak = 0

    def reset(self) -> None:
        self.streak = 0

    def step(self, p_done: float, value: float = 1.0) -> bool:
        """One scored transition (its p(done) and the value after it); True once the rule fires."""
        over = bool(done_frames(gate_done([p_done], [value], self.min_value), self.threshold)[0])
        self.streak = self.streak + 1 if over else 0
        return self.streak >= self.patience

    def first(self, p_done, values=None) -> int | None:
        """Index of the transition at which the rule ends an episode, or None if it never fires."""
        p = np.asarray(p_done, dtype=np.float64)
        v = np.ones_like(p) if values is None else np.asarray(values, dtype=np.float64)
        self.reset()
        for k, (pk, vk) in enumerate(zip(p, v)):
            if self.step(pk, vk):
                return k
        return None


def first_done(p_done, threshold: float = 0.5, patience: int = 1) -> int | None:
    """Index of the frame at which a detector that needs ``patience`` consecutive frames with
    ``p_done >= threshold`` ends the episode (the RL loop's rule), or None if it never fires."""
    return DoneRule(threshold, patience).first(p_done)


def termination(p_done, truth, threshold: float = 0.5, patience: int = 1) -> str:
    """How a done detector would end one episode, against the simulator's per-frame flag:
    ``early`` (fires before the first successful frame, or at all in a failed episode: the episode
    is cut short and its outcome mislabelled), ``on-time`` (fires at or after the first successful
    frame), ``missed`` (a successful episode it never ends) or ``correct-none`` (a failed episode
    it never ends)."""
    t = np.asarray(truth, dtype=bool)
    k = first_done(p_done, threshold, patience)
    first_true = int(np.argmax(t)) if t.any() else None
    if first_true is None:
        return "correct-none" if k is None else "early"
    if k is None:
        return "missed"
    return "on-time" if k >= first_true else "early"
