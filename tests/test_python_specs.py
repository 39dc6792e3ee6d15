"""Python spec files on the command line, and `tdsl.fit` training exactly as `tdsl run`."""

from pathlib import Path

import attrs
import pytest
import torch

import tdsl
from tdsl.runs.cli import main

ROOT = Path(__file__).resolve().parent.parent

SMALL = """\
name: small
seed: 1
data: {kind: rings, n_positive: 150, n_negative: 150, split: {train: 0.7, val: 0.3}}
model:
  inputs: [{shape: [2]}]
  layers: [{op: linear, out_features: 8}, relu, {op: linear, out_features: 1}]
loss: bce_with_logits
optimizer: {kind: adam, lr: 0.3}
metrics: [accuracy]
train:
  epochs: 40
  batch_size: 32
  early_stopping: {monitor: val_loss, patience: 2}
device: cpu
"""


def _weights(state):
    return {k: v.cpu() for k, v in state.params.items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _without_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_cli_and_fit_train_identically(tmp_path, capsys):
    file = tmp_path / "small.yaml"
    file.write_text(SMALL)
    assert main(["run", str(file), "--out", str(tmp_path / "run")]) == 0
    last = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    best = torch.load(tmp_path / "run/checkpoints/best.pt", weights_only=True)

    spec = tdsl.load(file)
    program = tdsl.compile(spec)
    data = tdsl.load_data(spec)
    result = tdsl.fit(program, program.init(), data)
    # A copy of its own: the states training donated later leave it usable.
    assert tdsl.evaluate(program, result.best_state, data.val)["loss"] == pytest.approx(
        best["history"][-1]["val_loss"], rel=1e-6
    )
    assert result.stop_reason is not None and result.stop_reason.startswith("early stopping")
    assert len(result.history) < 40  # early stopping honoured, as on the command line
    assert _without_seconds(result.history) == _without_seconds(last["history"])
    assert _same(_weights(result.state), last["state"]["params"])
    # The best state is the checkpoint monitor's best epoch, as best.pt on disk.
    assert result.best_state.epoch == best["state"]["epoch"] < result.state.epoch
    assert _same(_weights(result.best_state), best["state"]["params"])
    assert "final:" in capsys.readouterr().out


def test_fit_can_turn_the_spec_off(tmp_path):
    spec = tdsl.load(SMALL)
    spec = attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=6))
    program = tdsl.compile(spec)
    data = tdsl.load_data(spec)
    plain = tdsl.fit(program, program.init(), data, early_stopping=False, keep_best=False)
    assert len(plain.history) == 6 and plain.best_state is None
    run = tdsl.fit(program, program.init(), data, directory=tmp_path / "fit")
    assert (tmp_path / "fit/checkpoints/best.pt").exists()
    assert tdsl.resume(tmp_path / "fit", progress=False).history == run.history  # finished


def test_ring_dnn_py_trains_as_the_yaml(tmp_path, capsys):
    short = ["--set", "train.epochs=2", "--set", "device=cpu"]
    for name in ("ring_dnn.yaml", "ring_dnn.py"):
        out = tmp_path / name
        assert main(["run", str(ROOT / "specs" / name), "--out", str(out), *short]) == 0
    yaml_run, py_run = (
        torch.load(tmp_path / n / "checkpoints/last.pt", weights_only=True)
        for n in ("ring_dnn.yaml", "ring_dnn.py")
    )
    assert _without_seconds(py_run["history"]) == _without_seconds(yaml_run["history"])
    assert _same(py_run["state"]["params"], yaml_run["state"]["params"])
    assert (tmp_path / "ring_dnn.py/spec.yaml").read_text() == (
        tmp_path / "ring_dnn.yaml/spec.yaml"
    ).read_text()
    capsys.readouterr()


def _write(tmp_path, text):
    file = tmp_path / "experiment.py"
    file.write_text(text)
    return str(file)


BUILT = """\
import tdsl

model = tdsl.Model(
    inputs=[tdsl.Input(shape=[2])],
    layers=[
        tdsl.Layer("linear", out_features=8),
        tdsl.Layer("lineer", out_features=1),
    ],
)
spec = tdsl.Spec(name="x", data=tdsl.Rings(), model=model, loss=tdsl.Loss("bce_with_logits"))
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "import tdsl\n\ndef helper():\n    return x\n\nspec = helper()\n",
            "experiment.py:4:1: error: <root>: the spec file raised NameError: "
            "name 'x' is not defined",
        ),
        (
            "import tdsl\nvalue = 3\n",
            "experiment.py:1:1: error: <root>: the spec file defines no `spec`",
        ),
        (
            "spec = 'name: x'\n",
            "experiment.py:1:1: error: <root>: `spec` is not a tdsl.Spec (got str)",
        ),
        (
            "def spec():\n    raise RuntimeError('no data here')\n",
            "experiment.py:2:1: error: <root>: spec() raised RuntimeError: no data here",
        ),
        ("spec = (\n", "experiment.py:1:8: error: <root>: the spec file has a syntax error"),
        (BUILT, "experiment.py:7:1: error: model.layers[1].op: unknown op 'lineer'"),
    ],
)
def test_python_spec_mistakes_are_located(tmp_path, capsys, text, expected):
    file = _write(tmp_path, text)
    assert main(["validate", file]) == 1
    out = capsys.readouterr()
    shown = out.out + out.err
    assert expected in shown.replace(str(tmp_path) + "/", "")
    assert "Traceback" not in shown


def test_set_applies_to_a_python_spec(tmp_path, capsys):
    file = _write(tmp_path, BUILT)
    assert main(["validate", file, "--set", "model.layers[1].op=linear"]) == 0
    assert main(["validate", file, "--set", "seed=x"]) == 1
    assert "<command line>:1:1: error: seed: expected an integer" in capsys.readouterr().out


def test_yaml_files_never_run_python(tmp_path, capsys):
    yaml_file = tmp_path / "spec.yaml"
    yaml_file.write_text("!!python/object/apply:os.system ['echo hi']\n")
    assert main(["validate", str(yaml_file)]) == 1
    assert "hi\n" not in capsys.readouterr().out
