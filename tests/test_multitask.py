"""Several outputs and several targets: named CSV targets, a `kind: outputs` loss with a term
per output, metrics per output and monitoring them."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import tdsl
from tdsl.train.callbacks import resolve_mode

ROOT = Path(__file__).resolve().parent.parent

SPEC = """
name: three_heads
seed: 0
data:
  kind: csv
  file: {file}
  columns: [x1, x2]
  targets:
    flag: {{column: Flag, kind: binary}}
    size: {{column: Size, kind: regression}}
    shape: {{column: Shape, kind: class}}
  split: {{train: 0.75, val: 0.25}}
model:
  inputs: [{{name: x, shape: [2]}}]
  layers:
    - {{name: trunk, op: linear, inputs: [x], out_features: 8}}
    - {{name: act, op: relu}}
    - {{name: flag_head, op: linear, inputs: [act], out_features: 1}}
    - {{name: size, op: linear, inputs: [act], out_features: 1}}
    - {{name: shape, op: linear, inputs: [act], out_features: 3}}
  outputs: [flag_head, size, shape]
loss:
  kind: outputs
  terms:
    - {{output: flag_head, target: flag, kind: bce_with_logits, weight: 2.0}}
    - {{output: size, kind: mse, weight: 0.5}}
    - {{output: shape, kind: cross_entropy}}
optimizer: {{kind: adam, lr: 0.05}}
metrics:
  - {{kind: auroc, output: flag_head}}
  - {{kind: mae, output: size}}
  - {{kind: accuracy, output: shape}}
train: {{epochs: 2, batch_size: 16, early_stopping: {{monitor: val_flag_head_auroc}}}}
"""


@pytest.fixture
def spec_text(tmp_path) -> str:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=generator)
    lines = ["x1,x2,Flag,Size,Shape"]
    for a, b in x.tolist():
        shape = "round" if a > 0.5 else ("square" if b > 0 else "star")
        lines.append(f"{a:.3f},{b:.3f},{int(a + b > 0)},{2 * a - b:.3f},{shape}")
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(lines) + "\n")
    return SPEC.format(file=path.as_posix())


def test_each_term_and_metric_is_in_the_history_and_the_total_is_their_weighted_sum(spec_text):
    report = tdsl.validate(spec_text)
    assert report.ok, report.format()
    program = tdsl.compile(tdsl.load(spec_text))
    data = tdsl.load_data(program.spec)
    result = tdsl.fit(program, program.init(), data, checkpoint=False, tensorboard=False)
    last = result.history[-1]
    for prefix in ("", "val_"):
        total = (
            2.0 * last[f"{prefix}loss_flag_head"]
            + 0.5 * last[f"{prefix}loss_size"]
            + last[f"{prefix}loss_shape"]
        )
        assert math.isclose(last[f"{prefix}loss"], total, rel_tol=1e-4)
        for name in ("flag_head_auroc", "size_mae", "shape_accuracy"):
            assert 0 <= last[f"{prefix}{name}"] < math.inf
    # The training loss falls: every head is trained through the shared trunk.
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_the_targets_share_one_tensor_split_by_name(spec_text):
    program = tdsl.compile(tdsl.load(spec_text))
    data = tdsl.load_data(program.spec)
    batch = next(iter(data.train.batches(5)))
    assert batch.target.shape == (5, 3)  # a column per named target, batched as one
    targets = program._steps._target(batch)
    assert targets["flag"].shape == (5, 1) and targets["flag"].dtype == torch.float32
    assert targets["size"].shape == (5, 1)
    assert targets["shape"].shape == (5,) and targets["shape"].dtype == torch.long
    assert set(targets["shape"].tolist()) <= {0, 1, 2}  # round, square, star in sorted order


def test_predict_returns_each_output(spec_text):
    program = tdsl.compile(tdsl.load(spec_text))
    flag, size, shape = tdsl.predict(program, program.init(), (torch.zeros(7, 2),))
    assert flag.shape == (7, 1) and size.shape == (7, 1) and shape.shape == (7, 3)


def test_a_run_predicts_every_output_side_by_side(spec_text, tmp_path):
    spec = tdsl.load(spec_text)
    directory, _ = tdsl.run(spec, tmp_path / "run", stream=io.StringIO())
    rows = tmp_path / "new.csv"
    rows.write_text("x1,x2\n0.5,-1.0\n1.5,0.25\n")
    out = tmp_path / "out.csv"
    assert tdsl.predict_run(directory, rows, out) == 2
    lines = out.read_text().splitlines()
    assert lines[0].split(",") == [  # each output's columns, prefixed by its name
        "flag_head_probability",
        "flag_head_label",
        "size_prediction",
        "shape_probability_round",
        "shape_probability_square",
        "shape_probability_star",
        "shape_label",
    ]
    values = [line.split(",") for line in lines[1:]]
    assert len(values) == 2 and all(row[-1] in ("round", "square", "star") for row in values)
    shape = np.array([[float(v) for v in row[3:6]] for row in values])
    assert np.allclose(shape.sum(axis=1), 1, atol=1e-5)  # probabilities, not logits


def test_a_metric_of_one_output_is_maximized_or_minimized_by_its_kind():
    assert resolve_mode("val_churn_auroc", "auto") == "max"
    assert resolve_mode("val_my_head_top_k_accuracy", "auto") == "max"
    assert resolve_mode("val_spend_mae", "auto") == "min"
    assert resolve_mode("val_loss_churn", "auto") == "min"
    assert resolve_mode("val_accuracy", "auto") == "max"  # one output, as before


def test_a_loss_per_output_is_spelled_the_same_in_python():
    loss = tdsl.Loss(
        "outputs",
        terms=[
            tdsl.LossTerm("bce_with_logits", output="churn"),
            tdsl.LossTerm("mse", output="spend", target="spending", weight=0.5),
        ],
    )
    back = tdsl.load(tdsl.dump(tdsl.load(ROOT / "specs" / "multitask.yaml")))
    assert back.loss.terms[1].output == "spend"
    assert loss.terms[1].target_name == "spending" and loss.terms[0].target_name == "churn"
    assert tdsl.Metric("auroc", output="churn").name == "churn_auroc"
    assert tdsl.Metric("auroc").name == "auroc"


def test_two_heads_with_one_loss_point_at_a_loss_per_output():
    text = (ROOT / "specs" / "multitask.yaml").read_text()
    start = text.index("loss:\n")
    one_loss = text[:start] + "loss: {kind: bce_with_logits}\n" + text[text.index("optimizer:") :]
    one_loss = one_loss.replace(
        "data/customers.csv", (ROOT / "specs/data/customers.csv").as_posix()
    )
    one_loss = one_loss[: one_loss.index("metrics:")] + "train: {epochs: 1}\n"
    (error,) = tdsl.validate(one_loss).errors
    assert error.path == ("model", "outputs") and "kind: outputs" in error.hint
