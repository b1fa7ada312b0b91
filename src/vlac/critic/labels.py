"""Training labels of the critic (paper section 3.1.1) as pure functions of frame indices.

Frames of an episode are indexed 0..last (``last = T``, the completed state). Progress from
frame ``a`` to frame ``b`` is the share of the task still to do at ``a`` that ``b`` achieves:
``c = (b - a) / (last - a)``; moving backwards gives a negative share.

    >>> progress_label(10, 15, last=60)      # 5 of the 50 remaining steps
    0.1
    >>> joint_group(10, 30)                  # the four samples built from one draw
    [(10, 11), (11, 10), (10, 30), (30, 10)]
"""

from __future__ import annotations

import numpy as np

PIXEL_DIFF_THRESHOLD = 0.01
"""Pairs whose mean absolute pixel difference is below 1% of full scale are labelled 0."""


def progress_label(first: int, second: int, last: int) -> float:
    """``c = (second - first) / (last - first)``, clipped to [-1, 1].

    Answers are whole percentages in [-100, 100]. A backward jump from late in the episode can
    exceed -100% of the remaining work (e.g. from 0.9T back to 0.5T is -400%); it is clipped to
    -1, which still reads as "undone". With ``first == last`` nothing remains: any earlier frame
    gets -1."""
    if not (0 <= first <= last and 0 <= second <= last):
        raise ValueError(f"frames ({first}, {second}) outside the episode 0..{last}")
    if second == first:
        return 0.0
    if first == last:
        return -1.0
    return float(np.clip((second - first) / (last - first), -1.0, 1.0))


def admissible_offsets(i: int, last: int) -> tuple[int, int]:
    """The range of dt for a pair (i, i + dt): from -i (back to the first frame) to last - i."""
    return -i, last - i


def joint_group(i: int, j: int, step: int = 1) -> list[tuple[int, int]]:
    """The four samples of one draw: fine forward/backward (i, i+step) and the long pair (i, j)
    both ways."""
    return [(i, i + step), (i + step, i), (i, j), (j, i)]


def pixel_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images as a fraction of full scale (0..1)."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() / 255.0)


def filtered_label(first: int, second: int, last: int, diff: float,
                   threshold: float = PIXEL_DIFF_THRESHOLD) -> float:
    """``progress_label``, except 0 when the two frames barely differ (``diff < threshold``)."""
    return 0.0 if diff < threshold else progress_label(first, second, last)


def done_label(i: int, last: int) -> int | None:
    """1 after 95% of the episode, 0 before 80%, None (no label) in between."""
    if i > 0.95 * last:
        return 1
    if i < 0.8 * last:
        return 0
    return None


def done_ranges(last: int) -> tuple[range, range]:
    """Frames labelled not-done and done, for drawing one balanced pair per trajectory."""
    not_done = [i for i in range(last + 1) if done_label(i, last) == 0]
    done = [i for i in range(last + 1) if done_label(i, last) == 1]
    return range(not_done[0], not_done[-1] + 1), range(done[0], done[-1] + 1)


def done_frames_from_flag(flags) -> tuple[np.ndarray, np.ndarray] | None:
    """Not-done and done frames from a per-frame success flag (e.g. the simulator's): done where
    the flag is on, not done where it is off before the first success. None when it never comes on."""
    flags = np.asarray(flags, dtype=bool)
    on = np.flatnonzero(flags)
    if not len(on):
        return None
    return np.flatnonzero(~flags[:on[0]]), on


def near_miss_count(not_done: int) -> int:
    """How many of an episode's ``not_done`` frames before its success moment are "just short of
    the goal" (hard not-done frames): the last 20 %, at least one."""
    return max(1, not_done // 5)


def description_ranges(last: int) -> tuple[range, range]:
    """Start frames in the first 30% and end frames in the last 20% (task description objective)."""
    return range(0, int(0.3 * last) + 1), range(int(np.ceil(0.8 * last)), last + 1)


def reference_frames(last: int, k: int) -> list[int]:
    """k frame indices evenly spread from the first to the last frame of a reference episode."""
    if k < 2:
        raise ValueError(f"a reference needs at least 2 frames, got k={k}")
    return [int(round(x)) for x in np.linspace(0, last, k)]


def frame_progress(t: int, last: int) -> int:
    """The progress label (percent) written next to a reference frame: linear in time."""
    return int(round(100 * t / max(last, 1)))


def to_percent(c: float) -> int:
    return int(round(100 * c))
