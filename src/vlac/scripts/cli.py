"""The ``vlac`` command: ``vlac <group> <command> [flags]``; ``--help`` at any level.

    vlac data collect --tasks reach-v3 push-v3 --episodes-per-task 2 --out runs/demo
    vlac data info runs/demo --check
    vlac data repair runs/demo
    vlac data render runs/demo --episode 0 --out ep0.png
    vlac critic score --dataset runs/demo --episode 0 --out runs/score
    vlac actor eval --tasks reach-v3 push-v3 --episodes 10 --out runs/actor-eval
"""

from __future__ import annotations

import sys

from vlac.data.lerobot_format import DatasetError
from vlac.actor.template import TemplateError
from vlac.model import CheckpointError
from vlac.data.tasks import UnknownTask
from vlac.utils.imports import MissingExtra


def _groups() -> dict:
    from vlac.scripts import actor, critic, data, rl

    return {"data": (data.COMMANDS, "simulated data collection and LeRobot datasets"),
            "critic": (critic.COMMANDS, "the progress critic"),
            "actor": (actor.COMMANDS, "the actor (train: behaviour cloning, eval: rollouts)"),
            "robot": (rl.ROBOT_COMMANDS, "robots (sim: a simulated robot process, keys: CURVE keys)"),
            "rl": (rl.rl_main, "the RL loop: vlac rl --config FILE --episodes N --out DIR; "
                                  "vlac rl compare --runs A B --out cmp.png; vlac rl report RUN")}


def _usage(groups: dict) -> str:
    lines = ["usage: vlac <group> <command> [--help]", ""]
    for g, (cmds, doc) in groups.items():
        lines.append(f"  {g:6s} {doc}" + (f": {', '.join(cmds)}" if isinstance(cmds, dict) else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    groups = _groups()
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(groups))
        return
    group = argv.pop(0)
    if group not in groups:
        raise SystemExit(f"error: unknown group {group!r}\n{_usage(groups)}")
    cmds = groups[group][0]
    if callable(cmds):  # a group that is one command (vlac rl)
        return _run(cmds, argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: vlac {group} {{{','.join(cmds)}}} [--help]")
        return
    cmd = argv.pop(0)
    if cmd not in cmds:
        raise SystemExit(f"error: unknown command 'vlac {group} {cmd}'; valid: {', '.join(cmds)}")
    _run(cmds[cmd], argv)


def _run(command, argv: list[str]) -> None:
    try:
        command(argv)
    except (DatasetError, CheckpointError, TemplateError, MissingExtra, UnknownTask) as e:
        raise SystemExit(f"error: {e}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
