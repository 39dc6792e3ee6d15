"""Loops, run directories, resume and the run/eval/predict commands."""

import io
import json
from collections import OrderedDict

import attrs
import numpy as np
import pytest
import torch
from helpers import Interrupt
from torch import nn

import tdsl
from tdsl.data import TensorData, load_data
from tdsl.runs.cli import main
from tdsl.runs.directories import RunError, run
from tdsl.runs.resuming import resume
from tdsl.train.callbacks import EarlyStopping, ProgressPrinter
from tdsl.train.loops import evaluate, fit
from tdsl.train.program import compile


def small_spec(**train) -> tdsl.Spec:
    return tdsl.Spec(
        name="small",
        seed=7,
        data=tdsl.Rings(n_positive=150, n_negative=150, split=tdsl.Split(train=0.7, val=0.3)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])],
            layers=[
                tdsl.Layer("linear", out_features=8),
                tdsl.Layer("relu"),
                tdsl.Layer("dropout", p=0.2),
                tdsl.Layer("linear", out_features=1),
            ],
        ),
        loss=tdsl.Loss("bce_with_logits"),
        optimizer=tdsl.Optimizer(
            "adam", lr=0.02, schedule=tdsl.Schedule("step", step_size=2, gamma=0.5)
        ),
        metrics=[tdsl.Metric("accuracy"), tdsl.Metric("auroc")],
        train=tdsl.Train(**{"epochs": 4, "batch_size": 32, **train}),
    )


