"""One observation pipeline for training, serving and PPO: which camera a model reads, how its frame
is cropped and resized, and how pixels are normalised. It is saved with every checkpoint (as
``vlac_config.json``), so a model is always fed the way it was trained.

    >>> pre = read_preprocess("runs/actor/model")
    >>> frame = pre.frame(pre.view(obs["images"]))    # the robot's camera, as the model sees it (uint8)
    >>> x = pre.pixels([frame])                       # (1, 3, S, S) normalised, for the model
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vlac.utils.imports import require

# torch is imported where frames are resized, not here: the RL loop's data service reads `view`
# and the config alone, and its process stays free of torch (a smaller, faster-starting worker)
if TYPE_CHECKING:
    import torch

VLAC_CONFIG = "vlac_config.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Preprocess:
    """How a robot's observation becomes the model's pixels; saved as ``vlac_config.json``."""

    image_size: int = 96
    """Side of the square the image is centre-cropped and resized to."""
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    system_prompt: bool = True
    """Open each chat with the release's system prompt. The tiny preset leaves it out: it adds
    ~35 tokens to every sample (a quarter of the training compute) and carries no information."""
    camera: str = ""
    """The camera the model reads (the one it was trained on); empty: ``main`` when the robot has
    one, else its first camera."""
    extra: dict = field(default_factory=dict)
    """Anything else a checkpoint records (e.g. which objectives it was trained on)."""

    def view(self, images: dict) -> np.ndarray:
        """The frame of this model's camera among a robot's ``{camera: image}``."""
        if self.camera:
            if self.camera not in images:
                raise ValueError(f"the model reads camera {self.camera!r}, the observation has {sorted(images)}; "
                                 "send that camera or use a model trained on one of these")
            return images[self.camera]
        return images["main"] if "main" in images else next(iter(images.values()))

    def frame(self, image) -> np.ndarray:
        """A camera frame reduced to what the model sees, uint8 ``(S, S, 3)``: centre-cropped to a
        square and resized (antialiased, the model's own resampling). A frame whose short side is
        at most S is returned as it is (the model reads it as it is; enlarging it would only cost
        memory and disk)."""
        a = to_rgb_uint8(image)
        if min(a.shape[:2]) <= self.image_size:
            return a
        t = _square(a, self.image_size)
        torch = require("torch", extra="model")
        return t.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()

    def pixels(self, images: list) -> "torch.Tensor":
        """Images (any size) -> ``(N, 3, S, S)`` float32, normalised, centre-cropped and resized."""
        torch = require("torch", extra="model")
        s = self.image_size
        out = [_square(to_rgb_uint8(im, name=f"image {k}"), s) for k, im in enumerate(images)]
        x = torch.stack(out) if out else torch.zeros(0, 3, s, s)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def save(self, path: str | Path) -> None:
        (Path(path) / VLAC_CONFIG).write_text(json.dumps(asdict(self), indent=2))


def read_preprocess(path: str | Path) -> Preprocess:
    """A checkpoint's observation pipeline from its config files alone (no weights)."""
    path = Path(path)
    if (path / VLAC_CONFIG).is_file():
        raw = json.loads((path / VLAC_CONFIG).read_text())
        return Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    # a plain transformers InternVL checkpoint: read its image size from the vision config
    cfg = json.loads((path / "config.json").read_text())
    size = cfg.get("vision_config", {}).get("image_size", 448)
    return Preprocess(image_size=int(size[0] if isinstance(size, list) else size))


def run_pipeline(actor: str, critic: str) -> Preprocess:
    """The one observation pipeline of an RL run (``--actor`` and ``--critic`` as given, critic
    possibly ``none``): the actor's camera and normalisation, frames kept at the largest side the
    actor or the critic reads (each model resizes to its own from there)."""
    from dataclasses import replace

    from vlac.model import model_path

    pre = read_preprocess(model_path(actor, "actor"))
    if critic == "none":
        return pre
    judge = read_preprocess(model_path(critic, "critic"))
    if pre.camera and judge.camera and pre.camera != judge.camera:
        raise ValueError(f"the actor reads camera {pre.camera!r} and the critic {judge.camera!r}: one run feeds both "
                         "the same frame, so use an actor and a critic trained on the same camera")
    return replace(pre, image_size=max(pre.image_size, judge.image_size), camera=pre.camera or judge.camera)


def to_rgb_uint8(image, name: str = "image") -> np.ndarray:
    """Accept HxWx3 RGB (uint8 or float in [0, 1]), 3xHxW, HxW grey or HxWx4 RGBA; anything else
    is rejected with the shape it had and what is expected."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channel-first (3, H, W) -> (H, W, 3)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4) or min(a.shape[:2]) < 8:
        raise ValueError(f"{name} has shape {a.shape}; expected an RGB image HxWx3 (or 3xHxW, HxW grey, "
                         "HxWx4 RGBA) of at least 8x8 pixels")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} has dtype {a.dtype}; expected uint8 0..255 or float 0..1")
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or inf values")
        if a.min() < 0 or a.max() > 1.0 + 1e-6:
            raise ValueError(f"{name} is float with values in [{a.min():.3g}, {a.max():.3g}]; float images "
                             "must be scaled to [0, 1] (or pass uint8 0..255)")
        return np.round(a * 255).astype(np.uint8)
    if a.min() < 0 or a.max() > 255:
        raise ValueError(f"{name} is integer with values outside 0..255")
    return a.astype(np.uint8)


def _square(a: np.ndarray, s: int) -> "torch.Tensor":
    """HxWx3 uint8 -> (3, s, s) float in [0, 1]: centre-cropped square, resized (antialiased)."""
    torch = require("torch", extra="model")
    h, w = a.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = np.ascontiguousarray(a[top:top + side, left:left + side])
    t = torch.from_numpy(crop if crop.flags.writeable else crop.copy()).permute(2, 0, 1)  # (a received frame
    t = t.float().div_(255.0)[None]  # (1, 3, side, side)                                     is read-only)
    if side != s:
        t = torch.nn.functional.interpolate(t, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    return t[0]
