"""Fine-tuning, freezing and initializers: `trainable: false`, `model.freeze`,
`freeze_norm_stats`, `model.init_weights` and `model.init` (weights from another run)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import attrs
import pytest
import torch

import tdsl
from tdsl.data import load_data
from tdsl.runs.directories import run
from tdsl.runs.resuming import resume
from tdsl.train.loops import fit
from tests.helpers import Interrupt

ROOT = Path(__file__).resolve().parent.parent

RINGS = """
name: rings
seed: 0
data: {kind: rings, n_positive: 150, n_negative: 150}
model:
  inputs:
    - {shape: [2]}
  layers:
    - {op: linear, out_features: 8}
    - {op: batchnorm1d}
    - relu
    - {op: linear, out_features: 8}
    - relu
    - {op: linear, out_features: 1}
loss: {kind: bce_with_logits}
optimizer: {kind: sgd, lr: 0.1, momentum: 0.9}
train: {epochs: 2, batch_size: 50}
"""


def rings(model_yaml: str = "", **changes) -> tdsl.Spec:
    """The ring spec with `model_yaml` lines added under `model:`."""
    text = RINGS.replace("loss:", model_yaml + "loss:") if model_yaml else RINGS
    spec = tdsl.load(text)
    return attrs.evolve(spec, **changes) if changes else spec


def trained(spec: tdsl.Spec, epochs: int = 2):
    program = tdsl.compile(spec)
    start = program.init()
    data = load_data(spec)
    result = fit(program, start, data, epochs=epochs, progress=False, checkpoint=False)
    return program, start, result.state


# --- freezing ------------------------------------------------------------------------------


def test_frozen_parameters_are_bitwise_unchanged_and_the_rest_train():
    spec = rings('  freeze: ["linear2.*"]\n')
    spec = attrs.evolve(
        spec,
        model=attrs.evolve(
            spec.model,
            layers=(attrs.evolve(spec.model.layers[0], trainable=False), *spec.model.layers[1:]),
        ),
    )
    program, start, end = trained(spec)
    frozen = {"linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"}
    for name, value in start.params.items():
        assert torch.equal(value, end.params[name]) == (name in frozen), name
    # Left out of the optimizer: its one param group holds only the trainable ones.
    (group,) = program._steps.optimizer.param_groups
    assert len(group["params"]) == 4 and all(p.requires_grad for p in group["params"])
    assert not any(name in frozen for name in end.optimizer)


def test_a_frozen_block_use_freezes_everything_inside_it():
    spec = tdsl.load(
        RINGS.replace(
            "  layers:\n",
            "  blocks:\n    mlp:\n      params: {width: 8}\n      layers:\n"
            "        - {op: linear, out_features: $width}\n        - relu\n"
            "  layers:\n    - {op: mlp, name: trunk, trainable: false}\n",
        )
    )
    program, start, end = trained(spec, epochs=1)
    assert torch.equal(start.params["trunk.linear1.weight"], end.params["trunk.linear1.weight"])
    assert not torch.equal(start.params["linear2.weight"], end.params["linear2.weight"])


def test_summary_and_cost_count_frozen_parameters_as_non_trainable():
    summary = tdsl.summarize(rings('  freeze: ["linear1.*", {modules: batchnorm1d}]\n'))
    assert summary.frozen == 8 * 2 + 8 + 8 + 8  # linear1 (16 + 8) and the norm's 8 + 8
    assert summary.trainable == summary.total - summary.frozen > 0
    from tdsl.check.cost import estimate
    from tdsl.check.pipeline import validated

    def gradient_bytes(spec):
        return estimate(spec, validated(spec)[1]).grad_bytes

    assert gradient_bytes(rings()) - gradient_bytes(rings('  freeze: ["linear1.*"]\n')) == 24 * 4


def test_the_parameter_table_shows_frozen_parameters_in_no_group():
    table = tdsl.summary(rings('  freeze: ["linear1.*"]\n'), params=True)
    rows = {line.split()[0]: line.split() for line in table.splitlines() if "." in line}
    assert rows["linear1.weight"][-3:] == ["False", "-", "-"]
    assert rows["linear2.weight"][-3:] == ["True", "default", "-"]


def test_freeze_norm_stats_keeps_the_running_statistics():
    frozen_norm = "  freeze: [{modules: batchnorm1d}]\n"
    _, start, end = trained(rings(frozen_norm + "  freeze_norm_stats: true\n"), epochs=1)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(
            start.buffers[f"batchnorm1d1.{name}"], end.buffers[f"batchnorm1d1.{name}"]
        )
    # Without the flag only the affine parameters are frozen; the statistics still move.
    _, start, end = trained(rings(frozen_norm), epochs=1)
    assert torch.equal(start.params["batchnorm1d1.weight"], end.params["batchnorm1d1.weight"])
    assert not torch.equal(
        start.buffers["batchnorm1d1.running_mean"], end.buffers["batchnorm1d1.running_mean"]
    )


def test_freezing_mistakes_are_located():
    report = tdsl.validate(rings('  freeze: ["conv*"]\n'))
    (error,) = report.errors
    assert error.path == ("model", "freeze", 0)
    assert "'conv*' picks no parameter" in error.message and "linear1.weight" in error.hint
    unfrozen_norm = rings('  freeze: ["linear1.*"]\n  freeze_norm_stats: true\n')
    (warning,) = tdsl.validate(unfrozen_norm).warnings
    assert warning.path == ("model", "freeze_norm_stats") and "no batch-" in warning.message
    report = tdsl.validate(rings('  freeze: ["*"]\n'))
    assert [e.message for e in report.errors] == [
        "every parameter is frozen: nothing is left to train"
    ]


# --- initializers --------------------------------------------------------------------------

INIT = """  init_weights:
    - {params: "linear*.weight", kind: orthogonal, gain: 2.0}
    - {params: "*.bias", kind: constant, val: 0.25}
    - {params: "linear3.weight", kind: normal, std: 0.01}
