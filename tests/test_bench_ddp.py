"""bench/ddp.py stays runnable and its results check can fail: its specs validate (the
two-process one for 2 processes), the check passes equal runs and stops on a weight or a
logged value moved past the tolerances, and `bench/ddp.py --smoke` runs end to end (five
fresh processes at once, the launcher and two gloo workers among them: ~15 s on 2 cores,
most of it the processes' start) with a report whose results check passed."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tdsl

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))  # the bench imports bench/workloads.py
        spec = importlib.util.spec_from_file_location("bench_ddp", BENCH / "ddp.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


def test_the_bench_specs_are_mlp_wide_and_validate(bench):
    for name, (processes, _, accumulate) in bench.SHAPES.items():
        spec = bench.spec_for(name, 3, 62_500)
        assert spec.train.batch_size == 256 and spec.train.accumulate == accumulate
        assert spec.data.n == 62_500 and spec.model == bench.workloads()["mlp_wide"].model
        report = tdsl.validate(spec, world_size=processes)
        assert report.ok and not report.warnings, name
        assert spec.device.strategy == ("ddp" if processes > 1 else "single")


def make_run(bench, loss: float = 0.5, weight: float = 0.25):
    history = [
        {"epoch": 1, "loss": 0.9, "accuracy": 0.5, "val_loss": 0.8, "seconds": 1.0},
        {"epoch": 2, "loss": loss, "accuracy": 0.75, "val_loss": 0.6, "seconds": 2.0},
    ]
    weights = {"linear1.weight": torch.tensor([[weight, -0.5], [1e-8, 2.0]])}
    return bench.Run("v", 9.0, 3.0, 12.0, history, weights)


def test_the_results_check_passes_equal_runs_and_stops_on_differences(bench):
    reference = make_run(bench)
    check = bench.Check()
    check.logs(make_run(bench, loss=0.5 * (1 + 1e-7)), reference)
    check.weights(make_run(bench, weight=0.25 * (1 + 1e-7)), reference)
    assert check.problems == [] and check.log == pytest.approx(1e-7, rel=1e-3)

    moved = bench.Check()
    moved.logs(make_run(bench, loss=0.5 * (1 + 1e-4)), reference)
    moved.weights(make_run(bench, weight=0.25 + 1e-4), reference)
    assert [p.split(":")[1].split()[:3] for p in moved.problems] == [
        ["epoch", "2", "loss"],
        ["linear1.weight", "differs", "by"],
    ]
    # The first epoch's check leaves later epochs (where rounding has grown) alone.
    first = bench.Check()
    first.logs(make_run(bench, loss=0.6), reference, bench.FIRST_EPOCH)
    assert first.problems == []
    assert bench.drift(make_run(bench, weight=0.35), reference) == pytest.approx(0.1 / 4.3125**0.5)


def test_the_smoke_run_reports_two_processes_with_one_processs_results(tmp_path):
    root = BENCH.parent
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    report = tmp_path / "results.md"
    command = [sys.executable, str(BENCH / "ddp.py"), "--smoke", "--out", str(report)]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    text = report.read_text()
    assert text.startswith("\n## ") and ": bench/ddp.py\n" in text
    assert text.split("bench/ddp.py\n\n", 1)[1].strip() == done.stdout.strip()
    assert "mlp_wide, 512 rows (410 training), 1 epoch(s), global batch 256" in text
    number = r"[0-9.]+(?: \([0-9.]+-[0-9.]+\))?"
    rows = re.findall(
        rf"^\| (\(.\)[^|]*) \| {number} \| {number} \| {number} \| ([0-9,]+) \|$", text, re.M
    )
    assert [name for name, _ in rows] == ["(a) 1 process, 1 thread", "(c) 2 processes x 1 thread"]
    assert all(int(speed.replace(",", "")) > 0 for _, speed in rows)
    assert re.search(r"^Scaling efficiency \(c\) / \(2 x \(a\)\): [0-9.]+\.$", text, re.M)
    assert re.search(r"^Results check PASS: \(c\) against \(d\), one process", text, re.M)
    assert "(b)" not in text and "Smoke run: the variants ran at the same time" in text
