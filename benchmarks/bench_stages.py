"""What each stage of the RL loop costs when it runs alone on one core: the physical limit the
loop's own figures (``loop_stats.json``, ``seconds_per_episode``) are measured against.

    python benchmarks/bench_stages.py [--task reach-v3] [--steps 100] [--threads 1] [--symmetric]

Stages, per step of a 100-step episode: the simulated robot (physics + rendering one 96 px
frame), the actor (one decoded action; at batch 1 and 2, as two robots in lock-step give it),
the critic (one transition: progress delta and done probability; batch of 2), the learner (one
step sample through a PPO update of 2 epochs, vision frozen, after a first update: see also
``bench_learner.py``). Prints a
table in seconds per episode and the episodes per hour two cores could give if the stages
overlapped perfectly (total CPU seconds per episode / 2).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from timing import time_calls


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    return float(np.median(time_calls(fn, repeats)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="reach-v3")
    ap.add_argument("--steps", type=int, default=100, help="steps per episode")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--symmetric", action="store_true", help="critic reads each pair both ways (two passes)")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from vlac.actor.actor import DEFAULT_CHECKPOINT as ACTOR
    from vlac.actor.actor import Actor, ActorInput
    from vlac.critic.critic import Critic
    from vlac.sim.env import SimEnvConfig, SimRobotEnv
    from vlac.data.tasks import TASKS
    from vlac.rl.episodes import EpisodeRecord, Step
    from vlac.rl.learner import Learner, LearnerConfig

    env = SimRobotEnv(SimEnvConfig(task=args.task, max_steps=100_000))
    obs = env.reset(seed=0)
    rng = np.random.default_rng(0)
    sim_step = timed(lambda: env.step(rng.uniform(-10, 10, 4).astype(np.float32) * [1, 1, 1, 0]), args.repeats * 5)
    frames = [obs["images"]["main"]]
    for _ in range(8):
        frames.append(env.step(np.array([5.0, 0.0, -5.0, 1.0], np.float32))["images"]["main"])
    state = np.asarray(obs["state"], np.float32)
    task = TASKS[args.task].instruction

    actor = Actor.load()
    act = {b: timed(lambda b=b: actor.act([ActorInput(frames[k], state, task) for k in range(b)]), args.repeats)
           for b in (1, 2)}
    critic = Critic.load(None, symmetric=args.symmetric)

    def score() -> None:
        critic.progress([(frames[0], frames[1]), (frames[2], frames[3])], task)
        critic.done([frames[1], frames[3]], task)

    critic_pair = timed(score, args.repeats) / 2

    rec = EpisodeRecord("bench", task, 0, reason="limit")
    for k in range(args.steps + 1):
        step = Step(k, 0.0, frames[k % len(frames)], state)
        if k < args.steps:
            [s] = actor.act([ActorInput(step.image, state, task)])
            step.sample, step.reward, step.p_done, step.version = s.to_dict(), 0.01, 0.1, 0
        rec.steps.append(step)
    learner = Learner(LearnerConfig(actor=str(ACTOR), out=tempfile.mkdtemp(), threads=args.threads,
                                    target_kl=0.0, epochs=2))
    learner.update([rec])  # the run's first update (value warm-up, optimiser state): not timed
    t0 = time.perf_counter()
    learner.update([rec])
    learn_sample = (time.perf_counter() - t0) / args.steps

    n = args.steps
    rows = [("robot: physics + render", sim_step), ("actor, batch 1", act[1]), ("actor, batch 2 (per robot)", act[2] / 2),
            (f"critic{' (symmetric)' if args.symmetric else ''}, per transition", critic_pair),
            ("learner, per sample (2 epochs)", learn_sample)]
    print(f"\n{args.task}, {n}-step episodes, {args.threads} thread(s); each stage alone\n")
    print("| stage | ms per step | s per episode |\n|---|---|---|")
    for name, sec in rows:
        print(f"| {name} | {sec * 1000:.1f} | {sec * n:.2f} |")
    total = (sim_step + act[2] / 2 + critic_pair + learn_sample) * n
    print(f"\nCPU seconds per episode (robot + actor at batch 2 + critic + learner): {total:.1f}; "
          f"on 2 cores with perfect overlap at most {2 * 3600 / total:.0f} episodes per hour")


if __name__ == "__main__":
    main()
