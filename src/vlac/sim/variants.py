"""Named scene variants: lighting, table look, camera pose and extra camera viewpoints.

A variant string joins named variants with ``+`` (``"dim+table-dark+gripper-cam"``); they compose
in the order given and are deterministic (no randomness), so a variant name fully reproduces the
scene's look. Variants change only how the scene *looks*, never its physics, so the same seed
and the same actions give the same trajectory under every variant.

    >>> from vlac.sim.variants import parse_variant
    >>> parse_variant("dim+gripper-cam").extra_cameras
    ('gripperPOV',)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# Values written in the models' own units: colours are RGB(A) in 0..1, positions in metres.


def _scale_lights(rgb: tuple[float, float, float]) -> Callable:
    def apply(model, cam_id: int) -> None:
        model.light_diffuse[:] = model.light_diffuse * np.asarray(rgb)
        model.vis.headlight.diffuse[:] = np.asarray(model.vis.headlight.diffuse) * np.asarray(rgb)
        model.vis.headlight.ambient[:] = np.asarray(model.vis.headlight.ambient) * np.asarray(rgb)

    return apply


def _table(rgba: tuple[float, float, float, float], texture: str | None = "keep") -> Callable:
    """Recolour the table top; ``texture`` is ``keep``, ``None`` (plain) or another texture's name."""

    def apply(model, cam_id: int) -> None:
        mat = model.material("table_wood").id
        model.mat_rgba[mat] = rgba
        if texture is None:
            model.mat_texid[mat, :] = -1
        elif texture != "keep":
            model.mat_texid[mat, 1] = model.texture(texture).id

    return apply


def _shift_camera(dpos: tuple[float, float, float], dfovy: float) -> Callable:
    def apply(model, cam_id: int) -> None:
        model.cam_pos[cam_id] = model.cam_pos[cam_id] + np.asarray(dpos)
        model.cam_fovy[cam_id] = model.cam_fovy[cam_id] + dfovy

    return apply


@dataclass(frozen=True)
class _Named:
    description: str
    apply: Callable | None = None
    extra_camera: str | None = None


VARIANTS: dict[str, _Named] = {
    "default": _Named("the scene as Meta-World ships it"),
    "dim": _Named("all lights at 35% intensity", _scale_lights((0.35, 0.35, 0.35))),
    "warm-light": _Named("orange-tinted lighting", _scale_lights((1.15, 0.75, 0.45))),
    "blue-light": _Named("blue-tinted lighting", _scale_lights((0.55, 0.75, 1.2))),
    "table-dark": _Named("dark-stained wooden table", _table((0.35, 0.3, 0.3, 1.0))),
    "table-green": _Named("plain green table cloth (no texture)", _table((0.25, 0.55, 0.3, 1.0), None)),
    "table-metal": _Named("brushed-metal table texture", _table((1.0, 1.0, 1.0, 1.0), "T_wallmetal")),
    "cam-shift": _Named("main camera moved 6 cm and widened by 4 degrees",
                        _shift_camera((0.04, -0.04, 0.03), 4.0)),
    "gripper-cam": _Named("adds a second camera on the gripper", extra_camera="gripperPOV"),
    "behind-cam": _Named("adds a second camera behind the gripper", extra_camera="behindGripper"),
}


@dataclass(frozen=True)
class SceneVariant:
    """A composition of named variants, applied to a MuJoCo model before its renderer exists."""

    names: tuple[str, ...] = ("default",)
    extra_cameras: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return "+".join(self.names)

    def apply(self, model, main_camera: str) -> None:
        cam_id = model.camera(main_camera).id
        for n in self.names:
            fn = VARIANTS[n].apply
            if fn is not None:
                fn(model, cam_id)


def parse_variant(spec: str) -> SceneVariant:
    """``"dim+table-dark"`` -> SceneVariant. Unknown names raise ValueError listing valid ones."""
    names = tuple(s.strip() for s in (spec or "default").split("+") if s.strip()) or ("default",)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        valid = ", ".join(f"{k} ({v.description})" for k, v in VARIANTS.items())
        raise ValueError(f"unknown scene variant(s) {unknown} in {spec!r}. Valid names, joined with '+': {valid}")
    if len(names) > 1:
        names = tuple(n for n in names if n != "default")
    if len(set(names)) != len(names):
        raise ValueError(f"scene variant {spec!r} names a variant twice")
    extra = tuple(VARIANTS[n].extra_camera for n in names if VARIANTS[n].extra_camera)
    return SceneVariant(names, extra)
