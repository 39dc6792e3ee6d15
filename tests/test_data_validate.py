"""`tdsl validate` covers the data: missing files, columns, cells, images, target kinds and
feature shapes, as located diagnostics; loading reports a bad file in one line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import tdsl
from tdsl.data import DataError, load_data
from tdsl.runs.cli import main

TABLE = """\
name: t
data:
  kind: csv
  file: {file}
  target: y
  target_kind: {kind}
  columns:
    - a
    - {{name: {column}, transform: standardize}}
model:
  inputs:
    - {{shape: [{width}]}}
  layers:
    - {{op: linear, out_features: 1}}
loss:
  kind: bce_with_logits
"""


def write_spec(folder: Path, file="t.csv", kind="binary", column="b", width=2) -> Path:
    path = folder / "spec.yaml"
    path.write_text(TABLE.format(file=file, kind=kind, column=column, width=width))
    return path


def messages(report) -> list[str]:
    return [
        f"{d.location.line}:{d.location.column} {tdsl.errors.format_path(d.path)}: {d.message}"
        + (f" [{d.hint}]" if d.hint else "")
        for d in report.diagnostics
    ]


def test_paths_resolve_next_to_the_spec_file(tmp_path, monkeypatch):
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,10,1\n")
    spec_file = write_spec(tmp_path)
    monkeypatch.chdir(Path(__file__).parent)  # anywhere but the spec's folder
    report = tdsl.validate(spec_file)
    assert report.ok, report.format()
    assert len(load_data(tdsl.load(spec_file)).train) == 4


def test_a_missing_file_is_located_with_a_near_name(tmp_path):
    (tmp_path / "train.csv").write_text("a,b,y\n1,2,0\n")
    report = tdsl.validate(write_spec(tmp_path, file="trian.csv"))
    assert messages(report) == [
        f"4:3 data.file: no such file: {tmp_path / 'trian.csv'} [did you mean 'train.csv'?]"
    ]


def test_misspelled_columns_get_did_you_mean(tmp_path):
    (tmp_path / "t.csv").write_text("a,bmi,y\n1,2,0\n3,4,1\n")
    report = tdsl.validate(write_spec(tmp_path, column="bim"))
    assert messages(report) == [
        f"9:7 data.columns[1]: no column 'bim' in {tmp_path / 't.csv'} [did you mean 'bmi'?]"
    ]


def test_ragged_rows_and_non_numeric_cells_name_their_lines(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,0\n3,4\n")
    (report,) = [tdsl.validate(write_spec(tmp_path))]
    assert messages(report) == [
        f"4:3 data.file: line 3 of {tmp_path / 't.csv'} has 2 cells, the header has 3 "
        "[check the delimiter (',') and quoting]"
    ]
    (tmp_path / "t.csv").write_text('a,b,y\n1,2,0\n3,"4,5",1\nx,6,0\n')
    found = messages(tdsl.validate(write_spec(tmp_path)))
    assert [m.split(" [")[0] for m in found] == [
        f"8:7 data.columns[0]: column 'a': line 4 of {tmp_path / 't.csv'} has 'x', not a number",
        f"9:7 data.columns[1]: column 'b': line 3 of {tmp_path / 't.csv'} has '4,5', not a number",
    ]


def test_target_kind_must_fit_the_loss_and_the_features_the_input(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,0\n3,4,2\n5,6,1\n")
    found = messages(tdsl.validate(write_spec(tmp_path, kind="class", width=3)))
    assert found[0].startswith(
        "12:8 model.inputs[0].shape: data 'csv' yields features of shape [2], the model input"
    )
    assert found[1].startswith(
        "16:3 loss.kind: loss 'bce_with_logits' needs binary targets, but the data yields class"
    )


def test_an_image_that_is_not_an_image(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "pics" / name).mkdir(parents=True)
    (tmp_path / "pics" / "a" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (tmp_path / "pics" / "b" / "1.jpg").write_text("not a picture")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        textwrap.dedent(
            """\
            name: pics
            data:
              {kind: images, folder: pics, size: [8, 8], target_kind: binary, workers: 0,
               split: {train: 1, val: 0}}
            model:
              inputs: [{shape: [3, 8, 8]}]
              layers: [flatten, {op: linear, out_features: 1}]
            loss: bce_with_logits
            """
        )
    )
    pil = pytest.importorskip("PIL")
    assert pil
    assert messages(tdsl.validate(spec_file)) == [
        f"3:18 data.folder: {tmp_path / 'pics' / 'b' / '1.jpg'} is not a JPG image"
    ]
    # A file whose first bytes look right but which does not decode fails when its batch is
    # read — in a worker or not — as a one-line DataError.
    (tmp_path / "pics" / "b" / "1.jpg").unlink()
    (tmp_path / "pics" / "b" / "2.png").write_bytes(
        (tmp_path / "pics" / "a" / "1.png").read_bytes()
    )
    assert tdsl.validate(spec_file).ok
    splits = load_data(tdsl.load(spec_file))
    for workers in (0, 1):
        rows = splits.train if workers == 0 else splits.train.__class__(
            splits.train.reader, splits.train.index, workers=1
        )  # fmt: skip
        with pytest.raises(DataError) as caught:
            list(rows.batches(4))
        text = str(caught.value)
        assert text.startswith("data.folder: cannot read image ") and "\n" not in text


def test_a_data_file_broken_after_the_run_is_reported_not_raised(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,10,1\n")
    spec_file = write_spec(tmp_path)
    out = tmp_path / "run"
    assert main(["run", str(spec_file), "--out", str(out), "--set", "train.epochs=1"]) == 0
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,0\n3\n")
    capsys.readouterr()
    assert main(["eval", str(out)]) == 1
    err = capsys.readouterr().err
    assert "error: data.file: line 3 of " in err and "has 1 cells, the header has 3" in err
    assert "Traceback" not in err
