"""User code by import path is refused unless its prefix is allowed: layers, losses and
data sets (`kind: python`)."""

import sys
import textwrap

import attrs
import pytest
import torch
from helpers import Interrupt

import tdsl
from tdsl.data import DataError, data_signature, load_data
from tdsl.runs.cli import main
from tdsl.runs.directories import evaluate_run, run
from tdsl.runs.resuming import resume

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


DATA = """
import numpy as np
import torch

SEEDS = []  # the seed of every call, so a test can count calls


def rings(n=64, seed=None):
    SEEDS.append(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = (np.hypot(x[:, 0], x[:, 1]) < 1.2).astype(np.float32)
    return {"x": x, "y": y, "unused": np.zeros(n)}


def classes(n=30):
    x = torch.arange(n * 4, dtype=torch.float64).reshape(n, 4)
    return [x], torch.arange(n) % 3


def raises(n=1):
    raise ValueError("no such split\\nwith more lines")


def returns_list(n=1):
    return [1, 2, 3]


def ragged(n=1):
    return {"x": np.ones((5, 2)), "y": np.ones(4)}


def strings(n=1):
    return {"x": np.array(["a", "b"]), "y": np.ones(2)}


def negative_labels(n=1):
    return np.ones((4, 2)), np.array([0, 1, -1, 2])


NOT_CALLABLE = 3
"""


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    package = tmp_path / "labcode"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    (package / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    (package / "data.py").write_text(textwrap.dedent(DATA))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    # The next test's package is a new folder; its new functions are new keys for the cache
    # of factory results, so no test sees another's.
    for name in [m for m in sys.modules if m == "labcode" or m.startswith("labcode.")]:
        del sys.modules[name]


def spec_text(layer="labcode.Gate", loss="labcode.Dice"):
    return SPEC.replace("LAYER", layer).replace("LOSS", loss)


def test_imports_are_refused_by_default_and_nothing_is_imported(user_package):
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


# --- data sets made by user code --------------------------------------------------------------

DATA_SPEC = """
name: user_data
seed: 3
data:
  kind: python
  factory: FACTORY
  args: {n: 64}
  target_kind: binary
  split: {train: 0.75, val: 0.25}
model:
  inputs: [{shape: [2]}]
  layers:
    - {op: linear, out_features: 4}
    - relu
    - {op: linear, out_features: 1}
loss: bce_with_logits
metrics: [accuracy]
optimizer: {kind: adam, lr: 0.05, schedule: {kind: one_cycle, interval: step}}
train: {epochs: 3, batch_size: 16}
"""


def data_spec(factory="labcode.data.rings", **data_changes):
    spec = tdsl.load(DATA_SPEC.replace("FACTORY", factory))
    return attrs.evolve(spec, data=attrs.evolve(spec.data, **data_changes))


def test_dataset_import_is_refused_by_default_and_nothing_is_imported(user_package):
    report = tdsl.validate(data_spec())
    assert [d.path for d in report.errors] == [("data", "factory")]
    assert report.errors[0].message == "importing 'labcode.data.rings' is not allowed"
    assert "--allow-import labcode" in report.errors[0].hint
    assert (report.errors[0].location.line, report.errors[0].location.column) == (6, 3)
    assert "labcode" not in sys.modules
    with pytest.raises(DataError, match="data.factory: importing 'labcode.data.rings' is not"):
        load_data(data_spec())
    with pytest.raises(tdsl.SpecError, match="not allowed"):
        tdsl.compile(data_spec())
    assert "labcode" not in sys.modules


def test_allowed_dataset_factory_is_called_once_with_the_seed_and_trains(user_package):
    spec = data_spec()
    allow = ["labcode"]
    assert tdsl.validate(spec, allow_imports=allow).ok
    signature = data_signature(spec, allow)
    assert signature.feature_shape == (2,) and signature.rows == {"train": 48, "val": 16}
    program = tdsl.compile(spec, allow_imports=allow)
    data = load_data(spec, allow_imports=allow)
    result = tdsl.fit(program, program.init(), data)
    assert len(result.history) == 3 and "val_accuracy" in result.history[-1]
    assert sys.modules["labcode.data"].SEEDS == [3]  # validate, compile and load share a call
    # The args reach the factory; the array it returned but nobody named is ignored.
    assert len(data.train) + len(data.val) == 64
    bigger = data_spec(args={"n": 100})
    assert len(load_data(bigger, allow_imports=allow).train) == 75


def test_a_tuple_with_a_list_of_features_and_class_labels(user_package):
    spec = data_spec("labcode.data.classes", target_kind="class", args={})
    spec = tdsl.load(
        tdsl.dump(spec)
        .replace("shape: [2]", "shape: [4]")
        .replace("out_features: 1", "out_features: 3")
        .replace("bce_with_logits", "cross_entropy")
    )
    report = tdsl.validate(spec, allow_imports=["labcode"])
    assert report.ok, report.format()
    signature = data_signature(spec, ["labcode"])
    assert signature.target == tdsl.Target(kind="class", num_classes=3)
    assert signature.features[0].dtype == "float32"  # cast to the model input's dtype
    train = load_data(spec, allow_imports=["labcode"]).train
    assert train.target.dtype == torch.int64 and set(train.target.tolist()) <= {0, 1, 2}


@pytest.mark.parametrize(
    ("factory", "path", "message"),
    [
        (
            "labcode.data.raises",
            ("data", "factory"),
            "factory 'labcode.data.raises' raised ValueError: no such split",
        ),
        (
            "labcode.data.returns_list",
            ("data", "factory"),
            "factory 'labcode.data.returns_list' returned a list of 3 items; expected a "
            "mapping of named arrays or a (features, target) tuple",
        ),
        (
            "labcode.data.ragged",
            ("data", "factory"),
            "factory 'labcode.data.ragged' returned arrays of different lengths: 'x' 5, 'y' 4",
        ),
        ("labcode.data.strings", ("data", "features", 0), "array 'x' holds <U1, not numbers"),
        ("labcode.data.negative_labels", ("data", "target"), "has a negative class label"),
        ("labcode.data.NOT_CALLABLE", ("data", "factory"), "is not callable (int)"),
        ("labcode.data.missing", ("data", "factory"), "cannot import 'labcode.data.missing'"),
        ("labcode", ("data", "factory"), "'labcode' is not an import path"),
    ],
)
def test_a_factory_that_fails_is_a_located_error_naming_it(user_package, factory, path, message):
    target_kind = "class" if "labels" in factory else "binary"
    spec = data_spec(factory, target_kind=target_kind)
    report = tdsl.validate(spec, allow_imports=["labcode"])
    # (class labels also give the binary loss an error of its own)
    assert [d.path for d in report.errors if d.path[0] == "data"] == [path], report.format()
    assert message in report.errors[0].message
    assert "\n" not in report.errors[0].message
    with pytest.raises(DataError) as raised:
        load_data(spec, allow_imports=["labcode"])
    assert message in str(raised.value) and "Traceback" not in str(raised.value)


def test_an_array_the_spec_names_must_be_returned(user_package):
    report = tdsl.validate(data_spec(features=("z",), target="yy"), allow_imports=["labcode"])
    assert [(d.path, d.message, d.hint) for d in report.errors] == [
        (
            ("data", "features", 0),
            "factory 'labcode.data.rings' returned no array 'z'",
            "expected one of: unused, x, y",
        ),
        (
            ("data", "target"),
            "factory 'labcode.data.rings' returned no array 'yy'",
            "did you mean 'y'?",
        ),
    ]


def test_run_resume_and_eval_need_the_same_allowance(user_package, tmp_path):
    spec = data_spec()
    allow = ["labcode"]
    _, straight = run(spec, tmp_path / "straight", allow_imports=allow)
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "cut", callbacks=[Interrupt(after=1)], allow_imports=allow)
    with pytest.raises(tdsl.SpecError, match="importing 'labcode.data.rings' is not allowed"):
        resume(tmp_path / "cut")
    resumed = resume(tmp_path / "cut", allow_imports=allow)
    for name, tensor in straight.state.model_state_dict().items():
        assert torch.equal(tensor, resumed.state.model_state_dict()[name]), name
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert set(evaluate_run(tmp_path / "cut", allow_imports=allow)) == {"val"}


def test_cli_run_and_eval_with_allow_import(user_package, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "spec.yaml"
    path.write_text(DATA_SPEC.replace("FACTORY", "labcode.data.rings"))
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "spec.yaml:6:3: error: data.factory: importing 'labcode.data.rings'" in out
    assert "hint: if you trust it, allow it with --allow-import labcode" in out
    assert main(["run", str(path), "--out", "runs/x"]) == 1
    assert "Traceback" not in "".join(capsys.readouterr())
    assert main(["run", str(path), "--out", "runs/x", "--allow-import", "labcode"]) == 0
    assert (tmp_path / "runs" / "x" / "checkpoints" / "best.pt").exists()
    assert main(["eval", "runs/x", "--allow-import", "labcode"]) == 0
    assert "val: loss=" in capsys.readouterr().out
    assert main(["eval", "runs/x"]) == 1
    assert "not allowed" in "".join(capsys.readouterr())
