"""A folder of .npy files is read batch by batch: a data set larger than memory trains
without being loaded, and without its pages piling up in the process's resident memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tdsl
from tdsl.data import FileData, load_data

ROWS, WIDTH = 200_000, 64  # float32: 51 MB of features


def resident_memory() -> int:
    """Bytes of this process's resident memory, private and file-backed (mapped) pages."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("big")
    features = np.lib.format.open_memmap(
        folder / "x.npy", mode="w+", dtype=np.float32, shape=(ROWS, WIDTH)
    )
    for start in range(0, ROWS, 50_000):  # written in chunks, never whole in memory
        block = np.arange(start, start + 50_000, dtype=np.float32)[:, None]
        features[start : start + 50_000] = block + np.zeros((1, WIDTH), np.float32)
    features.flush()
    del features
    np.save(folder / "y.npy", (np.arange(ROWS) % 2).astype(np.float32))
    return folder


def spec_for(folder: Path, workers: int = 0) -> tdsl.Spec:
    return tdsl.Spec(
        name="big",
        data=tdsl.Tensors(file=str(folder), target_kind="binary", workers=workers),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[WIDTH])], layers=[tdsl.Layer("linear", out_features=1)]
        ),
        loss=tdsl.Loss("bce_with_logits"),
    )


def test_npy_headers_are_read_without_loading_the_arrays(big_folder, monkeypatch):
    calls = []
    real_load = np.load

    def recording_load(path, *args, **kwargs):
        calls.append((Path(path).name, kwargs.get("mmap_mode")))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(np, "load", recording_load)
    splits = load_data(spec_for(big_folder))
    next(splits.train.batches(8, order_seed=0))
    assert ("x.npy", "r") in calls
    assert all(mode == "r" for name, mode in calls if name == "x.npy")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_shuffled_epoch_over_a_large_file_keeps_resident_memory_small(big_folder):
    size = (big_folder / "x.npy").stat().st_size
    assert size > 50_000_000
    spec = spec_for(big_folder)
    before = resident_memory()
    splits = load_data(spec)
    assert isinstance(splits.train, FileData)
    total, rows = 0.0, 0
    for batch in splits.train.batches(8192, order_seed=1):
        total += float(batch.features[0][:, 0].sum())
        rows += batch.size
    grown = resident_memory() - before
    assert rows == len(splits.train) == 160_000
    expected = float(torch.from_numpy(splits.train.index.astype(np.float64)).sum())
    assert total == pytest.approx(expected, rel=1e-6)  # every training row, once
    # The features were read (51 MB) in shuffled order, but only a batch at a time was ever
    # resident: a memory map would have kept every page it touched.
    assert grown < size / 3, f"resident memory grew by {grown / 1e6:.1f} MB"


def test_workers_read_the_same_rows(big_folder):
    inline = load_data(spec_for(big_folder, workers=0)).val
    forked = load_data(spec_for(big_folder, workers=2)).val
    assert inline.index.tolist() == forked.index.tolist()
    for a, b in zip(inline.batches(10_000), forked.batches(10_000), strict=True):
        assert torch.equal(a.features[0], b.features[0]) and torch.equal(a.target, b.target)
