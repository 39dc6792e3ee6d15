"""Data workers are started once per split and kept across epochs: the same processes read
every epoch, each epoch still has its own order, the batches are those of the main process,
and nothing is left running (or hangs) after a fit, finished or failed."""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import tdsl
from tdsl.data import FileData, load_data
from tdsl.data.base import DataError
from tdsl.data.tensors import Batch

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "specs" / "data" / "images"


class _PidReader:
    """Rows as their ids, and which process read them; row `bad` cannot be read."""

    def __init__(self, rows: int, bad: int = -1):
        self.rows, self.bad = rows, bad

    def __len__(self) -> int:
        return self.rows

    def read(self, index: np.ndarray, augment_seed: int | None) -> Batch:
        if self.bad in index:
            raise DataError.at(("file",), f"cannot read row {self.bad}")
        ids = torch.as_tensor(index, dtype=torch.float32)
        pids = torch.full((len(index),), float(os.getpid()))
        return Batch((ids,), pids)


def _epoch(data: FileData, seed: int) -> tuple[list[float], set[float]]:
    batches = list(data.batches(5, order_seed=seed))
    return [r for b in batches for r in b.features[0].tolist()], {
        p for b in batches for p in b.target.tolist()
    }


def test_the_same_workers_read_every_epoch_in_each_epoch_s_order():
    data = FileData(_PidReader(40), np.arange(40), workers=2)
    inline = FileData(_PidReader(40), np.arange(40), workers=0)
    rows1, pids1 = _epoch(data, 1)
    rows2, pids2 = _epoch(data, 2)
    assert len(pids1) == 2 and os.getpid() not in pids1
    assert pids2 == pids1  # not started again
    assert rows1 != rows2 and sorted(rows1) == sorted(rows2) == list(range(40))
    assert rows1 == _epoch(inline, 1)[0] and rows2 == _epoch(inline, 2)[0]


def test_a_pass_left_early_or_failed_leaves_the_next_one_whole():
    data = FileData(_PidReader(40, bad=33), np.arange(40), workers=2)
    first = data.batches(5, order_seed=None)
    assert next(first).features[0].tolist() == [0, 1, 2, 3, 4]
    del first  # left after one batch, with batches read ahead
    with pytest.raises(DataError, match="cannot read row 33"):
        list(data.batches(5, order_seed=None))
    rows = [b.features[0].tolist() for b in itertools.islice(data.batches(5), 6)]
    assert rows == [list(range(i, i + 5)) for i in range(0, 30, 5)]


def test_two_passes_at_once_each_get_all_their_rows():
    data = FileData(_PidReader(20), np.arange(20), workers=2)
    pairs = zip(data.batches(5, order_seed=1), data.batches(5, order_seed=2), strict=True)
    one, two = zip(*((a.features[0], b.features[0]) for a, b in pairs), strict=True)
    assert torch.cat(one).tolist() == _epoch(data, 1)[0]
    assert torch.cat(two).tolist() == _epoch(data, 2)[0]


def _image_spec(folder: Path, epochs: int) -> str:
    return f"""
name: workers
seed: 0
data: {{kind: images, folder: {folder}, size: [8, 8], target_kind: binary, workers: 2,
        random_flip: true}}
model:
  inputs: [{{shape: [3, 8, 8]}}]
  layers: [{{op: flatten}}, {{op: linear, out_features: 1}}]
loss: {{kind: bce_with_logits}}
optimizer: {{kind: sgd, lr: 0.01}}
train: {{epochs: {epochs}, batch_size: 8, eval_batch_size: 8}}
"""


@pytest.fixture
def folder(tmp_path):
    pytest.importorskip("PIL")
    shutil.copytree(IMAGES, tmp_path / "images")
    return tmp_path / "images"


def test_a_fit_reproduces_the_main_process_s_and_leaves_no_worker(folder):
    spec = tdsl.load(_image_spec(folder, 2))
    program = tdsl.compile(spec)
    result = tdsl.fit(program, program.init(), load_data(spec))
    assert not multiprocessing.active_children()  # the fit's workers ended with it
    inline = tdsl.load(_image_spec(folder, 2).replace("workers: 2", "workers: 0"))
    again = tdsl.fit(program, program.init(), load_data(inline))
    for mine, theirs in zip(result.history, again.history, strict=True):
        assert {k: v for k, v in mine.items() if k != "seconds"} == {
            k: v for k, v in theirs.items() if k != "seconds"
        }


def test_a_fit_failing_in_a_worker_leaves_no_worker(folder):
    broken = sorted((folder / "1_automobile").glob("*.png"))[0]
    broken.write_bytes(broken.read_bytes()[:60])  # the header passes; decoding fails
    spec = tdsl.load(_image_spec(folder, 3))
    program = tdsl.compile(spec)
    with pytest.raises(DataError, match=f"cannot read image {broken}") as caught:
        tdsl.fit(program, program.init(), load_data(spec))
    del caught  # its traceback holds the fit's frames, and so its data
    gc.collect()
    assert not multiprocessing.active_children()
