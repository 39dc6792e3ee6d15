"""Inference from a run directory whose training data is gone: `predict`, `export`,
`load_model`, `eval --data` and `--generate` use what the run recorded (its spec, the data's
signature, the fitted transforms); `resume` and plain `eval` say they need the data."""

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import Interrupt

import tdsl
import tdsl.data
import tdsl.runs.eval_data
import tdsl.runs.launcher
from tdsl.data import data_signature
from tdsl.data.recorded import signature_from_json, signature_to_json
from tdsl.runs.cli import main
from tdsl.runs.export import export_run
from tdsl.runs.recorded_data import SIGNATURE_FILE

SPEC = """
name: offline
seed: 0
data:
  kind: csv
  file: {file}
  target: y
  target_kind: binary
  columns: [a, b, {{name: c, transform: onehot}}]
  split: {{train: 0.75, val: 0.25}}
model:
  inputs: [{{shape: [5]}}]
  layers: [{{op: linear, out_features: 1}}, sigmoid]
loss: {{kind: bce}}
optimizer: {{kind: adam, lr: 0.01}}
metrics: [accuracy]
train: {{epochs: 1, batch_size: 8}}
"""


def _table(path: Path, rows: int, seed: int, target: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["a,b,c" + (",y" if target else "")]
    for i in range(rows):
        a, b = rng.normal(size=2)
        cells = [f"{a:.4f}", f"{b:.4f}", "xyz"[i % 3]] + ([str(int(a > b))] if target else [])
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def csv_run(tmp_path):
    data = _table(tmp_path / "train.csv", 40, 0)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC.format(file=data.name))
    directory, _ = tdsl.run(tdsl.load(spec_file), tmp_path / "run", progress=False)
    return directory, data


def _onnx_outputs(path: Path) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = np.random.default_rng(3).normal(size=(6, 5)).astype(np.float32)
    return session.run(None, {session.get_inputs()[0].name: rows})[0]


def _predictions(directory: Path, rows: Path, out: Path) -> str:
    assert main(["predict", str(directory), "--input", str(rows), "--output", str(out)]) == 0
    return out.read_text()


def test_the_recorded_signature_is_the_data_s(csv_run):
    directory, _ = csv_run
    spec = tdsl.load(directory / "spec.yaml")
    recorded = json.loads((directory / SIGNATURE_FILE).read_text())
    assert signature_from_json(recorded) == data_signature(spec)
    assert signature_to_json(signature_from_json(recorded)) == recorded


def test_inference_needs_no_training_data(csv_run, tmp_path):
    directory, data = csv_run
    rows = _table(tmp_path / "new.csv", 7, 1, target=False)
    labelled = _table(tmp_path / "labelled.csv", 9, 2)
    before = _predictions(directory, rows, tmp_path / "p0.csv")
    outputs = tdsl.load_model(directory).predict(rows).outputs
    export = ["export", str(directory), "--format", "onnx", "--out"]
    assert main([*export, str(tmp_path / "a.onnx")]) == 0
    scored = tdsl.runs.eval_data.evaluate_file(directory, labelled).metrics

    data.rename(tmp_path / "moved.csv")  # the training data is gone
    assert _predictions(directory, rows, tmp_path / "p1.csv") == before
    assert tdsl.load_model(directory).predict(rows).outputs.equal(outputs)
    assert main([*export, str(tmp_path / "b.onnx")]) == 0
    # Traced on seeded rows either way: the very same file.
    assert (tmp_path / "b.onnx").read_bytes() == (tmp_path / "a.onnx").read_bytes()
    assert tdsl.runs.eval_data.evaluate_file(directory, labelled).metrics == scored


