"""bench/gpu.py stays runnable: its CPU mode runs the same harness at tiny sizes."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import tdsl


@pytest.fixture(scope="module")
def gpu_bench():
    path = Path(__file__).resolve().parent.parent / "bench" / "gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # attrs classes look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["bench_gpu"]


def test_every_workload_validates_at_both_sizes(gpu_bench):
    for quick in (True, False):
        for name, spec in gpu_bench.workloads(quick).items():
            for setting in gpu_bench.SETTINGS:
                report = tdsl.validate(gpu_bench.for_setting(spec, setting, "cpu"))
                assert report.ok, (name, setting, quick, report.errors)


def test_quick_cpu_run_compares_tdsl_with_the_hand_loop(gpu_bench, capsys):
    argv = ["--device", "cpu", "--quick", "--only", "digits_cnn", "mlp_wide", "gpt_small"]
    assert gpu_bench.main(argv) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()]
    rows = [(r[1].strip(), r[2].strip(), r[7]) for r in rows if len(r) > 7 and "_" in r[1]]
    assert [(name, setting) for name, setting, _ in rows] == [
        ("digits_cnn", "fp32"),
        ("digits_cnn", "bf16"),
        ("digits_cnn", "bf16_nhwc"),  # channels-last: the CNNs only
        ("mlp_wide", "fp32"),
        ("mlp_wide", "bf16"),
        ("gpt_small", "fp32"),
        ("gpt_small", "bf16"),
    ]
    for _, _, losses in rows:  # the same weights and batches: the same final loss
        hand, ours = losses.split("/")
        assert float(hand) == pytest.approx(float(ours), rel=1e-3)


def test_refuses_in_one_line_without_cuda(gpu_bench, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_bench.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cpu --quick" in err


def test_a_loss_off_the_hand_loops_stops_the_benchmark(gpu_bench):
    row = gpu_bench.Row("w", "fp32", {"tdsl": 1.0, "hand": 1.0}, {}, {"tdsl": 2.5, "hand": 2.0})
    with pytest.raises(SystemExit, match="not the hand loop's"):
        gpu_bench._check(row, "same_setting", 2.5, 2.0, "the hand loop's")
    bf16 = gpu_bench.Row("w", "bf16", {}, {}, {"tdsl": 3.0})
    fp32 = gpu_bench.Row("w", "fp32", {}, {}, {"tdsl": 2.0})
    with pytest.raises(SystemExit, match="fp32 run's"):
        gpu_bench.check_settings([fp32, bf16])
