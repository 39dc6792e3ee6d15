"""bench/instructions.py: its child (what valgrind runs) warms up, waits to be counted,
runs the fit and leaves at once, without the interpreter's shutdown (which an earlier
version counted with the fits); the table gives ratios to the tuned loop. And
bench/compiled_step.py's check that both steps ended alike."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _module():
    spec = importlib.util.spec_from_file_location("bench_instructions", BENCH / "instructions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_child_waits_to_be_counted_then_fits_and_leaves_without_shutting_down(tmp_path):
    instructions = _module()
    flag = tmp_path / "ready"
    code = instructions.CHILD.format(
        bench=str(BENCH), name="linreg", how="train", flag=str(flag), runs=1, variant="tdsl"
    )
    # An atexit hook shows whether the interpreter shut down normally (it must not).
    code = "import atexit; atexit.register(print, 'SHUTDOWN')\n" + code
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 120
    while not (flag.exists() and flag.stat().st_size):
        assert child.poll() is None, child.stdout.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert child.poll() is None  # waiting for the instrumentation
    os.remove(flag)
    output = child.communicate(timeout=120)[0].decode()
    assert child.returncode == 0, output[-2000:]
    assert "SHUTDOWN" not in output


def test_the_table_gives_each_variant_as_a_ratio_to_the_tuned_loop():
    instructions = _module()
    counts = {
        ("linreg", "train", "tuned"): 1000,
        ("linreg", "train", "tdsl"): 990,
        ("linreg", "train", "tdsl_compiled"): 631,
    }
    lines = instructions.table(counts, ["linreg"], ["train"]).splitlines()
    assert lines[0].startswith("| workload (validation batches) | tuned loop (instructions) |")
    assert lines[2] == "| linreg (train) | 1,000 | 0.9900x | 0.6310x | — |"
    alone = instructions.table({("rings", "train", "tdsl"): 5}, ["rings"], ["train"])
    assert alone.splitlines()[2] == "| rings (train) | — | 5 | — | — |"


def test_the_compiled_step_bench_stops_when_the_two_steps_do_not_end_alike():
    spec = importlib.util.spec_from_file_location("bench_compiled_step", BENCH / "compiled_step.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    import pytest
    import torch

    import tdsl

    base = bench.W.workloads()["linreg"]
    state = tdsl.compile(base).init()
    net = bench.W.hand_module(base)
    bench.check_same_weights("linreg", state, net)  # the same start: passes
    with torch.no_grad():
        next(net.parameters()).add_(0.1)
    with pytest.raises(SystemExit, match="linreg: after the same steps"):
        bench.check_same_weights("linreg", state, net)
