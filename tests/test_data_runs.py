"""Run directories keep the fitted transforms; resume, eval and predict re-apply them."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from helpers import Interrupt

import tdsl
from tdsl.data import FITTED_FILE, Fitted, load_data
from tdsl.data.base import Problems
from tdsl.data.csvfile import read_csv
from tdsl.data.table import transform
from tdsl.runs.cli import main
from tdsl.runs.directories import _program_and_state, evaluate_run, predict_run, run
from tdsl.runs.resuming import resume
from tdsl.train.loops import predict

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def short(path: Path, epochs: int = 2) -> tdsl.Spec:
    spec = tdsl.load(path)
    return attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=epochs))


def test_csv_run_keeps_transforms_and_predicts_a_new_csv(tmp_path, monkeypatch):
    spec = short(SPECS / "tabular.yaml")
    monkeypatch.chdir(tmp_path)  # the run directory's spec must not depend on the folder
    directory, _ = run(spec, tmp_path / "run")
    saved = json.loads((directory / "transforms.json").read_text())
    assert saved["kind"] == "csv" and len(saved["features"]) == 15
    kept = tdsl.load(directory / "spec.yaml")
    assert Path(kept.data.file).is_absolute() and Path(kept.data.file).exists()

    new = SPECS / "data" / "titanic_new.csv"  # passengers without the Survived column
    assert "Survived" not in new.read_text().splitlines()[0]
    count = predict_run(directory, new, tmp_path / "p.npy")
    program, state = _program_and_state(directory, "best")
    fitted = Fitted.load(directory)
    rows = transform(spec.data, fitted.state["columns"], read_csv(new, ",", ()), Problems())
    expected = predict(program, state, (torch.from_numpy(rows).float(),))
    assert count == 12
    assert np.array_equal(np.load(tmp_path / "p.npy"), expected.numpy())

    # The CLI takes the CSV too; a CSV lacking a feature column is refused in one line.
    assert main(["predict", str(directory), "--input", str(new), "--output", "p.csv"]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "probability,label" and len(lines) == 13
    (tmp_path / "bad.csv").write_text("Pclass,Sex\n1,male\n")
    assert main(["predict", str(directory), "--input", "bad.csv", "--output", "q.npy"]) == 1


def test_eval_and_resume_reapply_the_saved_transforms(tmp_path):
    spec = short(SPECS / "tabular.yaml", epochs=3)
    directory, straight = run(spec, tmp_path / "run")
    fitted = Fitted.load(directory)
    first = evaluate_run(directory)
    # Doctor the kept transforms: eval must use them, not fit again.
    doctored = json.loads((directory / "transforms.json").read_text())
    age = next(c for c in doctored["columns"] if c["name"] == "Age")
    age["fill"] = 99.0
    (directory / "transforms.json").write_text(json.dumps(doctored))
    assert evaluate_run(directory) != first
    (directory / FITTED_FILE).write_text(fitted.to_json())
    assert evaluate_run(directory) == first

    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "cut", callbacks=[Interrupt()])
    resumed = resume(tmp_path / "cut")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(resumed.history) == drop(straight.history)


def test_text_run_predicts_raw_texts(tmp_path):
    directory, _ = run(short(SPECS / "text_cnn.yaml", epochs=1), tmp_path / "run")
    vocab = Fitted.load(directory).state["vocab"]
    assert len(vocab) < 10_000 and vocab["the"] >= 2
    texts = tmp_path / "new.txt"
    texts.write_text("Loved it, a wonderful film!\nBoring and awful.\n")
    assert predict_run(directory, texts, tmp_path / "p.npy") == 2
    assert np.load(tmp_path / "p.npy").shape == (2, 1)
    # load_model takes the texts themselves, and gives the same outputs.
    found = tdsl.load_model(directory).predict(texts.read_text().splitlines())
    assert np.array_equal(found.outputs.numpy(), np.load(tmp_path / "p.npy"))
    assert list(found.columns) == ["probability", "label"]


def test_timeseries_run_predicts_windows_of_a_series(tmp_path):
    directory, _ = run(short(SPECS / "timeseries_lstm.yaml", epochs=1), tmp_path / "run")
    assert not (directory / "transforms.json").exists()  # nothing is fitted
    count = predict_run(directory, SPECS / "data" / "covid.csv", tmp_path / "p.npy")
    assert count == 60 - 1 - 8 + 1  # windows over the 59 daily increments
    assert np.load(tmp_path / "p.npy").shape == (count, 3)


def test_image_run_predicts_a_folder(tmp_path):
    pytest.importorskip("PIL")
    directory, _ = run(short(SPECS / "image_cnn.yaml", epochs=1), tmp_path / "run")
    assert Fitted.load(directory).state["classes"] == ["0_airplane", "1_automobile"]
    folder = SPECS / "data" / "images" / "1_automobile"
    count = predict_run(directory, folder, tmp_path / "p.npy")
    assert count == 30
    # load_model takes image paths; binary labels are the class folders' names.
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg"))[:3]
    found = tdsl.load_model(directory).predict(paths)
    assert np.array_equal(found.outputs.numpy(), np.load(tmp_path / "p.npy")[:3])
    assert set(found["label"]) <= {"0_airplane", "1_automobile"}


def test_reapplied_transforms_give_the_same_rows(tmp_path):
    spec = tdsl.load(SPECS / "tabular.yaml")
    first = load_data(spec)
    again = load_data(spec, Fitted.from_json(first.fitted.to_json()))
    for a, b in ((first.train, again.train), (first.val, again.val)):
        assert torch.equal(a.features[0], b.features[0]) and torch.equal(a.target, b.target)


def test_a_spec_in_another_folder_runs_with_class_metrics(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    rows = "".join(f"{i},{i % 3}\n" for i in range(30))
    (folder / "t.csv").write_text("x,label\n" + rows)
    (folder / "spec.yaml").write_text(
        "name: classes\n"
        "data: {kind: csv, file: t.csv, columns: [x], target: label, target_kind: class}\n"
        "model:\n"
        "  inputs: [{shape: [1]}]\n"
        "  layers: [{op: linear, out_features: 3}]\n"
        "loss: cross_entropy\n"
        "metrics: [accuracy, f1]\n"
        "train: {epochs: 1}\n"
    )
    monkeypatch.chdir(tmp_path)  # the spec's paths are relative to its own folder
    assert main(["run", "project/spec.yaml", "--out", "out"]) == 0
    assert main(["eval", "out"]) == 0
