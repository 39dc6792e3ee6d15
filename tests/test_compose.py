"""Composed specs: `base:` files deep-merged under a spec, each value located in its file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdsl.runs.cli import main
from tdsl.spec.load_dump import load, read_spec, to_data

DATA = """\
data:
  kind: rings
  n_positive: 100
  n_negative: 100
  split: {train: 0.7, val: 0.3}
"""
MODEL = """\
model:
  inputs: [{shape: [2]}]
  layers:
    - {op: linear, out_features: 4}
    - relu
    - {op: linear, out_features: 1}
loss: {kind: bce_with_logits}
optimizer: {kind: adam, lr: 0.01}
metrics: [accuracy]
"""


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder / "spec.yaml"


def test_bases_merge_in_order_with_the_spec_on_top(tmp_path):
    spec = load(
        _write(
            tmp_path,
            {
                "common/data.yaml": DATA,
                "common/model.yaml": MODEL,
                "common/wide.yaml": "model:\n  layers: [{op: linear, out_features: 1}]\n",
                "spec.yaml": "base: [common/data.yaml, common/model.yaml, common/wide.yaml]\n"
                "name: mine\ndata: {n_positive: 50}\n",
            },
        )
    )
    data = to_data(spec)
    assert spec.name == "mine"
    assert data["data"]["n_positive"] == 50 and data["data"]["n_negative"] == 100
    # A list replaces the base's list; the mapping around it merges.
    assert len(spec.model.layers) == 1 and data["model"]["inputs"] == [{"shape": [2]}]


def test_delete_removes_keys_of_the_base_or_the_whole_mapping(tmp_path):
    path = _write(
        tmp_path,
        {
            "data.yaml": DATA,
            "model.yaml": MODEL,
            "spec.yaml": "base: [data.yaml, model.yaml]\nname: d\n"
            "data: {_delete_: [split]}\noptimizer: {_delete_: true, kind: sgd, lr: 0.1}\n",
        },
    )
    data = to_data(load(path))
    assert "split" not in data["data"]
    assert data["optimizer"] == {"kind": "sgd", "lr": 0.1}


def test_a_value_is_located_in_the_file_that_wrote_it(tmp_path):
    path = _write(
        tmp_path,
        {
            "data.yaml": DATA,
            "model.yaml": MODEL.replace("lr: 0.01", "lr: fast"),
            "spec.yaml": "name: x\nbase: [data.yaml, model.yaml]\ndata: {n_negative: -3}\n",
        },
    )
    spec, problems = read_spec(path)
    assert spec is None
    where = {d.path: d.location for d in problems}
    lr, count = where[("optimizer", "lr")], where[("data", "n_negative")]
    assert (lr.file, lr.line, lr.included_from) == (str(tmp_path / "model.yaml"), 8, (f"{path}:2",))
    assert (count.file, count.line, count.included_from) == (str(path), 3, ())


def test_a_spec_given_as_text_cannot_have_bases():
    spec, problems = read_spec("base: other.yaml\nname: x\n")
    assert spec is None
    assert [d.message for d in problems] == ["base specs need a spec file to be relative to"]


@pytest.mark.parametrize("command", [["validate", "--print"], ["run", "--print-config"]])
def test_print_shows_the_merged_spec_with_every_default(tmp_path, capsys, command):
    path = _write(
        tmp_path,
        {"d.yaml": DATA, "m.yaml": MODEL, "spec.yaml": "base: [d.yaml, m.yaml]\nname: p\n"},
    )
    assert main([*command, str(path), "--set", "optimizer.lr=1e-3"]) == 0
    out = capsys.readouterr().out
    assert "base" not in out
    assert "optimizer: {kind: adam, lr: 0.001}" in out
    assert "noise: 1.0" in out  # a default the files never wrote
    assert load(out).name == "p"
