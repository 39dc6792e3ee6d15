"""Checking stages are independent: a section that fails to convert hides only the checks
that read it, and a broken layer only the layers after it.

Every gallery spec, with each section in turn replaced by a broken one, must validate
without crashing (no check may read a section that is not there) and report errors only
about that section (no check may report a consequence of it elsewhere).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tdsl.check.pipeline import validate

ROOT = Path(__file__).resolve().parent.parent
SPECS = ["ring_dnn", "tabular", "multitask", "timeseries_lstm", "weight_decay_groups"]
# A value each section's converter refuses.
BROKEN = {
    "name": 5,
    "seed": "zero",
    "data": {"kind": "rings", "n_positive": -1},
    "model": {"inputs": [{"shape": [2]}], "layer": []},
    "loss": {"kind": "mse", "terms": 5},
    "optimizer": {"kind": "adam", "lr": "fast"},
    "metrics": [{"kind": "accuracy", "output": 5}],
    "train": {"epochs": "ten"},
    "device": {"name": "cpu", "precision": "fp64"},
}


def _with(section: str):
    return lambda data: ({**data, section: BROKEN[section]}, [])


@pytest.mark.parametrize("stem", SPECS)
def test_a_broken_section_reports_only_itself(stem):
    path = ROOT / "specs" / f"{stem}.yaml"
    assert validate(path).ok
    for section in BROKEN:
        report = validate(path, _with(section))
        heads = {str(d.path[0]) if d.path else "" for d in report.errors}
        assert heads == {section}, (section, report.format())


def _errors(text: str) -> list[str]:
    return [f"{d.location.line}: {d.message}" for d in validate(text).errors]


HEAD = """
name: t
data: {kind: random, n: 32, target: {kind: class, num_classes: 3}}
loss: cross_entropy
model:
  inputs: [{name: x, shape: [4]}]
  layers:
"""


def test_a_name_given_twice_is_one_error_and_hides_only_its_readers():
    layers = """\
    - {name: a, op: linear, out_features: 8}
    - {name: a, op: relu}
    - {name: b, op: linear, out_features: 3}
    - {name: c, op: linear, inputs: [x], out_features: 3, bais: false}
    - {name: d, op: conv1d, inputs: [x], out_channels: 2, kernel_size: 3}
    - {name: out, op: add, inputs: [b, c]}
"""
    found = _errors(HEAD + layers)
    assert [e.split(":")[0] for e in found] == ["9", "11", "12"], found
    assert "duplicate name 'a'" in found[0]
    assert not any("itself" in e for e in found)
    assert "bais" in found[1] and "conv1d" in found[2]


def test_an_unknown_input_hides_only_the_layers_after_it():
    layers = """\
    - {name: a, op: linear, inputs: [y], out_features: 8}
    - {name: a2, op: linear, out_features: 3}
    - {name: b, op: linear, inputs: [x], out_features: 3}
    - {name: b2, op: flatten, inputs: [b], start_dim: 0}
    - {name: out, op: add, inputs: [a2, b]}
"""
    found = _errors(HEAD + layers)
    assert [e.split(":")[0] for e in found] == ["8", "11"], found
    assert "unknown input 'y'" in found[0] and "merges the batch" in found[1]


def test_a_complete_model_still_gets_every_later_check():
    # A typo in train leaves the loss checked against the model's output.
    text = HEAD.replace("name: t", "name: t\ntrain: {epoch: 3}") + (
        "    - {op: linear, out_features: 2}\n"
    )
    found = _errors(text)
    assert len(found) == 2, found
    assert "unknown key 'epoch'" in found[0]
    assert "3" in found[1] and "2" in found[1]  # the output's width against the 3 classes


def test_an_unknown_input_is_not_offered_the_layer_itself():
    layers = """\
    - {name: h, op: linear, out_features: 3}
    - {name: both, op: concat, inputs: [h, g], dim: 1}
"""
    (problem,) = validate(HEAD + layers).errors
    assert "unknown input 'g'" in problem.message
    assert "both" not in (problem.hint or "") and "h" in (problem.hint or "")
