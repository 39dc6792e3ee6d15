"""User code by import path is refused unless its prefix is allowed."""

import textwrap

import pytest

import tdsl
from tdsl.cli import main
from tdsl.data import load_data

PACKAGE = """
import torch
from torch import nn

SIDE_EFFECTS = []
SIDE_EFFECTS.append("imported")


class Gate(nn.Module):
    def __init__(self, in_features: int):
        super().__init__()
        self.proj = nn.Linear(in_features, in_features)

    def forward(self, x):
        return x * torch.sigmoid(self.proj(x))


class Dice(nn.Module):
    def __init__(self, smooth: float = 1.0):
        super().__init__()
        self.smooth = smooth

    def forward(self, prob, target):
        inter = (prob * target).sum()
        return 1 - (2 * inter + self.smooth) / (prob.sum() + target.sum() + self.smooth)


def not_a_module():
    return 1
"""

SPEC = """
name: user_code
data: {kind: rings, n_positive: 64, n_negative: 64}
model:
  inputs: [{shape: [2]}]
  layers:
    - {op: LAYER, in_features: 2}
    - {op: linear, out_features: 1}
    - sigmoid
loss: {kind: LOSS, smooth: 1.0}
train: {epochs: 1, batch_size: 16}
"""


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    package = tmp_path / "labcode"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    (package / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def spec_text(layer="labcode.Gate", loss="labcode.Dice"):
    return SPEC.replace("LAYER", layer).replace("LOSS", loss)


def test_imports_are_refused_by_default_and_nothing_is_imported(user_package):
    import sys

    report = tdsl.validate(spec_text())
    assert [d.path for d in report.errors] == [("model", "layers", 0, "op"), ("loss", "kind")]
    assert "importing 'labcode.Gate' is not allowed" in report.errors[0].message
    assert "--allow-import labcode" in report.errors[0].hint
    assert "labcode" not in sys.modules


def test_allowed_prefix_imports_validates_and_trains(user_package):
    assert tdsl.validate(spec_text(), allow_imports=["labcode"]).ok
    spec = tdsl.load(spec_text())
    program = tdsl.compile(spec, allow_imports=["labcode"])
    result = tdsl.fit(program, program.init(), load_data(spec))
    assert len(result.history) == 1
    assert "gate1.proj.weight" in dict(program.module.named_parameters())


def test_prefix_must_match_a_whole_module_name(user_package):
    report = tdsl.validate(spec_text(), allow_imports=["lab"])
    assert not report.ok and "not allowed" in report.errors[0].message


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("labcode.not_a_module", "'labcode.not_a_module' is not a torch.nn.Module class"),
        ("labcode.Missing", "cannot import 'labcode.Missing': AttributeError"),
        ("labcode.broken.Thing", "cannot import 'labcode.broken.Thing': RuntimeError: boom"),
    ],
)
def test_bad_imports_are_located_errors(user_package, layer, message):
    report = tdsl.validate(spec_text(layer=layer), allow_imports=["labcode"])
    assert report.errors[0].path == ("model", "layers", 0, "op")
    assert message in report.errors[0].message


def test_cli_flag(user_package, tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(spec_text())
    assert main(["validate", str(path)]) == 1
    assert "hint: if you trust it, allow it with --allow-import labcode" in capsys.readouterr().out
    assert main(["validate", str(path), "--allow-import", "labcode"]) == 0
