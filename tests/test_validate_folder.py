"""`tdsl validate FOLDER`: every spec file in it, recursively, with a count at the end."""

import shutil
from pathlib import Path

from tdsl.runs.cli import main

RING = Path(__file__).resolve().parent.parent / "specs" / "ring_dnn.yaml"


def test_a_folder_validates_every_yaml_file_in_it(tmp_path, capsys):
    (tmp_path / "deeper").mkdir()
    shutil.copy(RING, tmp_path / "a.yaml")
    shutil.copy(RING, tmp_path / "deeper" / "b.yml")
    (tmp_path / "notes.txt").write_text("not a spec\n")
    assert main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (
        f"{tmp_path / 'a.yaml'}: valid" in out and f"{tmp_path / 'deeper' / 'b.yml'}: valid" in out
    )
    assert out.endswith("2 valid, 0 invalid (2 spec files)\n")
    (tmp_path / "deeper" / "broken.yaml").write_text("name: x\n")
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "missing required key 'data'" in out
    assert out.endswith("2 valid, 1 invalid (3 spec files)\n")


def test_a_folder_without_specs_fails(tmp_path, capsys):
    assert main(["validate", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"{tmp_path}: no *.yaml or *.yml files in this folder\n"
