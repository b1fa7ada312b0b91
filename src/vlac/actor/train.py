"""``vlac actor train``: behaviour cloning of the actor (and, with critic objectives in the
mixture, the unified actor-critic model), on the critic's training loop.

    vlac actor train --data runs/actor-data/train --out runs/actor               # from the built-in critic
    vlac actor train --data runs/actor-data/train --out runs/actor-scratch --init none   # no progress pre-training
    vlac actor train ... --weights action:0.7,progress:0.2,done:0.1               # one model, two roles
"""

from __future__ import annotations

from dataclasses import dataclass

from vlac.critic.train import TrainConfig, train


@dataclass
class ActorTrainConfig(TrainConfig):
    init: str = "critic"
    """Start from: "critic" (the built-in critic: progress pre-training), "none" (the tiny preset
    from scratch: the paper's "without progress pre-training" ablation), or a checkpoint folder."""
    weights: str = "action:1"
    """Mixture weights: action (behaviour cloning) and optionally the critic objectives (progress,
    one_shot, done, describe) to keep one model in both roles."""
    steps: int = 2000
    lr: float = 5e-4
    value_weight: float = 0.5
    """Weight of the value head's loss against the demonstrations' discounted remaining progress."""


def train_actor(cfg: ActorTrainConfig) -> dict:
    from vlac.critic.critic import DEFAULT_CHECKPOINT as CRITIC

    if "action" not in cfg.mixture():
        raise ValueError(f"--weights {cfg.weights!r} has no action objective; add e.g. action:1")
    if cfg.init == "critic":
        cfg.init = str(CRITIC)
    elif cfg.init == "none":
        cfg.init = ""
    return train(cfg)
