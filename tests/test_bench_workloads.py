"""bench/workloads.py compares like with like: its tuned loop, given tdsl's initial weights
and batch order, ends exactly where tdsl's `fit` does (losses and the metric, training and
validation), and the check that says so stops the benchmark when they differ."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import attrs
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def workloads():
    spec = importlib.util.spec_from_file_location("bench_workloads", BENCH / "workloads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _short(spec, epochs: int = 2):
    return attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=epochs))


@pytest.mark.parametrize("name", ["linreg", "rings"])
@pytest.mark.parametrize("how", ["train", "large"])
def test_the_tuned_loop_ends_where_tdsl_does(workloads, name, how):
    import tdsl

    spec = workloads.for_eval(_short(workloads.workloads()[name]), how)
    data = tdsl.load_data(spec)
    workloads.check_same_start(spec)
    workloads.tdsl_run(spec, data)
    workloads.tuned_run(spec, data)
    workloads.check_tuned(spec)  # raises SystemExit when they differ


def test_the_check_stops_on_different_work(workloads):
    import tdsl

    spec = workloads.for_eval(_short(workloads.workloads()["linreg"]), "train")
    data = tdsl.load_data(spec)
    workloads.tdsl_run(spec, data)
    # A tuned run one epoch longer ends elsewhere: the check must notice.
    longer = _short(spec, epochs=3)
    workloads.tuned_run(longer, data)
    workloads.TUNED_FINAL[spec.name] = workloads.TUNED_FINAL[longer.name]
    with pytest.raises(SystemExit, match="do not do the same work"):
        workloads.check_tuned(spec)
