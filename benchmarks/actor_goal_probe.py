"""Does the actor see where to go? Linear probes from the actor's own features to the goal, and
how much its actions follow the goal, on frames of a task whose goal moves between episodes.

    python benchmarks/actor_goal_probe.py [--task reach-v3] [--episodes 150] [--actor DIR] [--threads 1]

For each episode (fresh seeded goal and start), a few random steps are taken so that hand and
goal positions vary independently, then one frame is read. Reported per axis (x, y, z):
- R^2 of a ridge probe (5-fold cross-validated, the best of four ridge strengths) from the image
  features the language model reads (vision tower + projector, flattened) and from the hidden
  state the value head reads, to the goal's and the object's offset from the hand (what a
  reaching or grasping policy must know) and to the hand's own position (a positive control: the
  big, moving gripper);
- the correlation between the actor's greedy action and that offset (a policy that reaches has a
  high one on every axis; the scripted expert's is printed beside it).
The simulator's goal position is used to measure only. A probe that finds the offset while the
action ignores it says the language model does not use what the vision tower sees (RL with a
frozen vision tower can still fix that); a probe that cannot find it says the features never held
it (perception: more pixels, a second camera or vision training are needed).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm


def cv_r2(x: np.ndarray, y: np.ndarray, folds: int = 5, ridge: float = 1.0) -> np.ndarray:
    """Cross-validated R^2 per column of ``y`` of a ridge regression on standardised ``x``."""
    from vlac.rl.ppo import fit_linear

    n = len(x)
    order = np.random.default_rng(0).permutation(n)
    pred = np.zeros_like(y)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        for j in range(y.shape[1]):
            w, b = fit_linear(x[train], y[train, j], ridge=ridge)
            pred[test, j] = x[test] @ w + b
    return 1.0 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="reach-v3")
    ap.add_argument("--episodes", type=int, default=150)
    ap.add_argument("--actor", default="builtin")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=30_000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from vlac.actor.actor import Actor, ActorInput
    from vlac.sim.behaviours import make_behaviour
    from vlac.sim.env import SimEnvConfig, SimRobotEnv
    from vlac.data.tasks import TASKS

    actor = Actor.load(args.actor)
    env = SimRobotEnv(SimEnvConfig(task=args.task, max_steps=1000))
    task = TASKS[args.task].instruction
    rng = np.random.default_rng(args.seed)
    image_feats, hidden_feats, actions, expert = [], [], [], []
    targets: dict[str, list] = {"goal - hand": [], "object - hand": [], "hand (positive control)": []}
    for ep in tqdm(range(args.episodes), desc="frames", unit="ep"):
        obs = env.reset(seed=args.seed + ep)
        for _ in range(int(rng.integers(0, 15))):
            obs = env.step(np.r_[rng.uniform(-10, 10, 3), 1.0].astype(np.float32))
        raw = env.raw_obs * 1000.0  # mm; hand at 0:3, first object at 4:7, goal at the end
        targets["goal - hand"].append(raw[-3:] - raw[:3])
        targets["object - hand"].append(raw[4:7] - raw[:3])
        targets["hand (positive control)"].append(raw[:3])
        behaviour = make_behaviour("expert")
        behaviour.reset(env, np.random.default_rng(ep))
        expert.append(behaviour.act(env)[:3])
        inp = ActorInput(obs["images"]["main"], obs["state"], task)
        with torch.no_grad():
            [s] = actor.act([inp], greedy=True)
            out = actor.evaluate([inp], [s])
        actions.append(s.action[:3])
        image_feats.append(out["image_features"][0].flatten().numpy())
        hidden_feats.append(out["features"][0].numpy())
    acts, exp = np.array(actions), np.array(expert)
    ridges = (0.01, 0.1, 1.0, 10.0)  # the best of these per axis (a slightly optimistic probe)
    xi, xh = np.array(image_feats, np.float64), np.array(hidden_feats, np.float64)

    def corr(a: np.ndarray, y: np.ndarray, j: int) -> str:
        return f"{np.corrcoef(a[:, j], y[:, j])[0, 1]:.2f}" if a[:, j].std() > 0 and y[:, j].std() > 0 else "-"

    print(f"\n{args.task}, {args.episodes} frames, actor {args.actor}\n")
    print("| target | axis | probe R^2, image features | probe R^2, value-head feature | corr(actor's greedy action, "
          "target) | corr(expert's action, target) |\n|---|---|---|---|---|---|")
    for name, rows in targets.items():
        y = np.array(rows)
        r2_img = np.max([cv_r2(xi, y, ridge=r) for r in ridges], axis=0)
        r2_hid = np.max([cv_r2(xh, y, ridge=r) for r in ridges], axis=0)
        for j, axis in enumerate("xyz"):
            offset = "hand" not in name or "-" in name
            print(f"| {name} | {axis} | {r2_img[j]:.2f} | {r2_hid[j]:.2f} | {corr(acts, y, j) if offset else '-'} | "
                  f"{corr(exp, y, j) if offset else '-'} |")


if __name__ == "__main__":
    main()
