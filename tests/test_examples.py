"""The embedding examples run as documented."""

import importlib.util
import os
import subprocess
import sys

import pytest


def load_example(root, name):
    spec = importlib.util.spec_from_file_location(name, root / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_custom_loop_learns(root, capsys):
    scores = load_example(root, "custom_loop").main(epochs=10)
    assert scores["accuracy"] > 0.8
    assert "Total params: 61" in capsys.readouterr().out


def test_evolve_and_fit_applies_the_change(root, capsys):
    history = load_example(root, "evolve_and_fit").main(epochs=3)
    assert len(history) == 3 and all(row["lr"] == 0.02 for row in history)
    assert "lr: 0.02" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["custom_loop", "evolve_and_fit"])
def test_examples_run_as_scripts(root, name):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models: one thread is fastest
    done = subprocess.run(
        [sys.executable, str(root / "examples" / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
