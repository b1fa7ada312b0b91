"""The simulated task suite: Meta-World v3 tasks with natural-language instructions.

Each task has a canonical instruction (the one written into datasets) and a few paraphrases
(for prompt augmentation and for testing that a model reads the words, not the task id).
Tasks are split into a default training set and a held-out set kept for generalisation tests;
the held-out tasks reuse the training vocabulary ("press", "slide", "door", ...) in new
combinations, so a model can transfer without words it has never seen.

    >>> from vlac.data.tasks import resolve_tasks
    >>> [t.name for t in resolve_tasks("reach-v3,push-v3")]
    ['reach-v3', 'push-v3']
    >>> len(resolve_tasks("heldout"))
    5
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str
    """Meta-World v3 environment name, e.g. ``push-v3``."""
    instruction: str
    """Canonical instruction written into datasets and prompts."""
    paraphrases: tuple[str, ...]
    """Other wordings of the same instruction."""
    split: str
    """``train`` or ``heldout``."""
    partner: str
    """A different task whose expert is run in this task's scene by the ``other-task`` behaviour."""

    @property
    def instructions(self) -> tuple[str, ...]:
        return (self.instruction, *self.paraphrases)


def _t(name: str, split: str, partner: str, instruction: str, *paraphrases: str) -> TaskSpec:
    return TaskSpec(name, instruction, tuple(paraphrases), split, partner)


# Chosen from the 50 Meta-World v3 tasks whose scripted expert succeeds >= 0.9 when its actions are
# quantised to the text action template (integer millimetres, binary gripper); see BENCHMARKS.md.
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        _t("reach-v3", "train", "push-v3",
           "reach the red goal point with the gripper",
           "move the gripper to the goal", "put the end effector on the target point"),
        _t("push-v3", "train", "reach-v3",
           "push the puck to the goal",
           "slide the puck over to the target", "move the puck to the goal by pushing it"),
        _t("pick-place-v3", "train", "push-v3",
           "pick up the puck and place it at the goal",
           "grasp the puck and put it on the target", "lift the puck and move it to the goal"),
        _t("door-open-v3", "train", "door-close-v3",
           "open the door",
           "swing the door open", "pull the door open"),
        _t("door-close-v3", "train", "door-open-v3",
           "close the door",
           "swing the door shut", "push the door closed"),
        _t("drawer-open-v3", "train", "drawer-close-v3",
           "open the drawer",
           "pull the drawer out", "slide the drawer open"),
        _t("drawer-close-v3", "train", "drawer-open-v3",
           "close the drawer",
           "push the drawer in", "slide the drawer shut"),
        _t("button-press-topdown-v3", "train", "reach-v3",
           "press the button from the top",
           "push the button down from above", "press down on the button"),
        _t("button-press-v3", "train", "reach-v3",
           "press the button from the front",
           "push the button forward", "press the button in from the side facing the robot"),
        _t("window-open-v3", "train", "window-close-v3",
           "open the window",
           "slide the window open", "push the window to the open side"),
        _t("window-close-v3", "train", "window-open-v3",
           "close the window",
           "slide the window shut", "push the window to the closed side"),
        _t("faucet-open-v3", "train", "faucet-close-v3",
           "turn the faucet on",
           "rotate the faucet handle to open it", "open the faucet"),
        _t("faucet-close-v3", "train", "faucet-open-v3",
           "turn the faucet off",
           "rotate the faucet handle to close it", "close the faucet"),
        _t("handle-press-v3", "train", "handle-pull-v3",
           "press the handle down",
           "push the handle down", "push down on the handle"),
        _t("handle-pull-v3", "train", "handle-press-v3",
           "pull the handle up",
           "lift the handle", "raise the handle"),
        _t("plate-slide-v3", "train", "reach-v3",
           "slide the plate into the goal",
           "push the plate into the target", "slide the plate forward into the goal"),
        _t("coffee-button-v3", "train", "reach-v3",
           "press the button on the coffee machine",
           "push the coffee machine button", "press the coffee button"),
        _t("lever-pull-v3", "train", "reach-v3",
           "pull the lever up",
           "raise the lever", "lift the lever up"),
        _t("dial-turn-v3", "train", "reach-v3",
           "turn the dial",
           "rotate the dial", "spin the dial around"),
        _t("sweep-into-v3", "train", "push-v3",
           "sweep the puck into the hole",
           "push the puck into the goal hole", "slide the puck into the hole"),
        # Held out: never in the default training set.
        _t("door-lock-v3", "heldout", "door-open-v3",
           "lock the door by turning the lock down",
           "turn the door lock down", "press the door lock down"),
        _t("plate-slide-back-v3", "heldout", "plate-slide-v3",
           "slide the plate back out of the goal",
           "pull the plate back toward the robot", "slide the plate back"),
        _t("push-wall-v3", "heldout", "reach-v3",
           "push the puck to the goal behind the wall",
           "slide the puck around the wall to the target", "push the puck past the wall to the goal"),
        _t("coffee-pull-v3", "heldout", "coffee-button-v3",
           "pull the mug away from the coffee machine",
           "slide the mug out from the coffee machine", "pull the mug back to the goal"),
        _t("handle-press-side-v3", "heldout", "handle-pull-v3",
           "press the handle down from the side",
           "push the side handle down", "press down on the handle from the side"),
    ]
}

SPLITS = ("train", "heldout", "all")


class UnknownTask(ValueError):
    """A task name that is not in the suite; the message lists the valid ones."""


def resolve_tasks(spec: str | list[str] | tuple[str, ...]) -> list[TaskSpec]:
    """Parse ``"reach-v3,push-v3"``, a split name (``train``, ``heldout``, ``all``) or a list.

    Raises ValueError naming every unknown entry and listing the valid names.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [s.strip() for s in items if s.strip()]
    if not items:
        raise ValueError(f"no tasks given; use task names or one of the splits {SPLITS}")
    out: list[TaskSpec] = []
    unknown = []
    for item in items:
        if item in SPLITS:
            out += [t for t in TASKS.values() if item == "all" or t.split == item]
        elif item in TASKS:
            out.append(TASKS[item])
        else:
            unknown.append(item)
    if unknown:
        raise UnknownTask(
            f"unknown task(s) {unknown}. Valid tasks: {', '.join(TASKS)}; or a split: {', '.join(SPLITS)}"
        )
    seen: set[str] = set()
    return [t for t in out if not (t.name in seen or seen.add(t.name))]
