"""Segmentation: the generated `shapes` source, image folders with mask folders (paired
augmentation, mask validation), and a small U-Net learning per-pixel classes."""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch

import tdsl
from tdsl.data import load_data
from tdsl.data import shapes as shapes_data
from tdsl.data.masks import augment_pair
from tdsl.errors import format_path
from tdsl.runs.directories import predict_run, run

UNET = """
name: tiny_unet
seed: {seed}
data: {data}
model:
  inputs: [{{name: image, shape: [{channels}, {h}, {w}]}}]
  layers:
    - {{name: enc, op: conv2d, out_channels: 8, kernel_size: 3, padding: 1}}
    - {{op: relu}}
    - {{name: down, op: max_pool2d, kernel_size: 2}}
    - {{name: mid, op: conv2d, out_channels: 8, kernel_size: 3, padding: 1}}
    - {{name: up, op: conv_transpose2d, out_channels: 8, kernel_size: 2, stride: 2}}
    - {{name: skip, op: concat, inputs: [up, enc], dim: 1}}
    - {{name: head, op: conv2d, out_channels: {classes}, kernel_size: 1}}
loss: {loss}
metrics: [accuracy, mean_iou]
optimizer: {{kind: adam, lr: 0.01}}
train: {{epochs: 1, batch_size: 16}}
"""


def unet(
    data: str,
    size: tuple[int, int] = (16, 16),
    channels: int = 1,
    classes: int = 4,
    loss: str = "cross_entropy",
    seed: int = 0,
) -> str:
    h, w = size
    return UNET.format(
        data=data, channels=channels, h=h, w=w, classes=classes, loss=loss, seed=seed
    )


def errors(text: str) -> list[str]:
    report = tdsl.validate(text)
    return [f"{format_path(d.path)}: {d.message} ({d.hint})" for d in report.errors]


SHAPES = "{kind: shapes, n: 64, size: [16, 16]}"


# --- kind: shapes ---------------------------------------------------------------------------


def test_shapes_yield_float_images_and_int64_masks_of_the_four_classes():
    splits = load_data(tdsl.load(unet(SHAPES)))
    x, y = splits.train.features[0], splits.train.target
    assert x.dtype == torch.float32 and x.shape == (51, 1, 16, 16)
    assert y.dtype == torch.int64 and y.shape == (51, 16, 16)
    assert set(y.unique().tolist()) == {0, 1, 2, 3}
    assert len(splits.val) == 13


def test_shape_pixels_are_brighter_than_the_background():
    source = tdsl.Shapes(n=32, size=(16, 16), noise=0.0)
    images, masks = shapes_data.generate(source, torch.Generator().manual_seed(0))
    inside = images[:, 0][masks > 0]
    assert (images[:, 0][masks == 0] == 0).all()
    assert inside.min() >= 0.5 and inside.max() <= 1.0


def test_each_class_is_drawn_with_its_outline():
    # One shape per image with no noise: the mask's area tells the shape apart.
    source = tdsl.Shapes(n=200, size=(32, 32), shapes_per_image=1, noise=0.0)
    _, masks = shapes_data.generate(source, torch.Generator().manual_seed(1))
    for mask in masks:
        kind = int(mask.max())
        rows = (mask == kind).any(1).nonzero().flatten()
        cols = (mask == kind).any(0).nonzero().flatten()
        height = int(rows[-1] - rows[0] + 1)
        width = int(cols[-1] - cols[0] + 1)
        fill = int((mask == kind).sum()) / (height * width)
        expected = {1: math.pi / 4, 2: 1.0, 3: 0.5}[kind]
        assert abs(fill - expected) < 0.2, (kind, fill)
        assert height == width  # circles, squares and triangles fit a square box


