"""The PPO learner's seconds per step sample on this machine: one update of the built-in actor
(``Learner.update``: old log-probabilities in a no-grad pass, then ``--epochs`` passes of
forward and backward in minibatches) on episodes decoded by a real inference worker.

    python benchmarks/bench_learner.py [--episodes 2] [--steps 32] [--epochs 2] [--minibatch 32] [--threads 1]
                                       [--train-vision]

Every epoch runs to the end (no KL early stop), so the figure is the cost of a fixed amount of work.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from vlac.actor.actor import DEFAULT_CHECKPOINT
from vlac.rl.episodes import EpisodeRecord, Step
from vlac.rl.learner import Learner, LearnerConfig
from vlac.rl.messages import ActRequest
from vlac.rl.workers import InferenceWorker


def episode(worker: InferenceWorker, steps: int, seed: int) -> EpisodeRecord:
    rng = np.random.default_rng(seed)
    rec = EpisodeRecord("bench", "reach the red goal point with the gripper", seed, reason="limit")
    state = np.array([0, 600, 200, 1.0], np.float32)
    for k in range(steps + 1):
        image = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
        step = Step(k, 0.0, image, state)
        if k < steps:
            [res] = worker.act([ActRequest("bench", k, image, state, rec.task)])
            step.sample, step.reward, step.p_done, step.version = res.sample, 0.01, 0.1, 0
        rec.steps.append(step)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--minibatch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-vision", action="store_true", help="train the vision tower too (RL default: frozen)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    worker = InferenceWorker(str(DEFAULT_CHECKPOINT), threads=args.threads)
    episodes = [episode(worker, args.steps, seed) for seed in range(args.episodes)]
    learner = Learner(LearnerConfig(actor=str(DEFAULT_CHECKPOINT), out=tempfile.mkdtemp(), epochs=args.epochs,
                                    minibatch=args.minibatch, threads=args.threads, target_kl=0.0,
                                    freeze_vision=not args.train_vision))
    t0 = time.perf_counter()
    stats = learner.update(episodes)
    dt = time.perf_counter() - t0
    print(f"{stats['steps']} samples, {args.epochs} epochs, minibatch {args.minibatch}, {args.threads} thread(s): "
          f"vision {'trained' if args.train_vision else 'frozen'}: {dt:.1f} s, {dt / stats['steps']:.3f} s per sample")


if __name__ == "__main__":
    main()