def test_an_export_is_the_same_file_with_or_without_the_training_data(csv_run, tmp_path):
    directory, data = csv_run
    first = {
        f: export_run(directory, f, out=tmp_path / f"a.{f}") for f in ("exported", "torchscript")
    }
    assert first["exported"].source == "seeded rows and val rows" and first["exported"].rows == 10
    data.unlink()
    tdsl.data.clear_cache()
    for fmt, done in first.items():
        again = export_run(directory, fmt, out=tmp_path / f"b.{fmt}")
        assert again.source == "seeded rows (the run's data is unreadable)" and again.rows == 5
        assert again.max_abs_diff <= again.tolerance
        if fmt == "exported":
            assert again.path.read_bytes() == done.path.read_bytes()
            continue
        # TorchScript writes a random serialization id into every file: the traced example
        # it keeps (seeded rows, no training data) is what must not change.
        kept = [zipfile.ZipFile(p) for p in (done.path, again.path)]
        names = [n for n in kept[0].namelist() if "/traced_inputs" in n]
        assert names and all(kept[0].read(n) == kept[1].read(n) for n in names)


@pytest.fixture
def cut_run(tmp_path):
    """A run interrupted after epoch 1 of 2: resuming it trains, so it reads the data."""
    data = _table(tmp_path / "train.csv", 40, 0)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC.format(file=data.name).replace("epochs: 1", "epochs: 2"))
    with pytest.raises(KeyboardInterrupt):
        tdsl.run(tdsl.load(spec_file), tmp_path / "run", progress=False, callbacks=[Interrupt()])
    return tmp_path / "run", data


