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


def test_custom_loop_reproduces_the_seed_weights(root, capsys):
    """The seed's low-level regression ends at w = [1.953, -3.005], b = 9.962."""
    learned = load_example(root, "custom_loop").main()
    assert learned["w"] == pytest.approx([2.0, -3.0], abs=0.1)
    assert learned["b"] == pytest.approx([10.0], abs=0.5)
    out = capsys.readouterr().out
    assert "Total params: 3" in out and "epoch = 200" in out and "model.b = " in out


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


def test_arrays_fit_stops_early_and_keeps_the_best_weights(root, capsys):
    result = load_example(root, "arrays_fit").main(epochs=40)
    best = max(row["val_accuracy"] for row in result.history)
    assert result.history[result.best_state.epoch - 1]["val_accuracy"] == best
    assert best > 0.9
    out = capsys.readouterr().out
    assert f"val accuracy {best:.3f}" in out and f"restarted: val accuracy {best:.3f}" in out
