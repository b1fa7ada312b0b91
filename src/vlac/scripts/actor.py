"""``vlac actor train | eval``: the actor (text actions under a template, value head)."""

from __future__ import annotations

from vlac.utils.cli import parse_config


def train_main(argv: list[str]) -> None:
    from vlac.train.config import ActorTrainConfig
    from vlac.train.trainer import train_actor

    cfg = parse_config(ActorTrainConfig, argv, prog="vlac actor train",
                       description="Behaviour cloning of the actor on LeRobot-layout demonstrations.")
    train_actor(cfg)


def eval_main(argv: list[str]) -> None:
    from vlac.sim.actor_eval import ActorEvalConfig, evaluate

    cfg = parse_config(ActorEvalConfig, argv, prog="vlac actor eval",
                       description="Roll the actor out on simulated robots: success and progress per task "
                                   "(paper Table 2 layout).")
    evaluate(cfg)


COMMANDS = {"train": train_main, "eval": eval_main}
