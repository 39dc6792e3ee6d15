"""`--nproc` workers start in safe-path mode: a module in the working directory named like
one tdsl imports (a stranger's checkout holding `attrs.py`) is never run by them."""

import os

import pytest

from tdsl.runs.launcher import launch

MARKER = """
from pathlib import Path
Path(__file__).with_name("imported.marker").write_text("ran")
raise ImportError("a stranger's module ran")
"""


def test_workers_do_not_import_modules_from_the_working_directory(tmp_path, monkeypatch):
    pytest.importorskip("torch.distributed.run")
    (tmp_path / "attrs.py").write_text(MARKER)  # tdsl.errors imports attrs first thing
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONSAFEPATH", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    launch(2, ["--version"])
    assert not (tmp_path / "imported.marker").exists()
    # The launcher's settings for its workers do not leak into this process.
    assert "PYTHONSAFEPATH" not in os.environ and os.environ["OMP_NUM_THREADS"] == "3"
