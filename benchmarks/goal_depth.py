"""Can a task's goal be placed from the camera image? Reach-v3's goal floats anywhere in a 20 x 10 x 25 cm
box, and one camera sees it as a dot: every point on a ray through the lens gives the same dot.

For many seeded resets this renders each camera with and without the goal marker (the ``goal`` site),
takes the marker's pixel centre, and then asks how well the 3-D goal follows from the pixel centres of
the cameras given: how far apart goals lie whose dots fall within 1 px of each other (one camera),
and the error of the best quadratic map from pixel centres to the 3-D goal, against the task's success
radius (5 cm for reach-v3). An actor reading those cameras at best places the goal that well; the
scripted expert reads it from the simulator's state.

    MUJOCO_GL=egl python benchmarks/goal_depth.py --task reach-v3 --cameras corner4 --seeds 400
    MUJOCO_GL=egl python benchmarks/goal_depth.py --task reach-v3 --cameras corner4 topview --seeds 400
"""

from __future__ import annotations

import argparse

import numpy as np


def site_mask(env, sites: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The current frame of ``env`` and the (S, S) mask of the pixels its ``sites`` (None: all of
    them) cover: the frame rendered again with those sites transparent, compared."""
    model = env._env.model
    index = slice(None) if sites is None else [model.site(name).id for name in sites]
    shown = env.observe()["images"]["main"]
    alpha = model.site_rgba[index, 3].copy()
    model.site_rgba[index, 3] = 0
    hidden = env.observe()["images"]["main"]
    model.site_rgba[index, 3] = alpha
    return shown, np.abs(shown.astype(int) - hidden.astype(int)).sum(-1) > 30


def goal_pixels(task: str, camera: str, seeds: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) pixel centres of the goal marker (NaN where it is out of view) and (N, 3) goals in metres."""
    from vlac.sim.env import SimEnvConfig, SimRobotEnv

    centres, goals = [], []
    with SimRobotEnv(SimEnvConfig(task=task, camera=camera, image_size=size)) as env:
        for seed in range(seeds):
            env.reset(seed)
            ys, xs = np.nonzero(site_mask(env, ["goal"])[1])
            centres.append((xs.mean(), ys.mean()) if len(xs) else (np.nan, np.nan))
            goals.append(env._env._target_pos.copy())
    return np.asarray(centres), np.asarray(goals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="reach-v3")
    ap.add_argument("--cameras", nargs="+", default=["corner4"])
    ap.add_argument("--seeds", type=int, default=400)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--radius", type=float, default=0.05, help="the task's success radius in metres")
    a = ap.parse_args()
    per_camera = [goal_pixels(a.task, c, a.seeds, a.size) for c in a.cameras]
    goals = per_camera[0][1]
    pix = np.concatenate([p for p, _ in per_camera], axis=1)
    seen = ~np.isnan(pix).any(1)
    pix, goals = pix[seen], goals[seen]
    print(f"{a.task}, cameras {' + '.join(a.cameras)} at {a.size} px: the goal is in view in {seen.sum()} of {a.seeds} "
          f"resets; goals span {np.ptp(goals, 0).round(3).tolist()} m")
    if len(a.cameras) == 1:
        dp = np.linalg.norm(pix[:, None] - pix[None], axis=-1)
        dg = np.linalg.norm(goals[:, None] - goals[None], axis=-1)
        np.fill_diagonal(dp, np.inf)
        near = dp < 1.0
        print(f"  goals whose dot lies within 1 px of another's: {near.any(1).sum()}; of those, with such a neighbour "
              f"more than {100 * a.radius:.0f} cm away in 3-D: {sum((dg[i][near[i]] > a.radius).any() for i in range(len(pix)))}; "
              f"the farthest such pair {100 * dg[near].max():.1f} cm apart")
    # the best quadratic map from the pixel centres to the goal (fitted on all resets: an optimistic bound)
    feats = [np.ones(len(pix))] + [pix[:, i] for i in range(pix.shape[1])]
    feats += [pix[:, i] * pix[:, j] for i in range(pix.shape[1]) for j in range(i, pix.shape[1])]
    x = np.column_stack(feats)
    coef, *_ = np.linalg.lstsq(x, goals, rcond=None)
    err = np.linalg.norm(x @ coef - goals, axis=1)
    print(f"  3-D goal from the pixel centres (best quadratic map): median error {100 * np.median(err):.1f} cm, "
          f"goals placed within {100 * a.radius:.0f} cm: {np.mean(err < a.radius):.2f}")


if __name__ == "__main__":
    main()
