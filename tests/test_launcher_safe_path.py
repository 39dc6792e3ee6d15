"""`--nproc` workers start in safe-path mode: a module in the working directory named like
one tdsl imports (a stranger's checkout holding `attrs.py`) is never run by them."""

import os
import sys

import pytest

from tdsl.runs.launcher import LAUNCHER_PATH, _import_path, adopt_launcher_path, launch

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


def test_workers_append_the_launchers_import_path(tmp_path, monkeypatch):
    """What lets `--nproc` workers import a user's module from the launcher's working
    directory (tests/test_ddp.py launches with no PYTHONPATH naming it): the launcher's
    sys.path, `""` as the folder it means, appended after the worker's own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", *sys.path])
    given = _import_path()
    assert given[0] == str(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.setenv(LAUNCHER_PATH, os.pathsep.join(given))
    adopt_launcher_path()
    assert sys.path[-1] == str(tmp_path) and sys.path.count(str(tmp_path)) == 1
