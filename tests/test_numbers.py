"""Numbers are read as YAML 1.2 reads them (`1e-3`, `1E5`, `.5`, `+1.0`), wherever a spec is
read: spec files and text, `--set` values, a run directory's spec.yaml and the spec text in
its checkpoints. PyYAML alone implements YAML 1.1, where `1e-3` is a string."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

import tdsl
from tdsl.runs.cli import main
from tdsl.runs.resuming import resume
from tdsl.spec.overrides import apply_overrides

SPEC = """\
name: ring_dnn
data: {kind: rings, n_positive: 40, n_negative: 40, split: {train: 0.5, val: 0.5}}
model:
  inputs: [{shape: [2]}]
  layers:
    - {op: linear, out_features: 4}
    - relu
    - {op: linear, out_features: 1}
loss: {kind: bce_with_logits}
optimizer: {kind: adam, lr: 0.01}
train: {epochs: 1, batch_size: 20}
"""


def _eps(written: str) -> object:
    """The value of a free optimizer argument written as `written` in a spec."""
    spec = tdsl.load(SPEC.replace("lr: 0.01", f"lr: 0.01, eps: {written}"))
    return spec.optimizer.args["eps"]


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("1e-3", 1e-3),
        ("1E5", 1e5),
        ("1.0e5", 1e5),
        ("1.5E-7", 1.5e-7),
        ("-2e+3", -2e3),
        ("3e+20", 3e20),
        (".5", 0.5),
        ("+1.0", 1.0),
        ("1.", 1.0),
        ("1.0e-05", 1e-5),  # as PyYAML dumps 1e-05
    ],
)
def test_yaml_1_2_floats_are_floats(written, value):
    read = _eps(written)
    assert type(read) is float and read == value


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("3", 3),
        ("-12", -12),
        ("1_000", 1000),
        ("0x1F", 31),
        ('"1e-3"', "1e-3"),  # quoted: a string, whatever it looks like
        ("'1E5'", "1E5"),
        ("1e", "1e"),
        ("e5", "e5"),
        ("1e-3x", "1e-3x"),
        ("true", True),
    ],
)
def test_integers_quoted_strings_and_the_rest_read_as_before(written, value):
    read = _eps(written)
    assert type(read) is type(value) and read == value


def test_infinity_and_nan_read_as_before():
    assert _eps(".inf") == math.inf and _eps("-.Inf") == -math.inf
    assert math.isnan(_eps(".nan"))


def test_pyyamls_own_loaders_are_left_alone():
    assert yaml.safe_load("1e-3") == "1e-3"
    assert yaml.load("1e-3", Loader=yaml.SafeLoader) == "1e-3"
    assert yaml.safe_dump("1e-3") == "1e-3\n...\n"


def test_validate_accepts_an_exponent_learning_rate(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("lr: 0.01", "lr: 3e-4"))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().out
    assert tdsl.load(path).optimizer.lr == 3e-4


def test_a_quoted_exponent_is_still_a_string(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("lr: 0.01", 'lr: "3e-4"'))
    assert main(["validate", str(path)]) == 1
    assert (
        f"{path}:10:25: error: optimizer.lr: expected a number, got '3e-4' (str)"
        in capsys.readouterr().out.splitlines()
    )


def test_set_reads_exponents_as_numbers(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    assert main(["validate", str(path), "--set", "optimizer.lr=3e-4"]) == 0
    data, problems = apply_overrides(
        {"optimizer": {}},
        ["optimizer.lr=1E-2", "optimizer.eps=[1e-8, .5, 2]", 'optimizer.x="1e-3"'],
    )
    assert problems == []
    assert data == {"optimizer": {"lr": 0.01, "eps": [1e-8, 0.5, 2], "x": "1e-3"}}
    assert type(data["optimizer"]["eps"][2]) is int
    # An exponent is a float, and epochs are counted: reported at the command line.
    capsys.readouterr()
    assert main(["validate", str(path), "--set", "train.epochs=1e1"]) == 1
    out = capsys.readouterr().out
    assert "<command line>:1:1: error: train.epochs: expected an integer, got 10.0 (float)" in out


def test_a_run_directory_written_with_exponents_resumes(tmp_path, capsys):
    """A run directory whose spec.yaml and checkpoint hold `lr: 3e-4` (as a YAML 1.2 tool
    would write it) reads as the same spec: resuming does not say the spec changed."""
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    out = tmp_path / "run"
    assert main(["run", str(path), "--set", "optimizer.lr=3e-4", "--out", str(out)]) == 0
    capsys.readouterr()
    written = (out / "spec.yaml").read_text()
    assert "lr: 0.0003" in written
    (out / "spec.yaml").write_text(written.replace("lr: 0.0003", "lr: 3e-4"))
    for name in ("last.pt", "best.pt"):
        checkpoint_path = out / "checkpoints" / name
        checkpoint = torch.load(checkpoint_path, weights_only=True)
        assert "lr: 0.0003" in checkpoint["spec"]
        checkpoint["spec"] = checkpoint["spec"].replace("lr: 0.0003", "lr: 3.0E-4")
        torch.save(checkpoint, checkpoint_path)
        # Replaced on purpose: its checksum goes with it, or it would be refused as damaged.
        checkpoint_path.with_name(name + ".sha256").unlink()
    assert tdsl.load(out / "spec.yaml").optimizer.lr == 3e-4
    result = resume(out)
    assert len(result.history) == 1
    assert main(["eval", str(out)]) == 0
