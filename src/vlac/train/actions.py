"""Behaviour-cloning samples for the actor from any dataset in the LeRobot layout: (camera image,
state, task, recent actions) -> the recorded action, with the demonstration's discounted
remaining progress as the value head's target.

    >>> demos = load_demos([LeRobotDataset("runs/actor-data/train")])
    >>> src = ActionSource(demos, history=0)
    >>> inputs, actions, returns = src.draw(rng, 32)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from vlac.actor.actor import ActorInput
from vlac.actor.template import ActionTemplate
from vlac.train.samples import iter_episodes
from vlac.data.dataset import LeRobotDataset
from vlac.data.lerobot_format import DatasetError


@dataclass
class Demo:
    """One successful episode: frames of one camera, states and actions per frame."""

    task: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    state: np.ndarray  # (T, S)
    action: np.ndarray  # (T, A): the action taken from each frame
    source: str


def load_demos(datasets: list[LeRobotDataset], camera: str | None = None, successful_only: bool = True,
               min_frames: int = 4, progress: bool = True) -> list[Demo]:
    return [Demo(ep.task, ep.images[key], ep.state, ep.action, f"{ds.root}#{i}")
            for ds, i, ep, key in iter_episodes(datasets, camera, successful_only, min_frames, progress)]


def remaining_progress(length: int, gamma: float) -> np.ndarray:
    """Value targets of a successful demonstration whose reward is an even share of the task per
    step (what a perfect critic pays): ``V_t = sum_k gamma^k / T`` over the steps left."""
    t = np.arange(length)
    steps_left = length - t
    if gamma >= 1.0:
        return (steps_left / length).astype(np.float32)
    return ((1.0 - gamma ** steps_left) / (1.0 - gamma) / length).astype(np.float32)


class ActionSource:
    """Draws (input, action, return) triples uniformly over the frames of the demonstrations."""

    def __init__(self, demos: list[Demo], action_template: ActionTemplate, state_template: ActionTemplate,
                 history: int = 0, gamma: float = 0.99):
        if not demos:
            raise DatasetError("no successful demonstrations to clone; collect some with "
                             "`vlac data collect --behaviours expert:1`")
        self.demos, self.history, self.gamma = demos, history, gamma
        for d in demos:
            if d.action.shape[1] != action_template.dim or d.state.shape[1] != state_template.dim:
                raise DatasetError(f"episode {d.source} has actions of {d.action.shape[1]} and states of "
                                 f"{d.state.shape[1]} values; the templates have {action_template.dim} "
                                 f"({action_template.spec}) and {state_template.dim} ({state_template.spec})")
        # Out-of-range numbers are clipped into the template's range; count them once, up front.
        self.clipped = sum(action_template.quantise(a)[1] for d in demos for a in d.action)
        self.total_values = sum(d.action.size for d in demos)
        self.returns = [remaining_progress(len(d.action), gamma) for d in demos]
        self.lengths = np.array([len(d.action) for d in demos])

    def clip_report(self) -> str:
        if not self.clipped:
            return "all action values are inside the template's ranges"
        return (f"{self.clipped} of {self.total_values} action values ({100 * self.clipped / self.total_values:.2f}%) "
                "were outside the template's ranges and are clipped to them")

    def draw(self, rng: np.random.Generator, n: int) -> tuple[list[ActorInput], list[np.ndarray], list[float]]:
        p = self.lengths / self.lengths.sum()  # uniform over frames
        inputs, actions, returns = [], [], []
        for e in rng.choice(len(self.demos), size=n, p=p):
            d = self.demos[int(e)]
            t = int(rng.integers(0, len(d.action)))
            hist = list(d.action[max(0, t - self.history):t]) if self.history else []
            inputs.append(ActorInput(d.frames[t], d.state[t], d.task, hist))
            actions.append(d.action[t])
            returns.append(float(self.returns[int(e)][t]))
        return inputs, actions, returns