def without_time(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_epoch_metrics_are_exact_over_uneven_batches():
    spec = small_spec()
    program = compile(spec)
    state = program.init()
    val = load_data(spec).val  # 90 rows: batches of 32, 32, 26
    by_batches = evaluate(program, state, val, batch_size=32)
    whole = evaluate(program, state, val, batch_size=len(val))
    assert by_batches == pytest.approx(whole, rel=1e-6)
    logits = program.predict_step(state, val.features)
    expected = nn.BCEWithLogitsLoss()(logits, val.target)
    assert by_batches["loss"] == pytest.approx(float(expected), rel=1e-6)


def test_same_spec_same_history_and_weights():
    spec = small_spec()
    first = fit(compile(spec), compile(spec).init(), load_data(spec))
    second = fit(compile(spec), compile(spec).init(), load_data(spec))
    assert without_time(first.history) == without_time(second.history)
    for name, tensor in first.state.params.items():
        assert torch.equal(tensor, second.state.params[name])
    assert [row["lr"] for row in first.history] == [0.02, 0.02, 0.01, 0.01]


def test_fit_does_not_modify_the_callers_state():
    spec = small_spec(epochs=1)
    program = compile(spec)
    state = program.init()
    before = {k: v.clone() for k, v in state.params.items()}
    fit(program, state, load_data(spec))
    for name, tensor in state.params.items():
        assert torch.equal(tensor, before[name])


def test_early_stopping_stops_and_says_why():
    spec = small_spec(epochs=30)
    program = compile(spec)
    stopper = EarlyStopping(monitor="val_loss", mode="min", patience=0, min_delta=10.0)
    result = fit(program, program.init(), load_data(spec), callbacks=[stopper])
    assert len(result.history) == 2
    assert "val_loss has not improved for 1 epochs" in result.stop_reason


def test_run_directory_contents(tmp_path):
    directory, result = run(small_spec(), tmp_path / "run")
    names = {p.relative_to(directory).as_posix() for p in directory.rglob("*")}
    assert names >= {
        "spec.yaml",
        "summary.txt",
        "history.csv",
        "history.jsonl",
        "final.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    }
    assert tdsl.load(directory / "spec.yaml") == small_spec()
    assert len((directory / "history.csv").read_text().splitlines()) == 1 + 4
    rows = [json.loads(line) for line in (directory / "history.jsonl").read_text().splitlines()]
    assert without_time(rows) == without_time(result.history)
    final = json.loads((directory / "final.json").read_text())
    assert final["epochs"] == 4 and "val_accuracy" in final["best"]
    best = torch.load(directory / "checkpoints" / "best.pt", weights_only=True)
    plain = nn.Sequential(
        OrderedDict(
            linear1=nn.Linear(2, 8),
            relu1=nn.ReLU(),
            dropout1=nn.Dropout(0.2),
            linear2=nn.Linear(8, 1),
        )
    )
    plain.load_state_dict(best["model"])
    assert "Total params: 33" in (directory / "summary.txt").read_text()


def test_resume_reaches_the_same_weights_and_history_bitwise(tmp_path):
    spec = small_spec(epochs=5)
    _, straight = run(spec, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "cut", callbacks=[Interrupt(after=2)])
    resumed = resume(tmp_path / "cut")
    assert without_time(resumed.history) == without_time(straight.history)
    for name, tensor in straight.state.model_state_dict().items():
        assert torch.equal(tensor, resumed.state.model_state_dict()[name]), name
    for name, param_state in straight.state.optimizer.items():
        for key, value in param_state.items():
            assert torch.equal(value, resumed.state.optimizer[name][key])


def test_resume_reports_a_changed_spec_as_a_diff(tmp_path):
    spec = small_spec(epochs=3)
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "cut", callbacks=[Interrupt(after=1)])
    changed = tdsl.dump(attrs.evolve(spec, optimizer=attrs.evolve(spec.optimizer, lr=0.5)))
    (tmp_path / "cut" / "spec.yaml").write_text(changed)
    with pytest.raises(RunError, match=r"(?s)spec changed.*-  lr: 0\.02.*\+  lr: 0\.5"):
        resume(tmp_path / "cut")


def test_a_run_directory_is_not_overwritten(tmp_path):
    run(small_spec(epochs=1), tmp_path / "run")
    with pytest.raises(RunError, match="already holds a run"):
        run(small_spec(epochs=1), tmp_path / "run")


def test_cli_run_eval_predict(tmp_path, capsys, root):
    spec_file = root / "specs" / "ring_dnn.yaml"
    out = tmp_path / "cli-run"
    code = main(
        [
            "run",
            str(spec_file),
            "--out",
            str(out),
            "--set",
            "train.epochs=2",
            "--set",
            "data.n_positive=200",
            "--set",
            "data.n_negative=200",
        ]
    )
    assert code == 0
    printed = capsys.readouterr()
    assert f"run directory: {out}" in printed.out
    assert "epoch 2/2" in printed.err and "\r" not in printed.err  # no bar spam off a terminal
    assert tdsl.load(out / "spec.yaml").train.epochs == 2

    assert main(["eval", str(out)]) == 0
    assert capsys.readouterr().out.startswith("val: loss=")

    rows = np.random.default_rng(0).normal(size=(7, 2)).astype("float32")
    np.save(tmp_path / "rows.npy", rows)
    code = main(
        [
            "predict",
            str(out),
            "--input",
            str(tmp_path / "rows.npy"),
            "--output",
            str(tmp_path / "pred.npy"),
        ]
    )
    assert code == 0
    assert np.load(tmp_path / "pred.npy").shape == (7, 1)

    np.save(tmp_path / "wrong.npy", rows[:, :1])
    assert (
        main(
            [
                "predict",
                str(out),
                "--input",
                str(tmp_path / "wrong.npy"),
                "--output",
                str(tmp_path / "p.npy"),
            ]
        )
        == 1
    )
    assert "expects rows of shape [2]" in capsys.readouterr().err


def test_cli_run_refuses_an_invalid_spec_and_writes_nothing(tmp_path, capsys, root):
    out = tmp_path / "never"
    code = main(
        [
            "run",
            str(root / "specs" / "ring_dnn.yaml"),
            "--out",
            str(out),
            "--set",
            "model.layers[0].out_features=-4",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "model.layers[0].out_features: must be a positive integer (got -4)" in err
    assert "not started" in err and not out.exists()


def test_tensor_data_batches_cover_every_row_once():
    data = TensorData((torch.arange(10).reshape(10, 1).float(),), torch.arange(10).float())
    seen = torch.cat([b.target for b in data.batches(4, order_seed=5)])
    assert sorted(seen.tolist()) == list(range(10))
    assert [b.size for b in data.batches(4)] == [4, 4, 2]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_shows_steps_rate_eta_and_loss():
    spec = small_spec(epochs=2)
    program = compile(spec)
    screen = FakeTerminal()
    printer = ProgressPrinter(screen, refresh_seconds=0.0)
    fit(program, program.init(), load_data(spec), callbacks=[printer])
    text = screen.getvalue()
    assert "\repoch 1/2 [" in text and "7/7" in text and "it/s eta" in text and "loss " in text
    assert "\r\x1b[2Kepoch 2/2 loss=" in text


def test_cli_interrupt_says_how_to_resume(tmp_path, capsys, monkeypatch, root):
    import tdsl.runs.directories

    def interrupted(spec, directory, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tdsl.runs.directories, "run", interrupted)
    out = tmp_path / "cut"
    assert main(["run", str(root / "specs" / "ring_dnn.yaml"), "--out", str(out)]) == 130
    assert f"tdsl resume {out}" in capsys.readouterr().err


def test_early_stopping_waits_exactly_patience_epochs():
    class Scripted:
        """Feeds early stopping a fixed val_loss sequence."""

        def __init__(self, values):
            self.values = iter(values)

        def on_epoch_end(self, run, state, logs):
            logs["val_loss"] = next(self.values)

    spec = small_spec(epochs=30)
    program = compile(spec)
    stopper = EarlyStopping(monitor="val_loss", mode="min", patience=3)
    losses = [5.0, 4.0, 4.5, 4.2, 4.1, 3.0, 9.0]
    result = fit(program, program.init(), load_data(spec), callbacks=[Scripted(losses), stopper])
    assert len(result.history) == 5  # best at epoch 2, then 3 epochs without improvement
    assert "has not improved for 3 epochs (best 4)" in result.stop_reason


def test_a_run_directory_written_before_the_layout_move_still_loads(tmp_path):
    """tests/fixtures/run_before_layout was written by tdsl before its modules moved into
    stage packages (issue 14): its checkpoints, spec and history must still load."""
    import shutil
    from pathlib import Path

    from tdsl.runs.directories import evaluate_run

    fixture = Path(__file__).parent / "fixtures" / "run_before_layout"
    directory = shutil.copytree(fixture, tmp_path / "old")
    final = json.loads((directory / "final.json").read_text())
    for which in ("best", "last"):
        scores = evaluate_run(directory, which)
        assert scores["val"]["accuracy"] == pytest.approx(final[which]["val_accuracy"])
        assert scores["val"]["loss"] == pytest.approx(final[which]["val_loss"], rel=1e-5)
    result = resume(directory, stream=io.StringIO())  # finished: resumes to its end
    assert [row["epoch"] for row in result.history] == [1, 2]
