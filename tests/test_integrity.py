"""Checkpoint integrity (checksums, truncation, orphaned temporary files) and resuming in a
directory that cannot be written."""

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import Interrupt
from test_runs import small_spec

from tdsl.runs.cli import main
from tdsl.runs.directories import RunError, evaluate_run, run
from tdsl.runs.resuming import resume
from tdsl.train import atomic_files, checkpoint_files
from tdsl.train.checkpoint_files import CheckpointError, read_checkpoint, write_checkpoint


@pytest.fixture
def cut_run(tmp_path) -> Path:
    """A run of 3 epochs stopped after its first: last.pt and best.pt hold epoch 1."""
    with pytest.raises(KeyboardInterrupt):
        run(small_spec(epochs=3), tmp_path / "cut", callbacks=[Interrupt(after=1)], progress=False)
    return tmp_path / "cut"


def flip_a_weight_byte(path: Path) -> None:
    """Change one byte inside a tensor record (not the pickle), where torch does not look."""
    weight = torch.load(path, weights_only=True)["model"]["linear1.weight"]
    data = bytearray(path.read_bytes())
    at = data.find(weight.numpy().tobytes())
    assert at > 0
    data[at + 1] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_checkpoint_has_a_checksum_file_sha256sum_can_read(cut_run):
    import hashlib

    checkpoints = cut_run / "checkpoints"
    for name in ("last.pt", "best.pt"):
        line = (checkpoints / f"{name}.sha256").read_text()
        digest = hashlib.sha256((checkpoints / name).read_bytes()).hexdigest()
        assert line == f"{digest}  {name}\n"


def test_a_flipped_byte_is_refused_naming_the_file(cut_run):
    last = cut_run / "checkpoints" / "last.pt"
    flip_a_weight_byte(last)
    torch.load(last, weights_only=True)  # what torch alone does: loads it silently
    with pytest.raises(RunError) as caught:
        resume(cut_run, progress=False)
    message = str(caught.value)
    assert str(last) in message and "checksum does not match" in message
    assert "\n" not in message
    # best.pt is intact: the message offers it, and resuming from it works
    assert f"tdsl resume {cut_run} --checkpoint best" in message
    result = resume(cut_run, progress=False, which="best")
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    read_checkpoint(last)  # rewritten whole by the resumed run


def test_a_truncated_checkpoint_says_so_and_offers_the_other(cut_run, capsys):
    last = cut_run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    assert main(["resume", str(cut_run)]) == 1
    err = capsys.readouterr().err
    assert "truncated" in err and "1000 bytes" in err and str(last) in err
    assert "checkpoints/best.pt is intact" in err and "--checkpoint best" in err
    assert "Traceback" not in err


def test_a_truncated_checkpoint_of_an_old_run_without_checksums_says_so(cut_run):
    for sidecar in (cut_run / "checkpoints").glob("*.sha256"):
        sidecar.unlink()
    best = cut_run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:-30])
    with pytest.raises(RunError, match=r"truncated or not a checkpoint.*--checkpoint last"):
        evaluate_run(cut_run)
    assert "val" in evaluate_run(cut_run, "last")  # no checksum files: loads as before


def test_a_checkpoint_being_replaced_when_killed_still_verifies(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    write_checkpoint(path, {"epoch": 1})
    real = checkpoint_files.atomic_write_bytes

    def killed(target, data):
        raise KeyboardInterrupt  # SIGKILL between the checksum file and the checkpoint

    monkeypatch.setattr(checkpoint_files, "atomic_write_bytes", killed)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(path, {"epoch": 2})
    assert len((tmp_path / "last.pt.sha256").read_text().splitlines()) == 2
    assert read_checkpoint(path, check_layout=False) == {"epoch": 1}
    monkeypatch.setattr(checkpoint_files, "atomic_write_bytes", real)
    write_checkpoint(path, {"epoch": 3})
    assert len((tmp_path / "last.pt.sha256").read_text().splitlines()) == 1
    assert read_checkpoint(path, check_layout=False) == {"epoch": 3}


def test_a_fifo_checkpoint_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "best.pt"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_checkpoint(fifo)


def test_orphaned_temporary_files_are_removed_at_resume(cut_run):
    checkpoints = cut_run / "checkpoints"
    orphan = checkpoints / ".last.pt.k3x_9a0b"  # what a SIGKILL mid-write leaves
    orphan.write_bytes(b"\0" * 1000)
    sidecar_orphan = checkpoints / ".best.pt.sha256.abcdefgh"
    sidecar_orphan.write_text("x")
    kept = [checkpoints / ".last.pt.notes", checkpoints / "my.last.pt.abcdefgh"]
    for path in kept:
        path.write_text("the user's own")
    resume(cut_run, progress=False)
    assert not orphan.exists() and not sidecar_orphan.exists()
    assert all(path.exists() for path in kept)


def test_the_temporary_name_pattern_matches_what_mkstemp_makes(tmp_path):
    descriptor, name = tempfile.mkstemp(prefix=".last.pt.", dir=tmp_path)
    os.close(descriptor)
    assert atomic_files.is_temporary_of(Path(name).name, "last.pt")
    assert not atomic_files.is_temporary_of(Path(name).name, "best.pt")
    assert not atomic_files.is_temporary_of(".last.pt.abc", "last.pt")


def test_resuming_in_a_read_only_directory_fails_before_training(cut_run, monkeypatch):
    epochs = []

    class Count:
        def on_epoch_end(self, run, state, logs):
            epochs.append(logs["epoch"])

    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):  # noqa: A002  (mkstemp's own name)
        if dir is not None and Path(dir).is_relative_to(cut_run):
            raise OSError(30, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(
        RunError, match=r"cannot continue the run: .*cut is not writable \(Read-only"
    ):
        resume(cut_run, callbacks=[Count()], progress=False)
    assert epochs == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_resuming_in_a_chmod_read_only_directory_fails_before_training(cut_run):
    for folder in (cut_run / "checkpoints", cut_run):
        folder.chmod(0o555)
    try:
        with pytest.raises(RunError, match="is not writable"):
            resume(cut_run, progress=False, stream=io.StringIO())
    finally:
        for folder in (cut_run, cut_run / "checkpoints"):
            folder.chmod(0o755)


def test_finished_run_directories_without_checksums_still_resume(cut_run):
    for sidecar in (cut_run / "checkpoints").glob("*.sha256"):
        sidecar.unlink()
    result = resume(cut_run, progress=False)
    assert len(result.history) == 3
    assert np.isfinite(result.history[-1]["loss"])