"""


def test_initializers_apply_in_order_and_follow_the_seed():
    program = tdsl.compile(rings(INIT))
    state = program.init()
    w = state.params["linear2.weight"]  # [8, 8]: orthogonal times the gain
    assert torch.allclose(w @ w.T, 4 * torch.eye(8), atol=1e-5)
    assert all(torch.all(v == 0.25) for n, v in state.params.items() if n.endswith("bias"))
    assert state.params["linear3.weight"].std() < 0.05  # the later entry wins
    assert torch.equal(program.init().params["linear2.weight"], w)  # same seed, same weights
    assert not torch.equal(program.init(seed=1).params["linear2.weight"], w)
    plain = tdsl.compile(rings()).init()
    assert not torch.equal(plain.params["linear2.weight"], w)


def test_initializer_mistakes_are_located_with_hints():
    report = tdsl.validate(
        rings(
            "  init_weights:\n"
            "    - {kind: xavier_uniformm}\n"
            "    - {params: '*.weight', kind: normal, std: -1.0}\n"
            "    - {params: '*.weight', kind: constant}\n"
            "    - {params: 'fc.*', kind: zeros}\n"
        )
    )
    kind = next(e for e in report.errors if e.path == ("model", "init_weights", 0, "kind"))
    assert kind.message == "unknown initializer 'xavier_uniformm'"
    assert kind.hint.startswith("did you mean 'xavier_uniform'")
    messages = {e.path: e.message for e in report.errors}
    assert messages[("model", "init_weights", 1, "std")] == "std must be >= 0 (got -1.0)"
    assert "missing required argument 'val'" in messages[("model", "init_weights", 2)]
    assert "'fc.*' picks no parameter" in messages[("model", "init_weights", 3)]


# --- relabelled data, and the spec round trip ------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")
def test_relabel_gives_new_classes_on_the_same_split():
    spec = tdsl.load(ROOT / "specs" / "finetune_digits.yaml")
    digits = tdsl.load(ROOT / "specs" / "digits_cnn.yaml")
    parity, original = load_data(spec).val, load_data(digits).val
    assert torch.equal(parity.features[0], original.features[0])  # the same rows
    assert torch.equal(parity.target, original.target % 2)
    bad = attrs.evolve(spec, data=attrs.evolve(spec.data, relabel=(0, 1)))
    error = next(e for e in tdsl.validate(bad).errors if e.path == ("data", "relabel"))
    assert "a class from 0 to 9 for each of the 10 classes" in error.message


def test_relabel_beyond_the_class_count_is_a_located_error_not_a_crash():
    # Regression (fuzz): a label of 2**63 reached Target(num_classes=2**63 + 1) and raised.
    spec = tdsl.load(ROOT / "specs" / "finetune_digits.yaml")
    for label in (10, 2**63):
        relabel = (0, 1, 0, 1, 0, label, 1, 1, 0, 1)
        bad = attrs.evolve(spec, data=attrs.evolve(spec.data, relabel=relabel))
        errors = [e for e in tdsl.validate(bad).errors if e.path == ("data", "relabel")]
        assert errors and str(label) in errors[0].message


def test_fine_tuning_keys_round_trip_and_stay_out_of_other_dumps():
    spec = tdsl.load(ROOT / "specs" / "finetune_digits.yaml")
    text = tdsl.dump(spec)
    assert "init: {from: data/digits_cnn.pt, params: [conv1.*, conv2.*]}" in text
    assert tdsl.load(text) == spec
    spec = tdsl.load(rings('  freeze: ["linear1.*", {modules: linear, exclude: "*.bias"}]\n'))
    assert (
        "freeze:\n    - linear1.*\n    - {modules: [linear], exclude: ['*.bias']}\n"
        in tdsl.dump(spec)
    )
    assert tdsl.load(tdsl.dump(spec, defaults=True)) == spec
    plain = tdsl.dump(rings(), defaults=True)
    assert not any(key in plain for key in ("trainable", "freeze", "init", "relabel"))


# --- init from another run -----------------------------------------------------------------


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    directory, _ = run(rings(), tmp_path_factory.mktemp("source") / "run", progress=False)
    return directory


def test_init_loads_mapped_weights_and_records_the_checksum(source_run, tmp_path):
    shutil.copytree(source_run, tmp_path / "source")
    text = RINGS.replace(
        "{op: linear, out_features: 8}\n    - {op: batchnorm1d}",
        "{name: trunk, op: linear, out_features: 8, trainable: false}\n    - {op: batchnorm1d}",
    )
    (tmp_path / "spec.yaml").write_text(
        text.replace(
            "loss:",
            "  init:\n    from: source\n    which: last\n    map: {linear1.: trunk.}\n"
            "    params: [trunk.*, batchnorm*]\nloss:",
        ).replace("seed: 0", "seed: 5")
    )
    spec = tdsl.load(tmp_path / "spec.yaml")
    source = torch.load(tmp_path / "source/checkpoints/last.pt", weights_only=True)["state"]
    state = tdsl.compile(spec).init()
    assert torch.equal(state.params["trunk.weight"], source["params"]["linear1.weight"])
    assert torch.equal(
        state.buffers["batchnorm1d1.running_mean"], source["buffers"]["batchnorm1d1.running_mean"]
    )
    fresh = tdsl.compile(attrs.evolve(spec, model=attrs.evolve(spec.model, init=None))).init()
    assert torch.equal(state.params["linear2.weight"], fresh.params["linear2.weight"])

    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "tuned", progress=False, callbacks=[Interrupt(1)])
    record = json.loads((tmp_path / "tuned" / "init.json").read_text())
    file = tmp_path / "source" / "checkpoints" / "last.pt"
    assert record["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert Path(record["file"]) == file.absolute()
    # Resuming continues from the run's own checkpoint, even with the source gone.
    shutil.rmtree(tmp_path / "source")
    resumed = resume(tmp_path / "tuned", progress=False)
    assert len(resumed.history) == 2
    assert json.loads((tmp_path / "tuned" / "final.json").read_text())["init"] == record
    assert torch.equal(resumed.state.params["trunk.weight"], source["params"]["linear1.weight"])


def test_a_checkpoint_that_does_not_fit_is_refused_before_training(source_run, tmp_path):
    narrower = RINGS.replace(
        "8}\n    - relu\n    - {op: linear, out_features: 1}",
        "6}\n    - relu\n    - {op: linear, out_features: 1}",
    )

    def errors(init: str) -> list[str]:
        spec = tdsl.load(narrower.replace("loss:", f"  init: {init}\nloss:"))
        return [e.message for e in tdsl.validate(spec).errors]

    (message,) = errors(f"{{from: {source_run}}}")
    assert message.startswith("the checkpoint best.pt does not fit the model; mis-shaped: ")
    assert "linear2.weight (the model's [6, 8], the checkpoint's [8, 8])" in message
    assert errors(f"{{from: {source_run}, params: [linear1.*, batchnorm*]}}") == []
    (message,) = errors(
        f"{{from: {source_run}, map: {{linear2.: head.}}, params: [linear2.*, head.*]}}"
    )
    assert "missing: linear2.weight, linear2.bias; unexpected: head.weight, head.bias" in message
    lenient = f"{{from: {source_run}, map: {{linear2.: head.}}, params: [linear2.*, head.*], "
    lenient += "strict: false}"
    assert errors(lenient) == ["nothing in best.pt matches the model's names"]
    (message,) = errors(f"{{from: {source_run}/checkpoints/last.pt, which: best}}")
    assert "which: best picks a run directory's checkpoint" in message
    bad = tmp_path / "junk.pt"
    torch.save({"not": "weights"}, bad)
    (message,) = errors(f"{{from: {bad}}}")
    assert "holds no weights tdsl can read" in message


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")
def test_finetune_digits_keeps_the_trunk_and_learns_odd_even(tmp_path):
    spec = tdsl.load(ROOT / "specs" / "finetune_digits.yaml")
    spec = attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=1))
    _, result = run(spec, tmp_path / "run", progress=False)
    start = torch.load(ROOT / "specs" / "data" / "digits_cnn.pt", weights_only=True)
    for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
        assert torch.equal(result.state.params[name], start[name]), name
    assert result.history[-1]["val_accuracy"] > 0.8  # odd/even: chance is 0.5
