"""Values a message echoes (keys, data paths, a CSV header, a run directory's name) reach
the terminal with their control characters escaped: a spec cannot clear the screen or
write a fake line into tdsl's output."""

import pytest

from tdsl.runs.cli import main
from tdsl.wording import printable

CLEAR = "\x1b[2J"
MODEL = """model: {inputs: [{shape: [1]}], layers: [{op: linear, out_features: 1}]}
loss: bce_with_logits
optimizer: {kind: sgd, lr: 0.1}
"""


def _validate(tmp_path, data: str, capsys) -> str:
    (tmp_path / "spec.yaml").write_text(f"name: e\ndata: {data}\n{MODEL}")
    assert main(["validate", str(tmp_path / "spec.yaml")]) == 1
    printed = capsys.readouterr()
    said = printed.out + printed.err
    assert "\x1b" not in said
    return said


def test_an_unknown_key(tmp_path, capsys):
    said = _validate(tmp_path, '{kind: rings, "bad\\e[2Jkey": 1}', capsys)
    assert "error: data.bad\\x1b[2Jkey: unknown key" in said


def test_a_data_path(tmp_path, capsys):
    data = '{kind: csv, file: "gone\\e[2J.csv", target: y, target_kind: binary, columns: [a]}'
    said = _validate(tmp_path, data, capsys)
    assert "error: data.file: no such file: " in said and "gone\\x1b[2J.csv" in said


def test_a_csv_header(tmp_path, capsys):
    (tmp_path / "t.csv").write_text(f"a{CLEAR}b,y\n1,0\n2,1\n")
    data = "{kind: csv, file: t.csv, target: y, target_kind: binary, columns: [ab]}"
    said = _validate(tmp_path, data, capsys)
    assert "expected one of: a\\x1b[2Jb, y" in said


def test_a_run_error_naming_a_folder(tmp_path, capsys):
    assert main(["eval", str(tmp_path / f"run{CLEAR}")]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "run\\x1b[2J" in err


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain naïve 线性", "plain naïve 线性"),
        ("a\rvalid", "a\\x0dvalid"),
        ("right\u202eto left", "right\\u202eto left"),
        ("two\nlines", "two\nlines"),
    ],
)
def test_printable(text, shown):
    assert printable(text) == shown
