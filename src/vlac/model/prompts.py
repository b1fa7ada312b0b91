"""Prompt wording and answer formats of the released VLAC checkpoint (see
``docs``/interface note), so that our checkpoints and a converted release are interchangeable.

Every prompt is text with one ``<image>`` placeholder per image, in order; the model wrapper
expands each placeholder to the vision tokens. Answers are what the model is trained to emit.

    >>> text = pair_prompt("open the drawer")            # two images: before, after
    >>> text = one_shot_pair_prompt("open the drawer", [0, 50, 100])   # 3 reference frames + 3 more
"""

from __future__ import annotations

import re

SYSTEM_PROMPT = (
    "You are a visual-language assistant designed to interpret spatial and task-related information "
    "from images and text. Provide precise, context-aware responses and actionable guidance to assist "
    "in achieving task objectives."
)
IMAGE = "<image>"

_PAIR = (
    "Image-1: <image>\nImage-2: <image>\n"
    "Compare two images and evaluate whether the second image is closer to achieving task objectives "
    "compared to the first image. + score means the second image is closer, - score means the first "
    "image is closer\nResponse the relative progressing of target task follow <score>. "
    "The target task is: <task> {task} </task> <score>"
)
_DONE = ("<image>\nThe 1 means yes, the 0 means no. Check if the robot has completed its task: "
         "<task> {task} </task> <done>")
_DESCRIBE = ("Image-1: <image>\nImage-2: <image>\n"
             "Compare two images and infer what kind of task is achieving. <infer> <task>")
_FIRST = "0% <image> This image is the trajectory beginning of the following two images\n"
_ACTION = ("<image>\nThe current position state of the robotic arm's end gripper in the image is as follows: "
           "<state> {state} </state>. {history}What action should the robot take to get better completion of "
           "instruction: <task> {task} </task> <action>")
_HISTORY = "The previous actions were: {actions}. "


def _check_task(task: str) -> str:
    if not isinstance(task, str) or not task.strip():
        raise ValueError(f"task description is empty ({task!r}); give the task in words, "
                         "e.g. 'open the drawer'")
    return " ".join(task.split())


def pair_prompt(task: str) -> str:
    """Zero-shot pairwise progress: images (before, after). Answer: ``progress_answer``."""
    return _PAIR.format(task=_check_task(task))


def one_shot_pair_prompt(task: str, reference_progress: list[int]) -> str:
    """One-shot pairwise progress. Images: the k reference frames (each labelled with its
    progress in percent), the current trajectory's first frame, then (before, after)."""
    ref = "".join(f"{int(p)}% <image>\n" for p in reference_progress)
    return ref + _FIRST + pair_prompt(task)


def done_prompt(task: str) -> str:
    """Task completion for one image. Answer ``1`` (done) or ``0``."""
    return _DONE.format(task=_check_task(task))


def goal_done_prompt(task: str) -> str:
    """In-context done (the release's variant that shows a goal image of the reference first).
    Images: the last frame of a successful reference episode, labelled 100 % as one-shot reference
    frames are, then the image to judge. Answer ``1`` (done) or ``0``."""
    return "100% <image>\n" + done_prompt(task)


def describe_prompt() -> str:
    """Task description from a start frame and an end frame. Answer: ``describe_answer``."""
    return _DESCRIBE


def action_prompt(task: str, state: str, history: list[str] | None = None) -> str:
    """The actor's prompt (one camera image): the end-effector state and, optionally, the last
    few actions, all written in their templates. Answer: the action in its template."""
    hist = _HISTORY.format(actions=" ".join(history)) if history else ""
    return _ACTION.format(task=_check_task(task), state=state, history=hist)


def progress_answer(percent: int) -> str:
    return str(int(percent))


def done_answer(done: bool) -> str:
    return "1" if done else "0"


def describe_answer(task: str) -> str:
    return f"{_check_task(task)} </task>"


def parse_description(text: str) -> str:
    """The task words of a generated description (everything before ``</task>``; a word-level
    tokenizer decodes that tag as ``< / task >``)."""
    return " ".join(re.split(r"<\s*/\s*task\s*>", text)[0].split())


def prompt_corpus() -> list[str]:
    """Every fixed string the prompts use; the tiny tokenizer is trained on these."""
    return [SYSTEM_PROMPT, _PAIR, _DONE, _DESCRIBE, _FIRST, _ACTION, _HISTORY, "system user assistant",
            "% </task>"]
