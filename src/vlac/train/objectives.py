"""The training objectives as plug-ins of the one trainer: each draws a batch from its own sample
stream and returns its loss (answer tokens only) plus any parts worth logging.

- ``PromptObjective``: the critic's objectives (paper 3.1.1): progress, one_shot, done, done_goal
  and describe, prompts and answers from a ``SampleSource``.
- ``ActionObjective``: the actor's behaviour cloning (paper 3.1.2) with the value head's loss.

    >>> objectives = {"progress": PromptObjective("progress", source), "action": ActionObjective(actions, 0.5)}
    >>> loss, parts = objectives[name].loss(net, rng, 32)
"""

from __future__ import annotations

from dataclasses import dataclass

CRITIC_OBJECTIVES = ("progress", "one_shot", "done", "done_goal", "describe")
OBJECTIVES = (*CRITIC_OBJECTIVES, "action")


@dataclass
class PromptObjective:
    name: str
    source: object
    """A ``vlac.train.samples.SampleSource``."""

    def loss(self, net, rng, batch_size: int):
        vlm = getattr(net, "vlm", net)  # an Actor trains its VLM's critic objectives too
        prompts, answers = self.source.draw(self.name, rng, batch_size)
        return vlm.loss(vlm.encode(prompts, answers)), {}


@dataclass
class ActionObjective:
    actions: object
    """A ``vlac.train.actions.ActionSource``."""
    value_weight: float = 0.0
    name: str = "action"

    def loss(self, net, rng, batch_size: int):
        return net.bc_loss(*self.actions.draw(rng, batch_size), value_weight=self.value_weight)
