"""Would an operator's corrections on the actor's own states raise its success? (issues 19 and 22)

The paper's human-guided exploration has an operator take over where the policy goes wrong and
adds those steps to the demonstration replay. In simulation the scripted expert stands in for the
operator. Before building the protocol into the loop, this measures its core effect offline, one
DAgger round on one task, against two controls with the same number of gradient steps:

- ``relabel``: the actor's own rollouts (sampled, full episodes), every visited state labelled
  with the expert's action there; behaviour cloning on those (on-policy states, the DAgger step);
- ``demos``: as many fresh expert demonstrations (off-policy states: more of what the prior was
  trained on);
- ``own``: the actor's own actions on its own rollouts (same states, no correction: separates the
  labels from just more gradient steps).

Each fine-tuned actor and the unchanged prior are then evaluated on the same held-out seeds, greedy
and sampled. The simulator's state and success are used for labels and measurement only.

    python benchmarks/dagger_probe.py --task lever-pull-v3 --episodes 40 --steps 300 --out runs/dagger-probe
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402


def rollouts(actor, task: str, seeds: list[int], temperature: float, max_steps: int, label: bool) -> list[dict]:
    """The actor's episodes (lockstep batch), with the expert's action at every visited state."""
    from vlac.actor.actor import ActorInput
    from vlac.sim.behaviours import make_behaviour
    from vlac.sim.env import MAX_STEP_MM, SimEnvConfig, SimRobotEnv
    from vlac.data.tasks import TASKS

    envs = [SimRobotEnv(SimEnvConfig(task=task, max_steps=max_steps)) for _ in seeds]
    experts = [make_behaviour("expert") for _ in seeds]
    text = TASKS[task].instruction
    gen = torch.Generator().manual_seed(seeds[0])
    try:
        obs = [env.reset(s) for env, s in zip(envs, seeds)]
        for e, env, s in zip(experts, envs, seeds):
            e.reset(env, np.random.default_rng(s))
        logs = [{"frames": [], "states": [], "own": [], "expert": [], "success": False} for _ in seeds]
        for _ in range(max_steps):
            samples = actor.act([ActorInput(o["images"]["main"], o["state"], text, []) for o in obs],
                                temperature=max(temperature, 1e-6), greedy=temperature <= 0, generator=gen)
            for k, (env, s) in enumerate(zip(envs, samples)):
                log = logs[k]
                log["frames"].append(obs[k]["images"]["main"])
                log["states"].append(obs[k]["state"])
                log["own"].append(s.action)
                if label:  # what the expert would do here (unquantised, then whole millimetres)
                    a = experts[k]._act(env)
                    log["expert"].append(np.array([*np.clip(np.round(a[:3]), -MAX_STEP_MM, MAX_STEP_MM),
                                                   1.0 if a[3] >= 0.5 else 0.0], np.float32))
                obs[k] = env.step(s.action)
                log["success"] = log["success"] or env.success
    finally:
        for env in envs:
            env.close()
    return logs


def expert_demos(task: str, seeds: list[int], max_steps: int) -> list[dict]:
    from vlac.sim.rollout import run_episode
    from vlac.sim.env import SimEnvConfig

    out = []
    for s in seeds:
        ep = run_episode(SimEnvConfig(task=task, max_steps=max_steps), "expert", s)
        out.append({"frames": list(ep.images["main"]), "states": list(ep.state), "expert": list(ep.action),
                    "success": ep.is_success})
    return out


def fine_tune(checkpoint: str, samples: list[tuple], steps: int, lr: float, batch: int, seed: int):
    from vlac.actor.actor import Actor

    actor = Actor.load(checkpoint)
    opt = torch.optim.AdamW(actor.parameters(), lr=lr)
    losses: list[float] = []
    bc_steps(actor, opt, samples, steps, batch, np.random.default_rng(seed), losses, desc="fine-tune")
    return actor, losses


def bc_steps(actor, opt, samples: list[tuple], steps: int, batch: int, rng, losses: list[float],
             desc: str = "fine-tune", leave: bool = True) -> None:
    """``steps`` behaviour-cloning steps on random minibatches of (input, action) samples;
    appends each step's loss to ``losses`` and leaves the actor in eval mode."""
    actor.train(True)
    for _ in tqdm(range(steps), desc=desc, unit="step", leave=leave):
        pick = rng.integers(0, len(samples), size=batch)
        loss, _ = actor.bc_loss([samples[i][0] for i in pick], [samples[i][1] for i in pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(actor.parameters(), 1.0)
        opt.step()
        losses.append(float(loss))
    actor.train(False)


def success(actor, task: str, seeds: list[int], temperature: float, max_steps: int) -> float:
    with torch.no_grad():
        logs = rollouts(actor, task, seeds, temperature, max_steps, label=False)
    return float(np.mean([lg["success"] for lg in logs]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="lever-pull-v3")
    ap.add_argument("--actor", default="builtin", help="actor (default: the built-in tiny actor)")
    ap.add_argument("--episodes", type=int, default=40, help="rollouts (and expert demos) for the fine-tuning data")
    ap.add_argument("--eval-episodes", type=int, default=40)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--arms", default="relabel,demos,own")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from vlac.actor.actor import Actor, ActorInput
    from vlac.sim.rollout import episode_seed
    from vlac.data.tasks import TASKS

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = TASKS[args.task].instruction
    train_seeds = [episode_seed(40_000, args.task, i) for i in range(args.episodes)]
    eval_seeds = [episode_seed(41_000, args.task, i) for i in range(args.eval_episodes)]
    prior = Actor.load(args.actor)
    t0 = time.perf_counter()
    report = {"args": vars(args), "arms": {}}
    with torch.no_grad():
        own = rollouts(prior, args.task, train_seeds, 1.0, args.max_steps, label=True)
    report["rollout_success"] = float(np.mean([lg["success"] for lg in own]))
    agree = np.concatenate([np.all(np.array(lg["own"]) == np.array(lg["expert"]), axis=1) for lg in own])
    report["actions_equal_to_expert"] = float(agree.mean())
    data = {
        "relabel": [(ActorInput(f, s, text, []), a) for lg in own for f, s, a in zip(lg["frames"], lg["states"], lg["expert"])],
        "own": [(ActorInput(f, s, text, []), a) for lg in own for f, s, a in zip(lg["frames"], lg["states"], lg["own"])],
    }
    if "demos" in args.arms:
        demos = expert_demos(args.task, train_seeds, args.max_steps)
        data["demos"] = [(ActorInput(f, s, text, []), a) for d in demos for f, s, a in zip(d["frames"], d["states"], d["expert"])]
    report["arms"]["prior"] = {"greedy": success(prior, args.task, eval_seeds, 0.0, args.max_steps),
                               "sampled": success(prior, args.task, eval_seeds, 1.0, args.max_steps)}
    print(json.dumps(report, indent=1), flush=True)
    for arm in [a for a in args.arms.split(",") if a]:
        actor, losses = fine_tune(args.actor, data[arm], args.steps, args.lr, args.batch, seed=0)
        report["arms"][arm] = {"samples": len(data[arm]), "loss_first_last": [float(np.mean(losses[:20])), float(np.mean(losses[-20:]))],
                               "greedy": success(actor, args.task, eval_seeds, 0.0, args.max_steps),
                               "sampled": success(actor, args.task, eval_seeds, 1.0, args.max_steps)}
        print(arm, json.dumps(report["arms"][arm]), flush=True)
        (out / "report.json").write_text(json.dumps(report, indent=1))
    report["seconds"] = time.perf_counter() - t0
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