@pytest.mark.parametrize("command", ["resume", "eval"])
def test_commands_reading_the_run_s_rows_say_they_need_them(cut_run, capsys, command):
    directory, data = cut_run
    data.unlink()
    assert main([command, str(directory)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"{directory}/spec.yaml:4:3: error: data.file: no such file: {data}; `tdsl "
        f"{command}` needs the run's training data (`tdsl predict`, `tdsl export` and "
        "`tdsl eval --data FILE` do not)"
    ]


def test_resuming_a_finished_run_needs_no_data(csv_run, capsys):
    directory, data = csv_run
    before = json.loads((directory / "final.json").read_text())
    data.unlink()
    tdsl.data.clear_cache()  # as a new process: nothing read in memory
    capsys.readouterr()
    assert main(["resume", str(directory)]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == ["the run already finished its 1 epochs; nothing to resume"]
    assert out.startswith("final: ")
    result = tdsl.resume(directory, progress=False)  # the Python API: the run as it ended
    assert result.history == before["epochs"] * [before["last"]] and result.stop_reason is None
    assert result.best_state is not None
    assert json.loads((directory / "final.json").read_text()) == before  # nothing rewritten


def test_resuming_a_finished_run_starts_no_processes(csv_run, capsys, monkeypatch):
    directory, data = csv_run
    data.unlink()
    monkeypatch.setattr(tdsl.runs.launcher, "launch", lambda *a: pytest.fail("launched"))
    assert main(["resume", str(directory), "--nproc", "2"]) == 0
    assert "nothing to resume" in capsys.readouterr().err


def test_resuming_an_early_stopped_run_needs_no_data(tmp_path, capsys):
    data = _table(tmp_path / "train.csv", 40, 0)
    stopping = "early_stopping: {monitor: val_loss, patience: 1, min_delta: 10}"
    spec = SPEC.format(file=data).replace("epochs: 1", f"epochs: 5, {stopping}")
    directory, ran = tdsl.run(tdsl.load(spec), tmp_path / "run", progress=False)
    assert ran.stop_reason and len(ran.history) < 5
    data.unlink()
    tdsl.data.clear_cache()
    capsys.readouterr()
    assert tdsl.resume(directory, progress=False).history == ran.history
    assert "nothing to resume" in capsys.readouterr().err


def test_a_run_without_a_recorded_signature_reads_its_data(csv_run, tmp_path):
    directory, data = csv_run
    rows = _table(tmp_path / "new.csv", 3, 1, target=False)
    (directory / SIGNATURE_FILE).unlink()  # as runs made before it was recorded
    before = _predictions(directory, rows, tmp_path / "p0.csv")
    shutil.move(data, tmp_path / "moved.csv")
    with pytest.raises(tdsl.SpecError, match="no such file"):
        tdsl.load_model(directory)
    assert before


TEXT = """
name: offline_text
seed: 0
data: {{kind: text, file: {file}, length: 5, vocab_size: 64}}
model:
  inputs: [{{shape: [5], dtype: int64}}]
  layers:
    - {{op: embedding, num_embeddings: 64, embedding_dim: 2}}
    - {{op: flatten}}
    - {{op: linear, out_features: 1}}
loss: bce_with_logits
optimizer: {{kind: sgd, lr: 0.1}}
train: {{epochs: 1, batch_size: 8}}
"""

LM = """
name: offline_lm
seed: 0
data: {{kind: text_lm, file: {file}, tokenizer: char, block_size: 4, vocab_size: 40}}
model:
  inputs: [{{shape: [4], dtype: int64}}]
  layers:
    - {{op: embedding, num_embeddings: 40, embedding_dim: 4}}
    - {{op: linear, out_features: 40}}
loss: {{kind: cross_entropy, class_dim: -1}}
optimizer: {{kind: sgd, lr: 0.1}}
train: {{epochs: 1, batch_size: 16}}
"""


def test_a_text_run_predicts_from_its_kept_vocabulary(tmp_path):
    lines = [f"{i % 2}\tthe cat number {i} sat {'on the mat ' * (i % 3)}" for i in range(40)]
    data = tmp_path / "t.txt"
    data.write_text("\n".join(lines))
    directory, _ = tdsl.run(tdsl.load(TEXT.format(file=data)), tmp_path / "run", progress=False)
    texts = tmp_path / "new.txt"
    texts.write_text("the cat sat\na dog on the mat\n")
    before = _predictions(directory, texts, tmp_path / "p0.csv")
    data.unlink()
    tdsl.data.clear_cache()  # as a new process: nothing prepared in memory
    assert _predictions(directory, texts, tmp_path / "p1.csv") == before


def test_a_language_model_generates_without_its_text(tmp_path, capsys):
    data = tmp_path / "tale.txt"
    data.write_text("The cat sat on the mat; a dog ran.\n" * 20)
    directory, _ = tdsl.run(tdsl.load(LM.format(file=data)), tmp_path / "run", progress=False)
    argv = ["predict", str(directory), "--generate", "12", "--prompt", "The "]
    assert main(argv) == 0
    before = capsys.readouterr().out
    data.unlink()
    tdsl.data.clear_cache()
    assert main(argv) == 0
    assert capsys.readouterr().out == before


def test_an_image_run_predicts_without_its_folder(tmp_path):
    pytest.importorskip("PIL")
    images = Path(__file__).resolve().parent.parent / "specs" / "data" / "images"
    folder = tmp_path / "images"
    for name in ("0_airplane", "1_automobile"):
        (folder / name).mkdir(parents=True)
        for path in sorted((images / name).glob("*.png"))[:6]:
            shutil.copy(path, folder / name / path.name)
    spec = f"""
name: offline_images
seed: 0
data: {{kind: images, folder: {folder}, size: [8, 8], target_kind: binary, workers: 0}}
model:
  inputs: [{{shape: [3, 8, 8]}}]
  layers: [{{op: flatten}}, {{op: linear, out_features: 1}}, sigmoid]
loss: {{kind: bce}}
optimizer: {{kind: sgd, lr: 0.01}}
train: {{epochs: 1, batch_size: 4}}
"""
    directory, _ = tdsl.run(tdsl.load(spec), tmp_path / "run", progress=False)
    new = tmp_path / "new"
    shutil.copytree(folder / "1_automobile", new)
    before = _predictions(directory, new, tmp_path / "p0.csv")
    shutil.rmtree(folder)
    assert _predictions(directory, new, tmp_path / "p1.csv") == before


def test_a_memory_limit_too_small_for_the_training_file_still_predicts(tmp_path, monkeypatch):
    data = _table(tmp_path / "train.csv", 2000, 0)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC.format(file=data.name))
    directory, _ = tdsl.run(tdsl.load(spec_file), tmp_path / "run", progress=False)
    rows = _table(tmp_path / "new.csv", 3, 1, target=False)
    before = _predictions(directory, rows, tmp_path / "p0.csv")
    tdsl.data.clear_cache()
    monkeypatch.setenv("TDSL_MEMORY_LIMIT", "50000")  # the training file needs more
    with pytest.raises(tdsl.SpecError, match="needs about"):
        tdsl.compile(tdsl.load(spec_file))
    assert _predictions(directory, rows, tmp_path / "p1.csv") == before
