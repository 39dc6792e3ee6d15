"""`--cost`: the estimates made on meta tensors against one real training step on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import tdsl
from tdsl.check.cost import estimate, memory_fit
from tdsl.check.cost import eval_batch_size as cost_eval_batch_size
from tdsl.check.cost_report import parse_device, parse_size
from tdsl.check.cost_trace import flop_counter
from tdsl.check.pipeline import validated
from tdsl.data import load_data
from tdsl.runs.cli import main
from tdsl.runs.directories import run
from tdsl.train.loops import eval_batch_size

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def resnet18_small() -> tdsl.Spec:
    text = (ROOT / "specs/models/resnet18.yaml").read_text()
    for big, small in (
        ("shape: [3, 224, 224]", "shape: [3, 32, 32]"),
        ("num_classes: 1000", "num_classes: 10"),
        ("out_features: 1000", "out_features: 10"),
    ):
        assert big in text, big
        text = text.replace(big, small)
    return tdsl.load(text + "train: {batch_size: 8}\n")


def small_gpt() -> tdsl.Spec:
    from test_transformers import small_gpt

    return small_gpt()


def measured(spec: tdsl.Spec) -> tuple[int, int, int, int]:
    """One real training step on the CPU: (rows, bytes autograd saved, each storage once and
    no parameter's, FLOPs, bytes of optimizer state after it)."""
    program = tdsl.compile(spec)
    state = program.init()
    batch = next(iter(load_data(spec).train.batches(spec.train.batch_size, 0)))
    owned: set[int] = set()
    saved: dict[int, int] = {}

    def pack(tensor):
        if not owned:  # the parameters a step has loaded into the module, at its start
            modules = [*program.module.parameters(), *program.module.buffers()]
            owned.update(t.untyped_storage().data_ptr() for t in modules)
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in owned:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    # oneDNN's fused LSTM is invisible to torch's FLOP counter: count the composite one.
    lstm = any(isinstance(m, torch.nn.LSTM) for m in program.module.modules())
    onednn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = onednn and not lstm
    try:
        with flop_counter() as counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            new_state, _ = program.train_step(state, batch)
    finally:
        torch.backends.mkldnn.enabled = onednn
    optimizer = sum(
        t.nbytes
        for per_param in new_state.optimizer.values()
        for t in per_param.values()
        if isinstance(t, torch.Tensor)
    )
    return batch.size, sum(saved.values()), counter.get_total_flops(), optimizer


CASES = [pytest.param(lambda p=p: tdsl.load(p), id=p.stem) for p in SPECS] + [
    pytest.param(resnet18_small, id="resnet18"),
    pytest.param(small_gpt, id="gpt"),
]


@pytest.mark.parametrize("make", CASES)
def test_estimates_match_one_real_training_step(make):
    spec = make()
    report, inference = validated(spec)
    assert report.ok
    cost = estimate(spec, inference)
    rows, activations, flops, optimizer = measured(spec)
    assert cost.batch_size == rows
    assert cost.param_bytes == sum(p.nbytes for p in inference.module.parameters())
    assert cost.optimizer_bytes == optimizer
    assert abs(cost.activation_bytes - activations) <= 0.2 * activations
    assert cost.train_flops == flops
    assert sum(layer.train_flops for layer in cost.layers) == flops


RING = (ROOT / "specs/ring_dnn.yaml").read_text()


@pytest.mark.parametrize(
    "optimizer",
    [
        "{kind: sgd, lr: 0.1}",
        "{kind: sgd, lr: 0.1, momentum: 0.9}",
        "{kind: adamw, lr: 0.01, amsgrad: true}",
        "{kind: rmsprop, lr: 0.01, momentum: 0.5, centered: true}",
        "{kind: rmsprop, lr: 0.01}",
        "{kind: adagrad, lr: 0.01}",
        "{kind: sgd, lr: 0.1, groups: [{params: ['*.bias'], args: {momentum: 0.9}}]}",
    ],
)
def test_optimizer_state_is_exact(optimizer):
    text = RING.replace("optimizer:\n  kind: adam\n  lr: 0.01\n", f"optimizer: {optimizer}\n")
    assert text != RING
    spec = tdsl.load(text)
    cost = estimate(spec, validated(spec)[1])
    assert cost.optimizer_bytes == measured(spec)[3]


def test_an_optimizer_whose_state_is_not_known_says_so():
    spec = tdsl.load(RING.replace("kind: adam", "kind: adamax"))
    cost = estimate(spec, validated(spec)[1])
    assert cost.optimizer_bytes is None and cost.optimizer_state == "unknown"


def test_the_largest_batch_that_fits_does_and_a_larger_one_does_not():
    spec = tdsl.load((ROOT / "specs/digits_cnn.yaml").read_text())
    _, inference = validated(spec)
    cost = estimate(spec, inference)
    fit = memory_fit(spec, inference, cost, 8 * 2**20)
    assert fit.fits and fit.headroom == 8 * 2**20 - cost.step_bytes
    assert fit.largest_batch is not None and fit.largest_batch > cost.batch_size
    at_most = estimate(spec, inference, batch_size=fit.largest_batch)
    over = estimate(spec, inference, batch_size=int(fit.largest_batch * 1.1) + 1)
    assert at_most.step_bytes <= fit.budget < over.step_bytes
    tight = memory_fit(spec, inference, cost, cost.step_bytes - 1)
    assert not tight.fits and tight.largest_batch < cost.batch_size


def test_the_eval_batch_is_the_one_evaluation_uses():
    for path in SPECS:
        spec = tdsl.load(path)
        assert cost_eval_batch_size(spec) == eval_batch_size(spec), path
    spec = tdsl.load(RING)  # 1,200 validation rows: evaluated in one batch of them all
    assert estimate(spec, validated(spec)[1]).eval_batch_size == 1200


def test_memory_sizes_and_devices():
    assert parse_size("24GB") == parse_size("24GiB") == 24 * 2**30
    assert parse_size("512mb") == 512 * 2**20 and parse_size("1.5T") == int(1.5 * 2**40)
    assert parse_device("cuda:24GB") == ("cuda", 24 * 2**30)
    assert parse_device("cuda:1") == ("cuda:1", None)
    for bad in ("24", "lots", "-1GB"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_validate_warns_at_the_batch_size_when_a_step_does_not_fit(capsys):
    path = str(ROOT / "specs/digits_cnn.yaml")
    assert main(["validate", path, "--device", "cuda:2MB"]) == 0
    out = capsys.readouterr().out
    assert "digits_cnn.yaml:" in out and "warning" in out and "train.batch_size" in out
    assert "does not fit in 2.00 MiB" in out and "largest batch_size that fits" in out
    assert main(["validate", path, "--memory", "2MB", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    (warning,) = shown["diagnostics"]
    assert warning["path"] == "train.batch_size" and warning["severity"] == "warning"
    cost = shown["cost"][path]
    assert cost["fit"]["fits"] is False and cost["fit"]["largest_batch_size"] >= 1
    assert cost["memory"]["total"] > 2 * 2**20 and cost["flops"]["train_step"] > 0


def test_without_cost_flags_the_json_is_the_diagnostics_alone(capsys):
    assert main(["validate", str(ROOT / "specs/ring_dnn.yaml"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_bad_memory_size_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["validate", str(ROOT / "specs/ring_dnn.yaml"), "--memory", "lots"])
    assert stop.value.code == 2


def test_calibrate_measures_and_predicts_times(capsys):
    path = str(ROOT / "specs/ring_dnn.yaml")
    assert main(["validate", path, "--cost"]) == 0
    assert "Time" not in capsys.readouterr().out  # no time without a measurement
    assert main(["validate", path, "--calibrate", "--format", "json"]) == 0
    time = json.loads(capsys.readouterr().out)["cost"][path]["time"]
    assert 0 < time["step_seconds"] < time["epoch_seconds"] < time["run_seconds"]


def test_the_run_directory_summary_has_the_cost_when_asked(tmp_path):
    spec = tdsl.load(RING.replace("epochs: 100", "epochs: 1"))
    directory, _ = run(spec, tmp_path / "run", stream=None, cost=True)
    text = (directory / "summary.txt").read_text()
    assert "activations" in text and "training step" in text and "(1 epochs)" in text
    # Off by default: tracing a step costs a run a second of start-up.
    directory, _ = run(spec, tmp_path / "plain", stream=None)
    assert "activations" not in (directory / "summary.txt").read_text()
