"""Action templates: vectors <-> text round trips, quantisation, ranges and bad templates."""

import numpy as np
import pytest

from vlac.actor.template import BUILTIN, ActionTemplate, TemplateError, get_template


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_round_trip_within_quantisation_step(name):
    t = get_template(name)
    rng = np.random.default_rng(0)
    lo = np.array([f.lo * f.step for f in t.fields])
    hi = np.array([f.hi * f.step for f in t.fields])
    step = np.array([f.step for f in t.fields])
    for _ in range(200):
        v = rng.uniform(lo, hi)
        text = t.to_text(v)
        back = t.from_text(text)
        assert np.all(np.abs(back - v) <= step / 2 + 1e-6), (v, text, back)
        assert t.to_text(back) == text  # text -> vector -> text is exact


def test_paper_six_dof_example_and_spaces():
    t = get_template("6dof")
    text = "{x: -47mm, y: 19mm, z: 66mm, roll: 14 degrees, pitch: 10 degrees, yaw: 15 degrees, open: 0}"
    assert t.from_text(text).tolist() == [-47, 19, 66, 14, 10, 15, 0]
    assert t.to_text([-47, 19, 66, 14, 10, 15, 0]) == text
    # A word-level tokenizer decodes with spaces between tokens; those are not significant.
    spaced = "{ x : -47 mm , y : 19 mm , z : 66 mm , roll : 14 degrees , pitch : 10 degrees , yaw : 15 degrees , open : 0 }"
    assert t.from_text(spaced).tolist() == [-47, 19, 66, 14, 10, 15, 0]


def test_sim_arm_quantises_and_counts_clipping():
    t = get_template("sim-arm")
    assert t.to_text([-4.6, 2.4, 9.5, 0.7]) == "{x: -5mm, y: 2mm, z: 10mm, open: 1}"
    ints, clipped = t.quantise([25.0, -3.0, -11.0, 1.0])
    assert ints == [10, -3, -10, 1] and clipped == 2
    state = get_template("sim-arm-state")
    assert state.to_text([12.3, 650.0, 140.7, 0.456]) == "{x: 12mm, y: 650mm, z: 141mm, open: 46}"
    assert state.from_text("{x: 12mm, y: 650mm, z: 141mm, open: 46}")[3] == pytest.approx(0.46)


@pytest.mark.parametrize("spec, match", [
    ("{x: 3mm}", "no field"),
    ("{x: $x[5:1]mm}", "lo <= hi"),
    ("{x: $x[-1:1]$y[0:1]}", "need text between"),
    ("{x: $x[-1:1]mm, y: $y[a:b]}", "does not parse"),
    ("{x: $x[-1:1]mm, x: $x[0:1]}", "repeats"),
])
def test_bad_templates_are_named(spec, match):
    with pytest.raises(TemplateError, match=match):
        ActionTemplate.parse(spec)


def test_bad_text_and_vectors():
    t = get_template("sim-arm")
    with pytest.raises(TemplateError, match="does not follow"):
        t.from_text("{x: 1mm, y: 2mm}")
    with pytest.raises(TemplateError, match="out of range"):
        t.from_text("{x: 11mm, y: 2mm, z: 0mm, open: 1}")
    with pytest.raises(TemplateError, match="4 fields"):
        t.to_text([1, 2, 3])
    with pytest.raises(TemplateError, match="NaN"):
        t.to_text([1, 2, np.nan, 0])
