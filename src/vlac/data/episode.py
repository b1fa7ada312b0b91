"""The in-memory episode record that robots, simulators and datasets exchange.

    >>> ep = Episode(task="open the drawer", images={"main": frames}, state=s, action=a)
    >>> ep.length, ep.is_success
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Episode:
    task: str
    """The natural-language instruction of every frame."""
    images: dict[str, np.ndarray]
    """{camera key: (T, H, W, 3) uint8}"""
    state: np.ndarray
    """(T, S) float32 robot state (simulated arm: x, y, z mm and gripper opening)."""
    action: np.ndarray
    """(T, A) float32 action taken from each frame (simulated arm: dx, dy, dz mm and open)."""
    success: np.ndarray | None = None
    """(T,) bool simulator success flag per frame; None for real robots (no ground truth)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Per-episode metadata: behaviour, seed, scene_variant, env_task, plan_index, success."""
    timestamp: np.ndarray | None = None
    """(T,) seconds from the episode start, when read from a dataset."""

    def __post_init__(self) -> None:
        n = len(self.action)
        if n == 0:
            raise ValueError("an episode needs at least one frame")
        for key, v in self.images.items():
            if v.ndim != 4 or v.shape[-1] != 3 or len(v) != n:
                raise ValueError(f"images[{key!r}] must be ({n}, H, W, 3), got {v.shape}")
            if v.dtype != np.uint8:
                raise ValueError(f"images[{key!r}] must be uint8 RGB, got {v.dtype}")
        if len(self.state) != n:
            raise ValueError(f"state has {len(self.state)} frames but action has {n}")
        if self.success is not None and len(self.success) != n:
            raise ValueError(f"success has {len(self.success)} frames but action has {n}")

    @property
    def length(self) -> int:
        return len(self.action)

    @property
    def is_success(self) -> bool | None:
        """The simulator's flag at the last frame (None without ground truth)."""
        if "success" in self.meta and self.meta["success"] is not None:
            return bool(self.meta["success"])
        return None if self.success is None else bool(self.success[-1])
