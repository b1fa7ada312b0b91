"""Action (and state) templates: vectors <-> text with named fields, units, integer quantisation
and ranges (paper 3.1.2; interface note).

A template is written as its text with one ``$name[lo:hi]`` (or ``$name[lo:hi:step]``) per
field: the field's integer is written in place of the marker, ``lo..hi`` is the valid integer
range and ``step`` the physical units per integer (default 1).

    >>> t = ActionTemplate.parse("{x: $x[-10:10]mm, y: $y[-10:10]mm, z: $z[-10:10]mm, open: $open[0:1]}")
    >>> t.to_text([-4.6, 2, 9.9, 1])
    '{x: -5mm, y: 2mm, z: 10mm, open: 1}'
    >>> t.from_text('{x: -5mm, y: 2mm, z: 10mm, open: 1}')
    array([-5.,  2., 10.,  1.], dtype=float32)

Built-in templates: ``sim-arm`` (the simulated arm's x, y, z step in mm and a binary gripper),
``sim-arm-state`` (its end-effector position in mm and gripper opening in percent) and ``6dof``
(the paper's x, y, z in mm, roll, pitch, yaw in degrees and open).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_FIELD = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)\[\s*(-?\d+)\s*:\s*(-?\d+)\s*(?::\s*([0-9.]+)\s*)?\]")


class TemplateError(ValueError):
    """A template that does not parse, or text/vectors that do not fit one."""


@dataclass(frozen=True)
class Field:
    name: str
    lo: int
    hi: int
    step: float = 1.0
    """Physical units per integer in the text."""

    def quantise(self, value: float) -> tuple[int, bool]:
        """Nearest integer of ``value / step`` clipped to [lo, hi]; also whether it was clipped."""
        q = int(np.round(value / self.step))
        return min(max(q, self.lo), self.hi), not self.lo <= q <= self.hi


class ActionTemplate:
    """Fixed text pieces interleaved with numeric fields: ``pieces[0] f0 pieces[1] f1 ... pieces[n]``."""

    def __init__(self, spec: str, pieces: list[str], fields: list[Field]):
        self.spec = spec
        self.pieces = pieces
        self.fields = fields
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise TemplateError(f"template {spec!r} repeats a field name: {names}")
        # Whitespace is not significant (a word-level tokenizer decodes "{ x : -47 mm , ...").
        loose = [r"\s*".join(re.escape(c) for c in p if not c.isspace()) for p in pieces]
        self._regex = re.compile(r"\s*" + r"\s*(-?\d+)\s*".join(loose) + r"\s*$")

    @classmethod
    def parse(cls, spec: str) -> "ActionTemplate":
        if not isinstance(spec, str) or "$" not in spec:
            raise TemplateError(f"template {spec!r} has no field; mark each number as $name[lo:hi] "
                                "(e.g. '{x: $x[-10:10]mm, open: $open[0:1]}') or use a built-in: "
                                f"{', '.join(BUILTIN)}")
        pieces, fields, pos = [], [], 0
        for m in _FIELD.finditer(spec):
            pieces.append(spec[pos:m.start()])
            lo, hi = int(m.group(2)), int(m.group(3))
            step = float(m.group(4)) if m.group(4) else 1.0
            if lo > hi or step <= 0:
                raise TemplateError(f"field ${m.group(1)} in template {spec!r} needs lo <= hi and step > 0")
            fields.append(Field(m.group(1), lo, hi, step))
            pos = m.end()
        pieces.append(spec[pos:])
        stray = [p for p in pieces if "$" in p]
        if not fields or stray:
            raise TemplateError(f"template {spec!r} does not parse near {stray[0] if stray else spec!r}; "
                                "write each field as $name[lo:hi] or $name[lo:hi:step]")
        for k, p in enumerate(pieces[1:-1], 1):
            if not p.strip():
                raise TemplateError(f"fields {fields[k - 1].name} and {fields[k].name} of template {spec!r} "
                                    "need text between them")
        return cls(spec, pieces, fields)

    @property
    def dim(self) -> int:
        return len(self.fields)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def quantise(self, vector) -> tuple[list[int], int]:
        """Integers of each field and how many values were clipped into range."""
        v = np.asarray(vector, dtype=np.float64).reshape(-1)
        if v.shape != (self.dim,):
            raise TemplateError(f"vector has {v.size} values but template {self.spec!r} has {self.dim} "
                                f"fields ({', '.join(self.names)})")
        if not np.isfinite(v).all():
            raise TemplateError(f"vector {v.tolist()} contains NaN or inf")
        out = [f.quantise(x) for f, x in zip(self.fields, v)]
        return [q for q, _ in out], sum(c for _, c in out)

    def ints_to_text(self, ints: list[int]) -> str:
        return "".join(p + (str(int(n)) if k < self.dim else "")
                       for k, (p, n) in enumerate(zip(self.pieces, list(ints) + [0])))

    def to_text(self, vector) -> str:
        return self.ints_to_text(self.quantise(vector)[0])

    def ints_to_vector(self, ints: list[int]) -> np.ndarray:
        return np.array([n * f.step for n, f in zip(ints, self.fields)], dtype=np.float32)

    def from_text(self, text: str) -> np.ndarray:
        """Parse text written in this template (spaces are not significant) to the vector."""
        m = self._regex.match(text or "")
        if not m:
            raise TemplateError(f"text {text!r} does not follow template {self.spec!r}")
        ints = [int(g) for g in m.groups()]
        bad = [f"{f.name}={n} (valid {f.lo}..{f.hi})" for f, n in zip(self.fields, ints) if not f.lo <= n <= f.hi]
        if bad:
            raise TemplateError(f"text {text!r} has numbers out of range: {', '.join(bad)}")
        return self.ints_to_vector(ints)

    def __repr__(self) -> str:
        return f"ActionTemplate({self.spec!r})"


BUILTIN = {
    # The simulated arm (vlac.sim): end-effector step in mm (at most 10 per step) and a binary gripper.
    "sim-arm": "{x: $x[-10:10]mm, y: $y[-10:10]mm, z: $z[-10:10]mm, open: $open[0:1]}",
    # Its state: end-effector position in mm and the gripper opening in percent.
    "sim-arm-state": "{x: $x[-1000:1000]mm, y: $y[-1000:1000]mm, z: $z[-1000:1000]mm, open: $open[0:100:0.01]}",
    # The paper's 6-DoF form (x, y, z in mm; roll, pitch, yaw in degrees; open 0/1).
    "6dof": ("{x: $x[-1000:1000]mm, y: $y[-1000:1000]mm, z: $z[-1000:1000]mm, roll: $roll[-180:180] degrees, "
             "pitch: $pitch[-180:180] degrees, yaw: $yaw[-180:180] degrees, open: $open[0:1]}"),
}


def get_template(name_or_spec: str) -> ActionTemplate:
    """A built-in template by name, or a template spec."""
    return ActionTemplate.parse(BUILTIN.get(name_or_spec, name_or_spec))
