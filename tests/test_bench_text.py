"""bench/text.py stays runnable: its generated text and specs, at a tiny size, validate and
load, and the second load from the run's cache equals the first (in this process: the
bench's own fresh processes cost seconds each)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

import tdsl
from tdsl.data import clear_cache, load_data
from tdsl.runs.data_cache import run_data_cache


def test_every_bench_source_validates_and_loads_again_from_the_cache(tmp_path):
    path = Path(__file__).resolve().parent.parent / "bench" / "text.py"
    spec = importlib.util.spec_from_file_location("bench_text", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.generate(tmp_path, 0.02)
    for name in ("labelled.txt", "plain.txt"):
        assert 20_000 <= (tmp_path / name).stat().st_size < 60_000
    assert (tmp_path / "labelled.txt").read_text().splitlines()[0][1] == "\t"
    for name, data, _ in bench.SOURCES:
        spec_path = tmp_path / f"{name.replace('/', '_')}.yaml"
        spec_path.write_text(bench.spec_text(data, 2000))  # the bench's are larger: slower
        loaded = tdsl.load(spec_path)
        assert tdsl.validate(loaded).ok, name
        loads = []
        for _ in range(2):
            clear_cache()
            with run_data_cache(tmp_path / f"run-{name.replace('/', '_')}"):
                loads.append(load_data(loaded))
        assert torch.equal(loads[0].train.features[0], loads[1].train.features[0]), name
    clear_cache()
