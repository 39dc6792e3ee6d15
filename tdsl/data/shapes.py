"""Generated shapes on noise with a class per pixel, for training a segmentation model
without downloading anything.

Each image holds `shapes_per_image` shapes, each a circle, an axis-aligned square or an
upward triangle of random size and place, filled with a random brightness (gray) or colour
(rgb) between 0.5 and 1 over a background of 0, then Gaussian noise of std `noise` on every
pixel. The mask names each pixel's class (0 background, 1 circle, 2 square, 3 triangle);
where shapes overlap, the later one is on top in both the image and the mask. The classes
differ by outline only, so brightness tells the model nothing. Like the other generated
sources (`synthetic`), validation knows the rows from the spec alone: nothing is drawn.
"""

from __future__ import annotations

import torch

from tdsl import spec as S
from tdsl.data.base import DataSignature, FeatureInfo, Problems

CLASSES = ("background", "circle", "square", "triangle")
MIN_SIDE = 8  # smaller images leave no room for a recognizable shape
CHUNK = 512  # images drawn at once: bounds the [chunk, shapes, H, W] masks in memory


def channels(source: S.Shapes) -> int:
    return 3 if source.mode == "rgb" else 1


def static_problems(source: S.Shapes, problems: Problems) -> None:
    if len(source.size) != 2:
        problems.add(("size",), f"must be [height, width] (got {list(source.size)})")
    elif min(source.size) < MIN_SIDE:
        problems.add(
            ("size",), f"must be at least {MIN_SIDE} pixels a side (got {list(source.size)})"
        )
    if source.split.stratify:
        problems.add(("split", "stratify"), "does not apply to shapes", "remove stratify")


def _outlines(kind: torch.Tensor, cy, cx, r, ys, xs) -> torch.Tensor:
    """[n, k, H, W] booleans: the pixels inside each shape (kind 1 circle, 2 square, 3
    triangle with its apex up), centres (cy, cx) and half-size r of shape [n, k, 1, 1]."""
    dy, dx = ys - cy, xs - cx
    circle = dy * dy + dx * dx <= r * r
    square = (dy.abs() <= r) & (dx.abs() <= r)
    # The apex at (cy - r, cx), the base on row cy + r with half-width r.
    triangle = (dy >= -r) & (dy <= r) & (2 * dx.abs() <= dy + r)
    return torch.where(kind == 1, circle, torch.where(kind == 2, square, triangle))


def draw(source: S.Shapes, count: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` images [count, C, H, W] float32 and masks [count, H, W] int64, drawn with `g`."""
    h, w = source.size
    k, c = source.shapes_per_image, channels(source)
    side = min(h, w)
    kind = torch.randint(1, len(CLASSES), (count, k, 1, 1), generator=g)
    r = torch.randint(max(2, side // 10), max(3, side // 4) + 1, (count, k, 1, 1), generator=g)
    # Centres at least r from the border, so every shape is whole.
    cy = r + (torch.rand(count, k, 1, 1, generator=g) * (h - 2 * r)).floor()
    cx = r + (torch.rand(count, k, 1, 1, generator=g) * (w - 2 * r)).floor()
    fill = 0.5 + 0.5 * torch.rand(count, k, c, generator=g)
    noise = torch.randn(count, c, h, w, generator=g) * source.noise
    ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    inside = _outlines(kind, cy, cx, r.float(), ys, xs)
    masks = torch.zeros(count, h, w, dtype=torch.int64)
    images = torch.zeros(count, c, h, w)
    for j in range(k):  # in order, so a later shape covers an earlier one
        where = inside[:, j]
        masks = torch.where(where, kind[:, j], masks)
        images = torch.where(where[:, None], fill[:, j, :, None, None], images)
    return images + noise, masks


def generate(source: S.Shapes, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [draw(source, min(CHUNK, source.n - i), g) for i in range(0, source.n, CHUNK)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def rows(source: S.Shapes, g: torch.Generator, _ctx: object = None):
    """((images,), masks): the generator `tdsl.data.synthetic` calls."""
    images, masks = generate(source, g)
    return (images,), masks


def signature(source: S.Shapes, counts: dict[str, int]) -> DataSignature:
    feature = FeatureInfo((channels(source), *source.size), "float32")
    return DataSignature((feature,), declared_target(source), counts)


def declared_target(source: S.Shapes) -> S.Target:
    return S.Target(kind="class", num_classes=len(CLASSES), shape=tuple(source.size))
