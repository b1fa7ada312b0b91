"""What crosses between the loop and its Ray workers, typed: inference requests and replies,
critic requests and scores. Plain dataclasses (Ray pickles them), so a field's name and meaning
are written once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ActRequest:
    """One waiting observation for an inference replica."""

    robot: str
    obs_id: int
    image: np.ndarray  # (S, S, 3) uint8: the camera the actor reads, through the run's preprocess
    state: np.ndarray  # (state_dim,)
    task: str
    history: list = field(default_factory=list)  # executed actions the prompt shows
    t_recv: float = 0.0  # when the gateway received the observation (loop clock)


@dataclass
class ActReply:
    """A replica's answer to one request: a sample, or the error that request alone failed with."""

    robot: str
    obs_id: int
    seconds: float = 0.0  # the whole batch's decoding time
    sample: dict | None = None  # ActionSample.to_dict()
    version: int | None = None  # the policy update whose weights answered
    error: str | None = None


@dataclass
class ScoreRequest:
    """One transition for the critic: the frame an action was chosen from and the next one."""

    key: tuple  # (robot, episode, step index)
    task: str
    before: np.ndarray
    after: np.ndarray
    t_queued: float = 0.0


@dataclass
class Score:
    """The critic's reading of one transition, or the error it alone failed with."""

    key: tuple
    seconds: float = 0.0  # per transition, the batch's time shared out
    reward: float | None = None  # progress delta, -1..1
    p_done: float | None = None  # done probability of the later frame
    error: str | None = None