def test_shapes_are_deterministic_in_the_seed():
    first = load_data(tdsl.load(unet(SHAPES))).train
    again = load_data(tdsl.load(unet(SHAPES))).train
    other = load_data(tdsl.load(unet(SHAPES, seed=1))).train
    assert torch.equal(first.features[0], again.features[0])
    assert torch.equal(first.target, again.target)
    assert not torch.equal(first.target, other.target)


def test_rgb_shapes_have_three_channels():
    data = "{kind: shapes, n: 16, size: [16, 24], mode: rgb}"
    rows = load_data(tdsl.load(unet(data, size=(16, 24), channels=3))).train
    assert rows.features[0].shape[1:] == (3, 16, 24)
    assert rows.target.shape[1:] == (16, 24)


def test_shapes_size_must_be_two_sides_of_eight_pixels_or_more():
    message = errors(unet("{kind: shapes, n: 16, size: [4, 16]}"))[0]
    assert message.startswith("data.size: must be at least 8 pixels a side (got [4, 16])")
    message = errors(unet("{kind: shapes, n: 16, size: [16, 16, 16]}"))[0]
    assert message.startswith("data.size: must be [height, width] (got [16, 16, 16])")


def test_a_model_with_too_few_classes_is_located():
    (message,) = errors(unet(SHAPES, classes=3))
    assert "over 4 classes" in message and "[B, 3, 16, 16]" in message


def test_a_unet_learns_the_shapes_per_pixel(tmp_path):
    spec = tdsl.load(unet("{kind: shapes, n: 160, size: [16, 16], noise: 0.05}"))
    spec = attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=2))
    _, result = run(spec, tmp_path / "run")
    first, last = result.history[0], result.history[-1]
    assert last["val_loss"] < first["val_loss"]
    assert last["val_mean_iou"] > first["val_mean_iou"]


@pytest.fixture(autouse=True)
def _fresh_data():
    yield
    tdsl.data.clear_cache()


# --- kind: segmentation (image and mask folders) ---------------------------------------------

Image = pytest.importorskip("PIL.Image", reason="reading images needs Pillow")


def _pair(folder: Path, name: str, mask: np.ndarray, suffix: str = ".png") -> None:
    """An image whose brightness is its mask's ids (so alignment is visible) and the mask."""
    pixels = (mask * 60).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels, "L").save(folder / "images" / f"{name}{suffix}")
    Image.fromarray(mask.astype(np.uint8), "L").save(folder / "masks" / f"{name}.png")


