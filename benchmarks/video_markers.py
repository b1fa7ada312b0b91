"""What a dataset's video format does to a task's small coloured marker (reach-v3's goal by default).

Renders the first frame of several seeded episodes twice, with and without the scene's sites (the goal
markers), so the marker's pixels are known exactly; then passes short clips of those frames through
each video format of the writer and reports how much of the marker's colour comes back (its red
excess: R minus the mean of G and B, in the raw render about 200), the mean absolute error over the
whole frame and the disk per frame. A comparison plot (raw | each format, 4x upscaled) goes to --out.

    MUJOCO_GL=egl python benchmarks/video_markers.py --task reach-v3 --seeds 8 --out marker.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def marker_frames(task: str, seeds: int, size: int, hold: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S, 3) frames, each seed's first frame repeated ``hold`` times (a still start of an
    episode), and (N, S, S) masks of the pixels the scene's sites cover."""
    from goal_depth import site_mask  # benchmarks/ is the script's folder
    from vlac.sim.env import SimEnvConfig, SimRobotEnv

    frames, masks = [], []
    with SimRobotEnv(SimEnvConfig(task=task, image_size=size)) as env:
        for seed in range(seeds):
            env.reset(seed)
            shown, mask = site_mask(env)
            frames += [shown] * hold
            masks += [mask] * hold
    return np.stack(frames), np.stack(masks)


def red_excess(frames: np.ndarray, masks: np.ndarray) -> float:
    x = frames.astype(np.float64)
    excess = x[..., 0] - x[..., 1:].mean(-1)
    return float(np.mean([e[m].mean() for e, m in zip(excess, masks) if m.any()]))


def main() -> None:
    from vlac.data.video import VIDEO_FORMATS, decode_video, encode_video

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="reach-v3")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--hold", type=int, default=12, help="frames per seed in the clip")
    ap.add_argument("--out", default="", help="comparison image (png)")
    a = ap.parse_args()
    frames, masks = marker_frames(a.task, a.seeds, a.size, a.hold)
    print(f"{a.task}: the marker covers {masks.sum((1, 2)).mean():.1f} px per frame at {a.size} px; "
          f"raw red excess {red_excess(frames, masks):.1f}")
    print("| format | marker red excess (raw {:.0f}) | mean abs error, whole frame | bytes per frame |".format(
        red_excess(frames, masks)))
    print("|---|---|---|---|")
    shown = [frames[::a.hold][:4]]
    for name in VIDEO_FORMATS:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "clip.mp4"
            encode_video(frames, path, fps=80, fmt=name)
            size = path.stat().st_size
            back = decode_video(path)
        err = np.abs(back.astype(int) - frames).mean()
        print(f"| {name} | {red_excess(back, masks):.1f} | {err:.2f} | {size / len(frames):.0f} |")
        shown.append(back[::a.hold][:4])
    if a.out:
        from PIL import Image

        grid = np.concatenate([np.concatenate(list(col), 0) for col in shown], 1)
        Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(a.out)
        print(f"wrote {a.out} (columns: raw, {', '.join(VIDEO_FORMATS)})")


if __name__ == "__main__":
    main()
