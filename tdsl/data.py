"""Data sources -> in-memory tensor splits, and the fast batching path over them.

Everything here is generated from the spec's seed with a private generator, so the same
spec gives the same data and, per epoch, the same batch order — which is what lets a
resumed run replay exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import attrs
import torch

from tdsl import spec as S
from tdsl.build import DTYPES


@attrs.frozen
class Batch:
    features: tuple[torch.Tensor, ...]
    target: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.target.shape[0])

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        return Batch(
            tuple(f.to(device, non_blocking=non_blocking) for f in self.features),
            self.target.to(device, non_blocking=non_blocking),
        )


@attrs.frozen
class TensorData:
    """Rows held in memory: one permutation per epoch, batches by index_select."""

    features: tuple[torch.Tensor, ...]
    target: torch.Tensor

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def num_batches(self, batch_size: int) -> int:
        return math.ceil(len(self) / batch_size)

    def batches(self, batch_size: int, order_seed: int | None = None) -> Iterator[Batch]:
        """Batches in row order, or shuffled by a permutation drawn from `order_seed`."""
        n = len(self)
        if order_seed is None:
            for start in range(0, n, batch_size):
                end = min(start + batch_size, n)
                yield Batch(tuple(f[start:end] for f in self.features), self.target[start:end])
            return
        generator = torch.Generator().manual_seed(order_seed)
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            yield Batch(
                tuple(f.index_select(0, index) for f in self.features),
                self.target.index_select(0, index),
            )

    def subset(self, index: torch.Tensor) -> TensorData:
        return TensorData(tuple(f[index] for f in self.features), self.target[index])

    def to(self, device: torch.device) -> TensorData:
        return TensorData(tuple(f.to(device) for f in self.features), self.target.to(device))


@attrs.frozen
class Splits:
    train: TensorData
    val: TensorData | None
    test: TensorData | None


def _linear_regression(data: S.LinearRegression, g: torch.Generator):
    weights = torch.tensor(data.weights).reshape(-1, 1)
    x = data.low + (data.high - data.low) * torch.rand(data.n, len(data.weights), generator=g)
    y = x @ weights + data.bias + data.noise * torch.randn(data.n, 1, generator=g)
    return (x,), y


def _rings(data: S.Rings, g: torch.Generator):
    def ring(n: int, radius: float) -> torch.Tensor:
        r = radius + data.noise * torch.randn(n, 1, generator=g)
        theta = 2 * math.pi * torch.rand(n, 1, generator=g)
        return torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=1)

    x = torch.cat([ring(data.n_positive, data.r_positive), ring(data.n_negative, data.r_negative)])
    y = torch.cat([torch.ones(data.n_positive, 1), torch.zeros(data.n_negative, 1)])
    return (x,), y


def _random(data: S.RandomData, model: S.Model, g: torch.Generator):
    """Features like the model's inputs; targets from a fixed random linear teacher, so the
    task is learnable and a run shows its loss going down."""
    features = []
    for item in model.inputs:
        dtype = DTYPES[item.dtype]
        if dtype.is_floating_point:
            features.append(torch.randn(data.n, *item.shape, generator=g).to(dtype))
        else:
            features.append(torch.randint(0, data.int_high, (data.n, *item.shape), generator=g))
    flat = torch.cat([f.reshape(data.n, -1).float() for f in features], dim=1)
    flat = (flat - flat.mean(0)) / flat.std(0).clamp(min=1e-6)
    target = data.target
    width = target.num_classes if target.kind == "class" else math.prod(target.shape)
    teacher = torch.randn(flat.shape[1], width, generator=g) / math.sqrt(flat.shape[1])
    scores = flat @ teacher
    if target.kind == "class":
        return tuple(features), scores.argmax(dim=1)
    if target.kind == "binary":
        return tuple(features), (scores > 0).float().reshape(data.n, *target.shape)
    return tuple(features), scores.reshape(data.n, *target.shape)


def load_data(spec: S.Spec) -> Splits:
    """Generate the spec's data and split it with a seeded permutation."""
    generator = torch.Generator().manual_seed(spec.seed)
    data = spec.data
    if isinstance(data, S.LinearRegression):
        features, target = _linear_regression(data, generator)
    elif isinstance(data, S.Rings):
        features, target = _rings(data, generator)
    else:
        features, target = _random(data, spec.model, generator)
    rows = TensorData(features, target)
    order = torch.randperm(len(rows), generator=generator)
    n_train = round(data.split.train * len(rows))
    n_val = round(data.split.val * len(rows))
    val = rows.subset(order[n_train : n_train + n_val]) if n_val else None
    test_index = order[n_train + n_val :]
    test = rows.subset(test_index) if data.split.test and len(test_index) else None
    return Splits(rows.subset(order[:n_train]), val, test)
