"""`tdsl plot RUN_DIR`: the run's curves drawn from history.jsonl, and clear errors for a
missing run, an unknown metric, a bad output name and a missing matplotlib."""

import json
from pathlib import Path

import attrs
import pytest

import tdsl
from tdsl.runs import plot
from tdsl.runs.cli import main
from tdsl.runs.directories import run

needs_matplotlib = pytest.mark.skipif(
    not plot.matplotlib_available(), reason="plotting needs tdsl[plot]"
)
PNG = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    """A real three-epoch run of the ring spec."""
    spec = tdsl.load(ROOT / "specs" / "ring_dnn.yaml")
    spec = attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=3))
    directory, result = run(spec, tmp_path_factory.mktemp("plot") / "ring")
    return directory, result.history


@needs_matplotlib
def test_default_curves_are_the_loss_and_the_spec_metrics(ring_run):
    directory, history = ring_run
    assert plot.default_metrics(directory, history) == ["loss", "accuracy"]
    written = plot.plot_run(directory)
    assert written == directory / "curves.png"
    assert written.read_bytes().startswith(PNG)


@needs_matplotlib
def test_each_panel_draws_the_train_and_val_values_per_epoch(ring_run):
    _, history = ring_run
    figure = plot._draw(history, ["loss", "lr"], "ring")
    loss, lr = figure.axes
    train, val = loss.lines
    assert list(train.get_xdata()) == [1.0, 2.0, 3.0]
    assert list(train.get_ydata()) == [row["loss"] for row in history]
    assert list(val.get_ydata()) == [row["val_loss"] for row in history]
    assert [line.get_label() for line in loss.lines] == ["train_loss", "val_loss"]
    assert loss.get_title() == "Training and validation loss" and loss.get_xlabel() == "Epochs"
    (only,) = lr.lines  # the learning rate has no validation curve
    assert only.get_label() == "lr" and list(only.get_ydata()) == [0.01] * 3


@needs_matplotlib
def test_cli_draws_the_chosen_metrics(ring_run, tmp_path, capsys):
    directory, _ = ring_run
    out = tmp_path / "mine.svg"
    args = ["plot", str(directory), "--metric", "val_accuracy", "lr", "--metric", "loss"]
    assert main([*args, "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert out.read_text().lstrip().startswith("<?xml")


@needs_matplotlib
def test_an_unknown_metric_gets_a_did_you_mean(ring_run, capsys):
    directory, _ = ring_run
    assert main(["plot", str(directory), "--metric", "acuracy"]) == 1
    assert capsys.readouterr().err == (
        "error: the run has no metric 'acuracy' (did you mean 'accuracy'?); "
        "it has loss, accuracy, lr\n"
    )


@needs_matplotlib
def test_missing_runs_histories_and_bad_names_are_reported(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err == f"error: no run directory {tmp_path / 'nowhere'}\n"
    with pytest.raises(plot.PlotError, match="has no history.jsonl"):
        plot.plot_run(tmp_path)
    (tmp_path / "history.jsonl").write_text("[1, 2]\n")
    with pytest.raises(plot.PlotError, match="line 1 is not an object"):
        plot.plot_run(tmp_path)
    with pytest.raises(plot.PlotError, match=r"must end in \.png, \.svg, \.pdf"):
        plot.plot_run(tmp_path, out=tmp_path / "curves.jpg")


@needs_matplotlib
def test_a_history_without_a_spec_plots_every_curve_but_the_lr(tmp_path):
    rows = [
        {"epoch": e, "loss": 1.0 / e, "mae": 2.0 / e, "val_loss": 1.5 / e, "lr": 0.1}
        for e in (1, 2)
    ]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plot.default_metrics(tmp_path, rows) == ["loss", "mae"]
    assert plot.plot_run(tmp_path, out=tmp_path / "c.png").read_bytes().startswith(PNG)


def test_without_matplotlib_the_error_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plot, "matplotlib_available", lambda: False)
    assert main(["plot", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "error: plotting needs matplotlib, which is not installed (pip install matplotlib "
        "(or pip install -e '.[plot]' in a tdsl checkout))\n"
    )


@needs_matplotlib
def test_the_best_epoch_is_marked_and_log_scales_the_values(ring_run):
    directory, history = ring_run
    accuracy = [row["val_accuracy"] for row in history]
    assert plot.best_epoch(directory, history) == accuracy.index(max(accuracy)) + 1
    figure = plot._draw(history, ["loss"], "ring", best=2, log=True)
    (axes,) = figure.axes
    marker = axes.lines[-1]
    assert marker.get_label() == "best epoch 2" and list(marker.get_xdata()) == [2, 2]
    assert axes.get_yscale() == "log"
    assert plot._draw(history, ["loss"], "ring").axes[0].get_yscale() == "linear"


@needs_matplotlib
def test_compare_overlays_the_curves_of_several_runs(ring_run, tmp_path):
    from tdsl.runs.compare import plot_runs, read_run

    directory, _ = ring_run
    rows = [read_run("a", directory), read_run("b", directory)]
    written = plot_runs(rows, tmp_path / "both.png")
    assert written.read_bytes().startswith(PNG)
