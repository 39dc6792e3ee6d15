"""Splits that get no rows are refused by `tdsl validate`, located, with the counts and the
fix; run directories hold strict JSON even when a metric is NaN or infinite; a monitor that
never has a value does not crash early stopping."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import tdsl
from tdsl import spec as S
from tdsl.data import load_data
from tdsl.data.tensors import split_index
from tdsl.runs.cli import main
from tdsl.runs.directories import run
from tdsl.runs.plot import _series, read_history
from tdsl.train.callbacks import EarlyStopping

SPEC = """\
name: t
data:
  kind: csv
  file: {file}
  target: y
  target_kind: binary
  columns: [a, b]
  split: {split}
model:
  inputs:
    - {{shape: [2]}}
  layers:
    - {{op: linear, out_features: 1}}
loss:
  kind: bce_with_logits
{extra}"""


def write(folder: Path, rows: int, split: str, extra: str = "", name: str = "t.csv") -> Path:
    lines = [f"{i % 7 / 7:.3f},{i % 5 / 5:.3f},{i % 2}" for i in range(rows)]
    (folder / name).write_text("\n".join(["a,b,y", *lines]) + "\n")
    path = folder / "spec.yaml"
    path.write_text(SPEC.format(file=name, split=split, extra=extra))
    return path


def messages(report) -> list[str]:
    return [
        f"{d.severity} {d.location.line}:{d.location.column} {tdsl.errors.format_path(d.path)}: "
        + d.message
        + (f" [{d.hint}]" if d.hint else "")
        for d in report.diagnostics
    ]


def test_forty_rows_at_val_one_percent_are_refused_with_the_fraction_that_works(tmp_path):
    spec_file = write(tmp_path, 40, "{train: 0.99, val: 0.01}")
    assert messages(tdsl.validate(spec_file)) == [
        "error 8:24 data.split.val: 40 rows at val: 0.01 give 0 validation rows, and the best "
        "checkpoint is picked by 'val_loss' (the default checkpoint.monitor) "
        "[raise data.split.val to at least 0.025]"
    ]
    # The fix the hint names works: one validation row.
    fixed = write(tmp_path, 40, "{train: 0.975, val: 0.025}")
    assert tdsl.validate(fixed).diagnostics == ()
    assert len(load_data(tdsl.load(fixed)).val) == 1


def test_run_refuses_an_empty_split_before_writing_anything(tmp_path, capsys):
    spec_file = write(tmp_path, 40, "{train: 0.99, val: 0.01}")
    assert main(["run", str(spec_file), "--out", str(tmp_path / "run")]) == 1
    assert "40 rows at val: 0.01 give 0 validation rows" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_header_only_csv_is_refused_at_its_file(tmp_path):
    spec_file = write(tmp_path, 0, "{train: 0.8, val: 0.2}")
    assert messages(tdsl.validate(spec_file)) == [
        f"error 4:3 data.file: the CSV {tmp_path / 't.csv'} has a header and no rows"
    ]
    write(tmp_path, 0, "{}", name="val.csv")
    spec_file = write(tmp_path, 30, "{train: 0.8, val: 0.2}")
    text = spec_file.read_text().replace("  columns:", "  val_file: val.csv\n  columns:")
    spec_file.write_text(text)
    assert messages(tdsl.validate(spec_file)) == [
        f"error 7:3 data.val_file: the CSV {tmp_path / 'val.csv'} has a header and no rows"
    ]


def test_one_row_split_in_half_leaves_training_empty(tmp_path):
    spec_file = write(tmp_path, 1, "{train: 0.5, val: 0.5}")
    assert messages(tdsl.validate(spec_file)) == [
        "error 8:11 data.split.train: 1 row at train: 0.5 gives 0 training rows "
        "[add rows: 1 row cannot fill 2 splits]"
    ]


@pytest.mark.parametrize("transform", ["standardize", "minmax"])
def test_a_zero_training_fraction_is_reported_not_a_crash_of_the_fitted_columns(
    tmp_path, transform
):
    # Regression (fuzz): with no training rows the column statistics were never set, and
    # applying them to the validation rows raised KeyError.
    spec_file = write(tmp_path, 30, "{train: 0, val: 0.2}")
    text = spec_file.read_text().replace(
        "columns: [a, b]", f"columns: [{{name: a, transform: {transform}}}, b]"
    )
    spec_file.write_text(text)
    found = messages(tdsl.validate(spec_file))
    assert any("data.split.train: the training split is empty" in m for m in found), found
    assert any("split fractions must sum to 1 (got 0.2)" in m for m in found), found


def test_early_stopping_on_an_empty_validation_split_is_refused(tmp_path):
    extra = "metrics: [accuracy]\ntrain:\n  early_stopping: {monitor: val_accuracy}\n"
    extra += "  checkpoint: {monitor: loss}\n"
    spec_file = write(tmp_path, 40, "{train: 0.99, val: 0.01}", extra)
    assert messages(tdsl.validate(spec_file)) == [
        "error 8:24 data.split.val: 40 rows at val: 0.01 give 0 validation rows, and "
        "train.early_stopping.monitor watches 'val_accuracy' "
        "[raise data.split.val to at least 0.025]"
    ]


def test_a_plateau_schedule_on_an_empty_validation_split_is_refused():
    spec = tdsl.Spec(
        name="rings",
        data=S.Rings(n_positive=20, n_negative=20, split=S.Split(train=0.99, val=0.01)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])], layers=[tdsl.Layer("linear", out_features=1)]
        ),
        loss=tdsl.Loss("bce_with_logits"),
        optimizer=tdsl.Optimizer("adam", schedule=S.Schedule("reduce_on_plateau")),
        train=tdsl.Train(checkpoint=S.Checkpoint(save_best=False)),
    )
    (error,) = tdsl.validate(spec).errors
    assert error.path == ("data", "split", "val")
    assert error.message == (
        "40 rows at val: 0.01 give 0 validation rows, and optimizer.schedule.monitor "
        "watches 'val_loss'"
    )


def test_an_empty_test_split_nothing_uses_is_a_warning_and_the_rows_are_shown(tmp_path, capsys):
    spec_file = write(tmp_path, 40, "{train: 0.7, val: 0.29, test: 0.01}")
    report = tdsl.validate(spec_file)
    assert report.ok
    assert messages(report) == [
        "warning 8:34 data.split.test: 40 rows at test: 0.01 give 0 test rows; the run has no "
        "test split [raise data.split.test to at least 0.025]"
    ]
    assert main(["validate", str(spec_file)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"{spec_file}: valid; output linear1 [B, 1]; 3 parameters; rows: train 28, val 12, test 0"
    )


def test_split_sizes_count_what_split_index_draws():
    from tdsl.data.tensors import split_sizes  # new: what validation counts without drawing

    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(0, 60)
        train = rng.choice([0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 1.0])
        val = round(rng.uniform(0, 1 - train), 2)
        split = S.Split(train=train, val=val, test=round(1 - train - val, 6))
        own = (rng.random() < 0.2, rng.random() < 0.2)
        strata = torch.tensor([rng.randint(0, 2) for _ in range(n)]) if rng.random() < 0.5 else None
        index = split_index(n, split, torch.Generator().manual_seed(1), strata, own)
        drawn = {"train": len(index.train), "val": index.val, "test": index.test}
        drawn = {k: v if isinstance(v, int) else len(v) for k, v in drawn.items() if v is not None}
        classes = None if strata is None else tuple(int((strata == c).sum()) for c in range(3))
        counted = split_sizes(n, split, own, classes)
        assert {k: v for k, v in counted.items() if v} == {k: v for k, v in drawn.items() if v}


def test_early_stopping_on_a_monitor_that_never_has_a_value_stops_without_crashing():
    stopping = EarlyStopping("val_loss", patience=2)
    state = SimpleNamespace(stop_reason=None)
    for epoch in (1, 2):
        stopping.on_epoch_end(state, None, {"epoch": epoch, "loss": float("nan")})
    assert state.stop_reason == (
        "early stopping: val_loss has not improved for 2 epochs (it was missing or NaN every epoch)"
    )


def _strict(text: str):
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_final_json_and_history_are_strict_json_when_metrics_are_not_finite(tmp_path):
    spec = tdsl.Spec(  # SGD at lr 0.3 diverges: inf, then NaN losses, skipped batches
        name="diverging",
        data=tdsl.LinearRegression(n=200, split=tdsl.Split(train=0.7, val=0.3)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])], layers=[tdsl.Layer("linear", out_features=1)]
        ),
        loss=tdsl.Loss("mse"),
        optimizer=tdsl.Optimizer("sgd", lr=0.3),
        train=tdsl.Train(epochs=5, batch_size=8, on_nan="skip_batch"),
    )
    directory, result = run(spec, tmp_path / "run")
    assert any(v != v for row in result.history for v in row.values())  # a NaN happened
    final = _strict((directory / "final.json").read_text())
    assert final["last"]["loss"] is None and final["last"]["val_loss"] is None
    lines = (directory / "history.jsonl").read_text().splitlines()
    rows = [_strict(line) for line in lines]
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4, 5]
    assert rows[-1]["loss"] is None
    # `tdsl plot` reads the nulls as gaps.
    assert read_history(directory) == rows
    epochs, values = _series(rows, "loss")
    assert epochs and 5.0 not in epochs and len(epochs) == len(values)


def test_strict_json_writes_null_for_nan_and_infinity_and_refuses_the_rest():
    from tdsl.train.callbacks import strict_json  # new: what run directories write with

    value = {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": (2, None)}
    assert strict_json(value) == '{"a": null, "b": [null, null, 1.5], "c": [2, null]}'
    with pytest.raises(TypeError):
        strict_json({"x": object()})
