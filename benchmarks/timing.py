"""Shared timing helper of the benchmark scripts."""

from __future__ import annotations

import time

import numpy as np


def time_calls(fn, repeats: int) -> np.ndarray:
    """Seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return np.array(out)
