"""Look at a dataset: a summary table, and an episode rendered to an mp4 or a contact sheet.

    >>> print(summary_text(LeRobotDataset("runs/demo")))
    >>> render_episode(ds, 0, "ep0.png")     # contact sheet; "ep0.mp4" for a video
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vlac.data.dataset import LeRobotDataset
from vlac.data.lerobot_format import DatasetError


def summary_frame(ds: LeRobotDataset) -> pd.DataFrame:
    """One row per episode: task, behaviour, variant, success, frames."""
    rows = []
    for i in range(ds.num_episodes):
        m = ds.meta(i)
        rows.append({"task": m["env_task"] or m["task"], "behaviour": m["behaviour"] or "-",
                     "variant": m["scene_variant"] or "-", "success": m["success"], "frames": m["length"]})
    return pd.DataFrame(rows, columns=["task", "behaviour", "variant", "success", "frames"])


def _group(df: pd.DataFrame, by: str) -> pd.DataFrame:
    g = df.groupby(by, sort=True)
    out = pd.DataFrame({"episodes": g.size(), "frames": g["frames"].sum()})
    if df["success"].notna().any():
        out["success_rate"] = g["success"].apply(lambda s: s.dropna().astype(float).mean()).round(2)
    return out


def summary_text(ds: LeRobotDataset) -> str:
    df = summary_frame(ds)
    size = ds.size_bytes()
    cam_feats = [v for v in ds.features.values() if v["dtype"] in ("video", "image")]
    px = "x".join(map(str, cam_feats[0]["shape"][:2])) if cam_feats else ""
    lines = [
        f"dataset   {ds.root}",
        f"format    LeRobot {ds.info['codebase_version']}, robot {ds.info.get('robot_type')}, {ds.fps} fps",
        f"cameras   {', '.join(ds.camera_keys)} ({px} px)" if cam_feats else "cameras   none",
        f"episodes  {ds.num_episodes}    frames {ds.num_frames}    tasks {len(ds.tasks)}",
        f"size      {size / 1e6:.1f} MB ({size / max(ds.num_frames, 1) * 1000 / 1e6:.2f} MB per 1,000 frames)",
    ]
    if len(df):
        if df["success"].notna().any():
            lines.append(f"success   {df['success'].dropna().astype(float).mean():.2f} of episodes (simulator flag at the last frame)")
        for by in ("task", "behaviour", "variant"):
            if df[by].nunique() > 1 or by == "task":
                lines += ["", f"by {by}:", _group(df, by).to_string()]
    return "\n".join(lines)


def contact_sheet(ds: LeRobotDataset, index: int, path: str | Path, n_frames: int = 8) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = ds.episode(index)
    cams = list(ep.images)
    idx = np.linspace(0, ep.length - 1, min(n_frames, ep.length)).round().astype(int)
    fig, axes = plt.subplots(len(cams), len(idx), figsize=(1.8 * len(idx), 1.9 * len(cams) + 0.6), squeeze=False)
    for r, cam in enumerate(cams):
        for c, t in enumerate(idx):
            ax = axes[r][c]
            ax.imshow(ep.images[cam][t])
            ax.set_xticks([]), ax.set_yticks([])
            label = f"t={t}"
            if ep.success is not None:
                label += " ✓" if ep.success[t] else ""
            ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(cam, fontsize=8)
    m = ep.meta
    title = f"episode {index}: {ep.task!r}"
    if m.get("behaviour"):
        title += f"\n{m.get('env_task')} / {m['behaviour']} / {m.get('scene_variant')} / success={m.get('success')}"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def episode_video(ds: LeRobotDataset, index: int, path: str | Path, scale: int = 3) -> Path:
    """All cameras side by side, upscaled ``scale`` times, as H.264 mp4 for any video player."""
    from vlac.data.video import encode_video

    ep = ds.episode(index)
    frames = np.concatenate([ep.images[c] for c in ep.images], axis=2)
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = frames.shape[1:3]
    frames = frames[:, : h - h % 2, : w - w % 2]  # yuv420p needs even sides
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_video(np.ascontiguousarray(frames), path, ds.fps, codec="libx264")
    return path


def render_episode(ds: LeRobotDataset, index: int, path: str | Path, n_frames: int = 8) -> Path:
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return contact_sheet(ds, index, path, n_frames)
    if suffix == ".mp4":
        return episode_video(ds, index, path)
    raise DatasetError(f"output {path} must end in .png (contact sheet) or .mp4 (video)")
