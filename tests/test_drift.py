"""Drift: data files changed before a resume, spec.yaml edited before an eval."""

import os
import shutil
from pathlib import Path

import attrs
import numpy as np
import pytest
from helpers import Interrupt
from test_data_sources import spec_for

import tdsl
from tdsl.runs.cli import main
from tdsl.runs.directories import evaluate_run, run
from tdsl.runs.drift import FINGERPRINTS, fingerprint
from tdsl.runs.resuming import resume


def write_data(path: Path, seed: int = 0, rows: int = 60) -> None:
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.normal(size=(rows, 3)).astype(np.float32), y=(np.arange(rows) % 2))


@pytest.fixture
def cut_run(tmp_path) -> tuple[Path, Path]:
    data = tmp_path / "d.npz"
    write_data(data)
    source = tdsl.Tensors(file=str(data), features=["x"], target="y", target_kind="binary")
    spec = attrs.evolve(spec_for(source, shape=(3,)), train=tdsl.Train(epochs=2, batch_size=16))
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "run", callbacks=[Interrupt(after=1)], progress=False)
    return tmp_path / "run", data


def test_a_changed_data_file_is_named_on_resume(cut_run, capsys):
    directory, data = cut_run
    assert (directory / FINGERPRINTS).exists()
    write_data(data, seed=1)  # same size, other values
    resume(directory, progress=False)
    err = capsys.readouterr().err
    assert f"warning: data.file {data} changed since the run started" in err
    assert "its first 64 KiB differ" in err and "bytes" not in err.split(str(data))[1][:60]


def test_an_appended_data_file_says_its_size(cut_run, capsys):
    directory, data = cut_run
    write_data(data, rows=80)
    resume(directory, progress=False)
    size = data.stat().st_size
    assert f"-> {size} bytes" in capsys.readouterr().err


def test_unchanged_data_and_old_runs_resume_without_a_word(cut_run, capsys):
    directory, _ = cut_run
    copy = shutil.copytree(directory, directory.parent / "old")
    (copy / FINGERPRINTS).unlink()  # a run from before fingerprints
    resume(directory, progress=False)
    resume(copy, progress=False)
    assert "warning" not in capsys.readouterr().err


def test_a_fingerprint_sees_a_change_in_the_middle_only_by_time(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(300_000))
    before = fingerprint(path)
    with path.open("r+b") as handle:  # the middle: neither first nor last 64 KiB
        handle.seek(150_000)
        handle.write(b"x")
    os.utime(path, ns=(before["mtime_ns"] + 10**9, before["mtime_ns"] + 10**9))
    after = fingerprint(path)
    assert after["first_block"] == before["first_block"] and after["size"] == before["size"]
    assert after["mtime_ns"] != before["mtime_ns"]


def test_eval_says_which_spec_and_warns_when_spec_yaml_was_edited(cut_run, capsys):
    directory, _ = cut_run
    evaluate_run(directory)
    assert "warning" not in capsys.readouterr().err
    spec_file = directory / "spec.yaml"
    spec_file.write_text(spec_file.read_text().replace("batch_size: 16", "batch_size: 8"))
    assert main(["eval", str(directory)]) == 0
    err = capsys.readouterr().err
    assert f"spec: the one recorded in {directory}/checkpoints/best.pt" in err
    assert f"warning: {spec_file} was edited after the run wrote it" in err
    assert "-  batch_size: 16; +  batch_size: 8" in err


def test_predict_warns_about_an_edited_spec_too(cut_run, capsys, tmp_path):
    directory, _ = cut_run
    spec_file = directory / "spec.yaml"
    spec_file.write_text(spec_file.read_text() + "# a note\n")
    np.save(tmp_path / "rows.npy", np.zeros((2, 3), np.float32))
    tdsl.predict_run(directory, tmp_path / "rows.npy", tmp_path / "out.csv")
    assert "was edited after the run wrote it" in capsys.readouterr().err
