"""bench/ddp.py stays runnable and its results check can fail: its specs validate (the
two-process one for 2 processes), and the check passes equal runs and stops on a weight or
a logged value moved past the tolerances. In this process: `bench/ddp.py --quick` itself
starts five fresh processes (the launcher and two workers among them), ~35 s on 2 cores."""

from __future__ import annotations

import importlib.util
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
