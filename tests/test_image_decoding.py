"""Image batches are decoded straight into their batch (in shared memory in a worker), with
the same values as decoding each image to floats and stacking; bench/images.py runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import tdsl
from tdsl.data.images import ImageReader
from tdsl.data.streaming import batch_tensor

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    """JPEG and PNG files in RGB, RGBA and gray, some not at the size read (resized)."""
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    made = []
    for i, (mode, side, suffix) in enumerate(
        [("RGB", 12, ".png"), ("RGB", 12, ".jpg"), ("RGBA", 9, ".png"), ("L", 16, ".jpg")] * 2
    ):
        shape = (side, side + 2) if mode == "L" else (side, side + 2, len(mode))
        path = folder / f"{i}{suffix}"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
        made.append(path)
    return made


def reference(source: tdsl.ImageFolder, files: list[Path], seed: int | None, dtype) -> torch.Tensor:
    """Each image as float32 [C, H, W] / 255, flipped and padded-and-cropped as floats,
    stacked, normalized and cast: how batches were built before they were decoded in place."""
    height, width = source.size
    out = []
    for position, path in enumerate(files):
        with Image.open(path) as image:
            image = image.convert("RGB" if source.mode == "rgb" else "L")
            image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / 255.0
        pixels = pixels.reshape(height, width, -1).transpose(2, 0, 1)
        if seed is not None:
            rng = np.random.default_rng([seed, position])
            if source.random_flip and rng.random() < 0.5:
                pixels = pixels[:, :, ::-1]
            pad = source.random_crop
            if pad:
                padded = np.pad(pixels, ((0, 0), (pad, pad), (pad, pad)))
                top, left = rng.integers(0, 2 * pad + 1, size=2)
                pixels = padded[:, top : top + height, left : left + width]
        out.append(np.ascontiguousarray(pixels))
    batch = torch.from_numpy(np.stack(out))
    if source.mean:
        batch = (batch - torch.tensor(source.mean).reshape(1, -1, 1, 1)) / torch.tensor(
            source.std
        ).reshape(1, -1, 1, 1)
    return batch.to(dtype)


@pytest.mark.parametrize(
    "options, dtype",
    [
        ({}, torch.float32),
        ({"random_flip": True, "random_crop": 3}, torch.float32),
        ({"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "random_flip": True}, torch.float64),
        ({"mode": "gray", "random_crop": 2, "mean": [0.5], "std": [0.25]}, torch.bfloat16),
        ({"size": [12, 14], "random_flip": True}, torch.float32),  # RGB files: as they are
        ({"size": [16, 18], "mode": "gray"}, torch.float32),  # gray files: as they are
    ],
)
def test_batches_are_the_per_image_float_decoding(files, options, dtype):
    source = tdsl.ImageFolder(folder="unused", **{"size": [10, 12], **options})
    reader = ImageReader(source, files, torch.arange(len(files)), dtype)
    index = np.array([5, 0, 3, 1, 6, 2, 7, 4])
    for seed in (None, 11, 12):
        batch = reader.read(index, seed)
        expected = reference(source, [files[i] for i in index], seed, dtype)
        assert batch.features[0].dtype == dtype and batch.features[0].is_contiguous()
        assert torch.equal(batch.features[0], expected), (options, seed)
        assert batch.target.tolist() == index.tolist()
    empty = reader.read(np.array([], dtype=np.int64))
    assert empty.features[0].shape == (0, 3 if source.mode == "rgb" else 1, *source.size)


class _InWorker(Dataset):
    def __init__(self, reader: ImageReader):
        self.reader = reader

    def __len__(self) -> int:
        return 1

    def __getitem__(self, item: int) -> tuple[bool, bool]:
        batch = self.reader.read(np.arange(3), 5)
        return batch.features[0].is_shared(), batch_tensor((2, 3), torch.float64).is_shared()


def test_a_worker_decodes_into_shared_memory_so_sending_the_batch_copies_nothing(files):
    # A batch in ordinary memory is copied into shared memory as the worker sends it.
    for dtype in (torch.float32, torch.float64):
        reader = ImageReader(
            tdsl.ImageFolder(folder="x", size=[8, 8]), files, torch.zeros(8), dtype
        )
        loader = DataLoader(_InWorker(reader), batch_size=None, num_workers=1)
        assert [tuple(item) for item in loader] == [(True, True)]
        assert not reader.read(np.arange(3)).features[0].is_shared()  # not in a worker


def test_quick_bench_compares_tdsl_with_an_imagefolder_baseline(capsys):
    path = ROOT / "bench" / "images.py"
    spec = importlib.util.spec_from_file_location("bench_images", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_images"] = module
    threads = torch.get_num_threads()
    try:
        spec.loader.exec_module(module)
        assert module.main(["--quick", "--threads", "1"]) == 0
    finally:
        del sys.modules["bench_images"]
    assert torch.get_num_threads() == threads  # the suite's setting is left as it was
    out = capsys.readouterr().out
    assert "pixels identical (max abs difference 0)" in out and "baseline: " in out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| 32x32")]
    assert [row[2].strip() for row in rows] == ["0", "2"]
    for row in rows:  # images/s of both, and their ratio
        assert float(row[3].replace(",", "")) > 0 and float(row[4].replace(",", "")) > 0