def _mask(seed: int, size: int = 12, classes: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), dtype=np.int64)
    top, left = rng.integers(0, size // 2, size=2)
    mask[top : top + size // 2, left : left + size // 3] = rng.integers(1, classes)
    return mask


@pytest.fixture
def folders(tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for i in range(10):
        _pair(tmp_path, f"img{i}", _mask(i), ".jpg" if i == 0 else ".png")
    return tmp_path


def masks_spec(folder: Path, extra: str = "", loss: str = "cross_entropy") -> str:
    data = (
        f"{{kind: segmentation, folder: {folder / 'images'}, masks: {folder / 'masks'}, "
        f"num_classes: 3, size: [12, 12], mode: gray, workers: 0{extra}}}"
    )
    return unet(data, size=(12, 12), classes=3, loss=loss)


def test_mask_folders_pair_images_with_masks_by_name(folders):
    report = tdsl.validate(masks_spec(folders))
    assert report.ok, report.format()
    splits = load_data(tdsl.load(masks_spec(folders)))
    assert len(splits.train) == 8 and len(splits.val) == 2
    batch = next(iter(splits.train.batches(16)))
    x, y = batch.features[0], batch.target
    assert x.shape == (8, 1, 12, 12) and y.shape == (8, 12, 12) and y.dtype == torch.int64
    # Each image's brightness is its mask's ids: the rows are paired.
    assert torch.equal((x[:, 0] * 255 / 60).round().long(), y)


def test_flip_and_crop_move_an_image_and_its_mask_together(folders):
    spec = tdsl.load(masks_spec(folders, ", random_flip: true, random_crop: 3"))
    train = load_data(spec).train
    plain = torch.cat([b.target for b in train.batches(4)])
    changed = 0
    for seed in range(4):
        targets = []
        for batch in train.batches(4, order_seed=seed):
            x, y = batch.features[0], batch.target
            assert torch.equal((x[:, 0] * 255 / 60).round().long(), y)
            targets.append(y)
        # A crop shifts labelled pixels out of the image: the counts change.
        changed += int((torch.cat(targets) > 0).sum() != (plain > 0).sum())
    assert changed


def test_augment_pair_draws_one_flip_and_crop_for_both():
    pixels = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    mask = np.arange(5 * 6).reshape(5, 6)
    seen = set()
    for seed in range(20):
        rng = np.random.default_rng(seed)
        out, out_mask = augment_pair(pixels, mask, True, 2, 255, rng)
        assert out.shape == pixels.shape and out_mask.shape == mask.shape
        padded = out_mask == 255
        assert (out[:, padded] == 0).all()  # padding lies at the same pixels in both
        assert np.array_equal(out[0][~padded], pixels[0].reshape(-1)[out_mask[~padded]])
        seen.add(out_mask.tobytes())
    assert len(seen) > 5  # the draws differ


def test_a_mask_missing_for_an_image_is_named(folders):
    (folders / "masks" / "img3.png").unlink()
    (folders / "masks" / "stray.png").write_bytes((folders / "masks" / "img4.png").read_bytes())
    first, second = sorted(errors(masks_spec(folders)))
    assert first == "data.folder: mask stray.png has no image of the same name (None)"
    assert second == (
        "data.masks: image img3.png has no mask of the same name (masks are PNGs named as "
        "their images: img3.png)"
    )


def test_two_images_of_one_name_are_refused(folders):
    (folders / "images" / "img2.jpg").write_bytes((folders / "images" / "img0.jpg").read_bytes())
    (message,) = errors(masks_spec(folders))
    assert message.startswith(
        "data.folder: img2.jpg and img2.png have the same name: a mask pairs with one image"
    )


def test_a_mask_of_another_size_is_named(folders):
    small = np.zeros((6, 12), dtype=np.uint8)
    Image.fromarray(small, "L").save(folders / "masks" / "img5.png")
    (message,) = errors(masks_spec(folders))
    assert message.startswith(
        "data.masks: mask img5.png is 12x6, its image img5.png is 12x12 (width x height)"
    )


def test_class_ids_beyond_num_classes_are_named_unless_ignored(folders):
    mask = _mask(7)
    mask[0, 0] = 255
    _pair(folders, "img7", mask)
    (message,) = errors(masks_spec(folders))
    assert message.startswith(
        "data.num_classes: mask img7.png has pixel values [255], but class ids are 0..2"
    )
    ignored = ", ignore_index: 255"
    loss = "{kind: cross_entropy, ignore_index: 255}"
    assert tdsl.validate(masks_spec(folders, ignored, loss=loss)).ok
    (message,) = errors(masks_spec(folders, ignored))
    assert message.startswith(
        "loss.kind: the masks mark unlabelled pixels with 255 (data.ignore_index), but "
        "ignore_index -100 does not skip them"
    )


def test_a_unet_trains_on_mask_folders_with_ignored_pixels(folders, tmp_path):
    mask = _mask(7)
    mask[:2] = 255
    _pair(folders, "img7", mask)
    extra = ", ignore_index: 255, random_flip: true"
    spec = tdsl.load(masks_spec(folders, extra, "{kind: cross_entropy, ignore_index: 255}"))
    directory, result = run(spec, tmp_path / "run")
    last = result.history[-1]
    assert all(value == value for value in last.values()), last  # no NaN
    # Prediction reads images alone, as the run's source decodes them.
    out = tmp_path / "masks.npy"
    assert predict_run(directory, folders / "images", out) == 10
    assert np.load(out).shape == (10, 3, 12, 12)
