"""MP4 encode/decode through PyAV, with LeRobot's defaults (AV1 via SVT-AV1, yuv420p, GOP 2, CRF 30), or
``h264-444``: H.264 at full colour resolution (yuv444p), for scenes whose small coloured markers 4:2:0
colour washes out (reach-v3's goal keeps 44 % of its colour at 96 px; BENCHMARKS.md, "what the
dataset's video codec does").

Frame k of an encoded clip has presentation time k / fps exactly, which is what LeRobot's loader
checks (to 1e-4 s) when it looks a frame up by timestamp.

    >>> encode_video(frames, "ep.mp4", fps=80)           # frames: (T, H, W, 3) uint8
    >>> decode_video("ep.mp4").shape                      # (T, H, W, 3)
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at level 3 (info)

VIDEO_CODEC = "libsvtav1"
VIDEO_OPTIONS = {"g": "2", "crf": "30", "preset": "12"}
PIX_FMT = "yuv420p"
VIDEO_FORMATS = {  # name -> (codec, pixel format, encoder options)
    "av1": (VIDEO_CODEC, PIX_FMT, VIDEO_OPTIONS),
    "h264-444": ("libx264", "yuv444p", {"g": "2", "crf": "10", "bf": "0", "preset": "veryfast"}),
}
"""Video formats a dataset can be written in; ``av1`` is LeRobot's default."""


def check_video_format(name: str) -> str:
    if name not in VIDEO_FORMATS:
        raise ValueError(f"unknown video format {name!r}; use one of {', '.join(VIDEO_FORMATS)}")
    return name


def format_of(info: dict) -> str | None:
    """The name of the format a video feature's probed ``info`` was written in (None: another one,
    e.g. a dataset from elsewhere)."""
    probed = (info.get("video.codec"), info.get("video.pix_fmt"))
    return {("av1", "yuv420p"): "av1", ("h264", "yuv444p"): "h264-444"}.get(probed)


class VideoError(RuntimeError):
    """An mp4 that cannot be read; the message names the file."""


class _KeepScheduling:
    """Undoes SVT-AV1's switch to real-time scheduling.

    Run as root (containers, CI, most cloud GPU machines), SVT-AV1 puts the thread that opens an
    encoder under SCHED_FIFO at priority 99, and its encoder threads, every thread that thread starts
    later and every process it spawns (Ray workers, robots, a browser) inherit it. On a 2-core machine
    such a process starves everything else: a robot's heartbeats, Ray's control plane, the learner.
    This snapshots each thread's policy before encoding and puts back any that changed (new threads:
    the caller's policy). A thread someone deliberately made real-time before is left as it was."""

    def __init__(self):
        self.enabled = hasattr(os, "sched_getscheduler") and os.path.isdir("/proc/self/task")
        self.before = {tid: self._get(tid) for tid in self._threads()} if self.enabled else {}
        self.caller = self._get(0) if self.enabled else None

    @staticmethod
    def _threads() -> list[int]:
        return [int(t) for t in os.listdir("/proc/self/task")]

    @staticmethod
    def _get(tid: int):
        try:
            return os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority
        except OSError:  # the thread ended meanwhile
            return None

    def restore(self) -> None:
        if not self.enabled:
            return
        for tid in self._threads():
            want = self.before.get(tid) or self.caller
            now = self._get(tid)
            if want is None or now is None or now == want:
                continue
            try:
                os.sched_setscheduler(tid, want[0], os.sched_param(want[1]))
            except OSError:  # ended meanwhile, or not ours to change
                pass


def encode_video(frames: np.ndarray, path: str | Path, fps: int, codec: str = VIDEO_CODEC, fmt: str = "av1") -> None:
    """``fmt`` (see ``VIDEO_FORMATS``) sets codec, pixel format and options; a ``codec`` other than the
    default is taken as it is, with its own defaults and yuv420p."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if len(frames) == 0:
        raise ValueError("cannot encode an empty clip")
    h, w = frames.shape[1:3]
    tb = Fraction(1, fps)
    name, pix_fmt, options = VIDEO_FORMATS[check_video_format(fmt)]
    if codec != VIDEO_CODEC:
        name, pix_fmt, options = codec, PIX_FMT, {}
    scheduling = _KeepScheduling()
    try:
        with av.open(str(path), "w", format="mp4") as container:
            stream = container.add_stream(name, rate=fps, options=options)
            stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
            stream.time_base = tb
            for k, img in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                frame.pts, frame.time_base = k, tb
                for packet in stream.encode(frame):
                    container.mux(packet)
                if k == 0:  # the encoder opened with the first frame: its threads work at normal priority
                    scheduling.restore()
            for packet in stream.encode():
                container.mux(packet)
    finally:
        scheduling.restore()


def decode_video(path: str | Path, start_s: float = 0.0, end_s: float | None = None,
                 tolerance_s: float = 1e-4) -> np.ndarray:
    """Frames whose timestamps lie in [start_s, end_s) as (T, H, W, 3) uint8.

    A file that holds several episodes (as LeRobot appends them) is cut by the episode's
    ``from_timestamp``/``to_timestamp``.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video file {path} is missing")
    out = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if start_s > 0:
                container.seek(int(start_s / stream.time_base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base)
                if t < start_s - tolerance_s:
                    continue
                if end_s is not None and t >= end_s - tolerance_s:
                    break
                out.append(frame.to_ndarray(format="rgb24"))
    except av.error.FFmpegError as e:  # corrupt or truncated
        raise VideoError(f"video file {path} is corrupt or truncated ({e})") from e
    if not out:
        raise VideoError(f"video file {path} has no frames in [{start_s}, {end_s}) s")
    return np.stack(out)


def decode_frame(path: str | Path, t_s: float, tolerance_s: float = 1e-4) -> np.ndarray:
    """The single frame at timestamp ``t_s`` (seek to the keyframe before it, decode forward;
    with LeRobot's GOP of 2 that is at most two frames)."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            container.seek(int(max(t_s - 1.0 / float(stream.average_rate or 30), 0) / stream.time_base),
                           stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base)
                if abs(t - t_s) <= tolerance_s:
                    return frame.to_ndarray(format="rgb24")
                if t > t_s + tolerance_s:
                    break
    except FileNotFoundError:
        raise VideoError(f"video file {path} is missing") from None
    except av.error.FFmpegError as e:
        raise VideoError(f"video file {path} is corrupt or truncated ({e})") from e
    raise VideoError(f"video file {path} has no frame at {t_s:.4f} s (tolerance {tolerance_s} s)")


def roundtrip(frames: np.ndarray, fps: int = 80, fmt: str = "av1") -> np.ndarray:
    """``frames`` as a dataset gives them back: encoded in the writer's format ``fmt``, then decoded
    (what a model trained on stored episodes saw, against the raw frames a robot sends)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        encode_video(frames, path, fps, fmt=fmt)
        out = decode_video(path)
    if len(out) != len(frames):
        raise VideoError(f"the codec gave back {len(out)} frames for {len(frames)}")
    return out


def video_info(path: str | Path) -> dict:
    """The ``info`` block LeRobot writes for a video feature, probed from the file."""
    import av

    with av.open(str(path)) as container:
        s = container.streams.video[0]
        return {
            "video.height": s.height, "video.width": s.width, "video.codec": getattr(s.codec_context.codec, "canonical_name", s.codec_context.name),
            "video.pix_fmt": s.codec_context.pix_fmt, "video.fps": int(round(float(s.average_rate or s.base_rate))),
            "video.channels": 3, "has_audio": False, "is_depth_map": False, "video.is_depth_map": False,
        }
