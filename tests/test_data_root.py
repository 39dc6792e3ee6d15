"""--data-root / data_root=: a spec may only read data under that folder (symlinks followed),
refused located at the spec path before anything outside is opened."""

import argparse
from pathlib import Path

import pytest

import tdsl
from tdsl.data import DataError, load_data
from tdsl.runs.cli import main
from tdsl.runs.cli_runs import _allowed
from tdsl.runs.directories import evaluate_run, run

SPEC = """name: c
data: {kind: csv, file: FILE, target: y, target_kind: binary, columns: all}
model: {inputs: [{name: x, shape: [2]}], layers: [{op: linear, out_features: 1}]}
loss: bce_with_logits
optimizer: adam
train: {epochs: 1, batch_size: 2}
"""


@pytest.fixture
def layout(tmp_path) -> Path:
    """root/ (the data root) with its own CSV and a symlink out; secret/ beside it, whose
    header holds a marker that must never be echoed under --data-root."""
    (tmp_path / "root").mkdir()
    (tmp_path / "secret").mkdir()
    rows = "1,2,0\n3,4,1\n5,6,0\n7,8,1\n"
    (tmp_path / "secret" / "s.csv").write_text("SECRET_MARKER,b,y\n" + rows)
    (tmp_path / "root" / "ok.csv").write_text("a,b,y\n" + rows)
    (tmp_path / "root" / "link.csv").symlink_to(tmp_path / "secret" / "s.csv")
    for name, file in (("out", "../secret/s.csv"), ("link", "link.csv"), ("ok", "ok.csv")):
        (tmp_path / "root" / f"{name}.yaml").write_text(SPEC.replace("FILE", file))
    (tmp_path / "root" / "abs.yaml").write_text(
        SPEC.replace("FILE", str(tmp_path / "secret" / "s.csv"))
    )
    return tmp_path


@pytest.mark.parametrize("name", ["out", "link", "abs"])
def test_validate_refuses_paths_outside_the_root_located(layout, name, capsys):
    spec = layout / "root" / f"{name}.yaml"
    assert main(["validate", str(spec), "--data-root", str(layout / "root")]) == 1
    out = capsys.readouterr().out
    assert f"{spec}:2:" in out and "error: data.file:" in out
    assert f"resolves to {layout / 'secret' / 's.csv'}, outside the data root" in out
    assert "SECRET_MARKER" not in out


def test_without_a_root_a_spec_echoes_a_file_outside(layout, capsys):
    """What --data-root prevents: a did-you-mean hint shows a header from outside."""
    spec = layout / "root" / "probe.yaml"
    spec.write_text(SPEC.replace("FILE", "../secret/s.csv").replace("target: y", "target: SECRET"))
    assert main(["validate", str(spec)]) == 1
    assert "SECRET_MARKER" in capsys.readouterr().out
    assert main(["validate", str(spec), "--data-root", str(spec.parent)]) == 1
    out = capsys.readouterr().out
    assert "SECRET_MARKER" not in out and "outside the data root" in out


def test_data_inside_the_root_is_read(layout, capsys):
    assert main(["validate", str(layout / "root" / "ok.yaml"), "--data-root", "."]) == 1
    capsys.readouterr()
    spec = str(layout / "root" / "ok.yaml")
    assert main(["validate", spec, "--data-root", str(layout / "root")]) == 0
    assert "valid" in capsys.readouterr().out


def test_the_python_api_takes_data_root(layout, tmp_path):
    spec = tdsl.load(layout / "root" / "link.yaml")
    root = layout / "root"
    report = tdsl.validate(spec, data_root=root)
    assert not report.ok and "outside the data root" in report.format()
    assert "SECRET_MARKER" not in report.format()
    with pytest.raises(DataError, match="outside the data root"):
        load_data(spec, data_root=root)
    with pytest.raises(tdsl.SpecError, match="outside the data root"):
        run(spec, tmp_path / "run", data_root=root, progress=False)
    assert not (tmp_path / "run").exists()
    assert tdsl.validate(spec).ok  # without it, as before


def test_eval_of_a_run_whose_data_lies_outside_is_refused(layout, tmp_path):
    spec = tdsl.load(layout / "root" / "ok.yaml")
    directory, _ = run(spec, tmp_path / "run", progress=False)
    assert "val" in evaluate_run(directory, data_root=layout / "root")
    with pytest.raises(tdsl.TdslError, match="outside the data root"):
        evaluate_run(directory, data_root=layout / "secret")


def test_launched_processes_get_the_root_again():
    args = argparse.Namespace(allow_imports=["mylab"], data_root="/data")
    assert _allowed(args) == ["--allow-import", "mylab", "--data-root", "/data"]


def test_a_root_that_is_not_a_folder_is_an_error(layout, capsys):
    spec = str(layout / "root" / "ok.yaml")
    assert main(["validate", spec, "--data-root", str(layout / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert f"--data-root {layout / 'nowhere'}: not a folder" in err
