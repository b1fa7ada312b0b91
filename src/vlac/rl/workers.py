"""The services of the RL loop (paper 3.2.1) that run models, as plain classes: inference worker
(an actor replica), critic worker (reward and done), evaluator, and the log service (the learner is
in ``vlac.rl.learner``, the data service in ``vlac.rl.storage``). ``vlac.rl.loop`` turns them into
Ray actors; tests also run them in-process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from vlac.rl.learner import apply_weights, load_actor
from vlac.rl.messages import ActReply, ActRequest, Score, ScoreRequest
from vlac.utils.imports import require, set_threads

torch = require("torch", extra="model")


class InferenceWorker:
    """One actor replica: decodes actions for a batch of waiting observations."""

    def __init__(self, checkpoint: str = "builtin", temperature: float = 1.0, top_k: int = 0, threads: int = 1,
                 seed: int = 0):
        set_threads(threads)
        self.actor = load_actor(checkpoint)
        self.temperature, self.top_k = temperature, top_k
        self.generator = torch.Generator().manual_seed(seed)
        self.version = 0

    def act(self, requests: list[ActRequest]) -> list[ActReply]:
        """One reply per request, in order; a request the model rejects fails alone (its reply
        carries the error), never the batch."""
        from vlac.actor.actor import ActorInput

        t0 = time.perf_counter()

        def decode(batch: list[ActRequest]) -> list[dict]:
            inputs = [ActorInput(r.image, r.state, r.task, r.history) for r in batch]
            samples = self.actor.act(inputs, temperature=self.temperature, top_k=self.top_k, generator=self.generator)
            return [{"sample": s.to_dict(), "version": self.version} for s in samples]

        out = _each_alone_on_error(decode, requests)
        dt = time.perf_counter() - t0
        return [ActReply(r.robot, r.obs_id, dt, **o) for r, o in zip(requests, out)]

    def set_weights(self, state: dict, version: int) -> int:
        apply_weights(self.actor, state)
        self.version = version
        return version

    def pid(self) -> int:
        return os.getpid()


class CriticWorker:
    """Scores transitions: reward = progress delta (before -> after), p_done of the after frame."""

    def __init__(self, checkpoint: str = "builtin", threads: int = 1, decoding: str = "rich", symmetric: bool = False):
        from vlac.critic.critic import Critic

        set_threads(threads)
        self.critic = Critic.load(checkpoint, symmetric=symmetric)
        self.decoding = decoding

    def score(self, items: list[ScoreRequest]) -> list[Score]:
        """One score per transition, in order; a transition the model rejects fails alone."""
        t0 = time.perf_counter()

        def judge(group: list[ScoreRequest]) -> list[dict]:
            task = group[0].task
            rewards = self.critic.progress([(it.before, it.after) for it in group], task, decoding=self.decoding)
            done = self.critic.done([it.after for it in group], task)
            return [{"reward": float(r), "p_done": float(d)} for r, d in zip(rewards, done)]

        out: list[dict] = [{} for _ in items]
        for task in {it.task for it in items}:
            idx = [k for k, it in enumerate(items) if it.task == task]
            for k, o in zip(idx, _each_alone_on_error(judge, [items[k] for k in idx])):
                out[k] = o
        per_item = (time.perf_counter() - t0) / max(len(items), 1)
        return [Score(it.key, per_item, **o) for it, o in zip(items, out)]


def _each_alone_on_error(fn, batch: list) -> list[dict]:
    """``fn`` over the batch at once; if the model rejects it, over each item alone, so one bad
    request gets ``{"error": ...}`` and the others their answers."""
    try:
        return fn(batch)
    except Exception as e:  # noqa: BLE001 - any model error is one request's, not the run's
        if len(batch) == 1:
            return [{"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}]
    return [_each_alone_on_error(fn, [item])[0] for item in batch]


class Evaluator:
    """Success rate of given weights on fixed evaluation episodes (simulator flag; measurement)."""

    def __init__(self, checkpoint: str = "builtin", threads: int = 1):
        set_threads(threads)
        self.actor = load_actor(checkpoint)

    def mean_problem(self) -> str:
        """Why this actor cannot be evaluated by mean decoding ("" when it can)."""
        try:
            self.actor.check_mean()
        except ValueError as e:
            return str(e)
        return ""

    def evaluate(self, state: dict | None, version: int, tasks: list[str], episodes: int, seed: int,
                 max_steps: int, temperature: float = 0.0, keep: str = "", mean: bool = False) -> dict:
        """The success rate of each task; ``keep``: a folder to save the evaluated actor in."""
        from vlac.sim.actor_eval import ActorEvalConfig, run_batch
        from vlac.sim.rollout import episode_seed
        from vlac.utils.files import atomic_dir

        if state is not None:
            apply_weights(self.actor, state)
        if keep:
            with atomic_dir(keep) as tmp:
                self.actor.save(tmp)
        t0 = time.perf_counter()
        cfg = ActorEvalConfig(out="", max_steps=max_steps, critic="none", temperature=temperature, mean=mean)
        out = {"version": version, "temperature": temperature, **({"mean": True} if mean else {}),
               **({"model": keep} if keep else {})}
        for task in tasks:
            rolls = run_batch(self.actor, task, "default", [episode_seed(seed, task, i) for i in range(episodes)], cfg)
            out[task] = float(np.mean([r.success for r in rolls]))
        out["seconds"] = time.perf_counter() - t0
        return out


class LogService:
    """TensorBoard scalars plus JSON-lines logs (episodes, learner updates, evaluations) that the
    final report reads; the console view is the loop's progress bar."""

    def __init__(self, out: str):
        from torch.utils.tensorboard import SummaryWriter

        self.root = Path(out)
        self.tb = SummaryWriter(str(self.root / "tb"))

    def _append(self, name: str, row: dict) -> None:
        with open(self.root / f"{name}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def episode(self, summary: dict, n: int) -> None:
        self._append("episodes", {"n": n, **summary})
        self.tb.add_scalar(f"episode/return/{summary['robot']}", summary["return"], n)
        self.tb.add_scalar("episode/steps", summary["steps"], n)
        if summary.get("success") is not None:
            self.tb.add_scalar("episode/sim_success", float(summary["success"]), n)

    def scalars(self, group: str, stats: dict, step: int) -> None:
        self._append(group, {"step": step, **stats})
        for k, v in stats.items():
            if isinstance(v, (int, float)) and np.isfinite(v):
                self.tb.add_scalar(f"{group}/{k}", v, step)

    def evaluation(self, res: dict) -> None:
        self._append("eval", res)
        self.tb.add_scalar("eval/success", res["success"], res["episodes"])
        print(f"evaluation after {res['episodes']} episodes (policy update {res['version']}): "
              f"success {res['success']:.2f}", flush=True)

    def close(self) -> None:
        self.tb.close()
