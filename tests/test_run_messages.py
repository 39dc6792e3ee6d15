"""What a run tells its user: resume position, no torchrun banner, readable run files."""

import os
import stat

import pytest
from helpers import Interrupt
from test_runs import small_spec

from tdsl.runs import launcher
from tdsl.runs.directories import run
from tdsl.runs.resuming import resume


def test_resume_says_where_it_continues(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        run(small_spec(epochs=3), tmp_path / "cut", callbacks=[Interrupt(after=1)])
    capsys.readouterr()
    resume(tmp_path / "cut")
    err = capsys.readouterr().err
    assert "resuming at epoch 2 of 3 from checkpoints/last.pt" in err
    resume(tmp_path / "cut")  # finished: nothing left to do, and it says so
    assert "already finished its 3 epochs" in capsys.readouterr().err


def test_run_files_are_readable_by_others_as_the_umask_allows(tmp_path):
    directory, _ = run(small_spec(epochs=1), tmp_path / "run")
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("spec.yaml", "summary.txt", "final.json", "checkpoints/last.pt"):
        mode = stat.S_IMODE((directory / name).stat().st_mode)
        assert mode == 0o666 & ~mask, (name, oct(mode))


def test_the_launcher_sets_omp_threads_so_torchrun_prints_no_banner(monkeypatch):
    from torch.distributed import run as torchrun

    seen = []
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(torchrun, "run", lambda args: seen.append(os.environ["OMP_NUM_THREADS"]))
    launcher.launch(2, ["run", "spec.yaml"])
    assert seen == ["1"] and "OMP_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the user's own choice stays
    launcher.launch(2, ["run", "spec.yaml"])
    assert seen == ["1", "4"]
