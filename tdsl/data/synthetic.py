"""Generated data: linear regression, two rings, random rows shaped like the model's inputs,
a classification teacher for benchmarks, and shapes to segment (`shapes`).

Everything is drawn from the spec's seed with a private generator, so the same spec gives
the same rows and the same split.
"""

from __future__ import annotations

import math

import torch

from tdsl import spec as S
from tdsl.data import shapes
from tdsl.data.base import Context, DataSignature, FeatureInfo, Problem, Problems
from tdsl.data.tensors import Splits, TensorData, split_index, split_rows, split_sizes
from tdsl.registry.ops import DTYPES

Generated = tuple[tuple[torch.Tensor, ...], torch.Tensor]


def _linear_regression(data: S.LinearRegression, g: torch.Generator, _ctx: Context) -> Generated:
    weights = torch.tensor(data.weights).reshape(-1, 1)
    x = data.low + (data.high - data.low) * torch.rand(data.n, len(data.weights), generator=g)
    y = x @ weights + data.bias + data.noise * torch.randn(data.n, 1, generator=g)
    return (x,), y


def _rings(data: S.Rings, g: torch.Generator, _ctx: Context) -> Generated:
    def ring(n: int, radius: float) -> torch.Tensor:
        r = radius + data.noise * torch.randn(n, 1, generator=g)
        theta = 2 * math.pi * torch.rand(n, 1, generator=g)
        return torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=1)

    x = torch.cat([ring(data.n_positive, data.r_positive), ring(data.n_negative, data.r_negative)])
    y = torch.cat([torch.ones(data.n_positive, 1), torch.zeros(data.n_negative, 1)])
    return (x,), y


def _random(data: S.RandomData, g: torch.Generator, ctx: Context) -> Generated:
    """Features like the model's inputs; targets from a fixed random linear teacher, so the
    task is learnable and a run shows its loss going down."""
    features = []
    for item in ctx.inputs:
        dtype = DTYPES[item.dtype]
        if dtype.is_floating_point:
            features.append(torch.randn(data.n, *item.shape, generator=g).to(dtype))
        else:
            features.append(torch.randint(0, data.int_high, (data.n, *item.shape), generator=g))
    flat = torch.cat([f.reshape(data.n, -1).float() for f in features], dim=1)
    flat = (flat - flat.mean(0)) / flat.std(0).clamp(min=1e-6)
    target = data.target
    cells = math.prod(target.shape)
    width = target.num_classes * cells if target.kind == "class" else cells
    teacher = torch.randn(flat.shape[1], width, generator=g) / math.sqrt(flat.shape[1])
    scores = flat @ teacher
    if target.kind == "class" and tuple(target.shape) == (1,):
        return tuple(features), scores.argmax(dim=1)  # a class per row
    if target.kind == "class":  # a class per position (`shape: [T]`), as the data declares
        per_cell = scores.reshape(data.n, *target.shape, target.num_classes)
        return tuple(features), per_cell.argmax(dim=-1)
    if target.kind == "binary":
        return tuple(features), (scores > 0).float().reshape(data.n, *target.shape)
    return tuple(features), scores.reshape(data.n, *target.shape)


def _teacher(data: S.Teacher, g: torch.Generator, _ctx: Context) -> Generated:
    """x ~ N(0, 1); labels: argmax of a random tanh network of x, some replaced at random."""
    x = torch.randn(data.n, data.features, generator=g)
    w1 = torch.randn(data.features, data.hidden, generator=g) / math.sqrt(data.features)
    w2 = torch.randn(data.hidden, data.num_classes, generator=g) / math.sqrt(data.hidden)
    y = (torch.tanh(x @ w1) @ w2).argmax(dim=1)
    if data.label_noise > 0:
        flip = torch.rand(data.n, generator=g) < data.label_noise
        noise = torch.randint(0, data.num_classes, (data.n,), generator=g)
        y = torch.where(flip, noise, y)
    return (x,), y


GENERATORS = {
    S.LinearRegression: _linear_regression,
    S.Rings: _rings,
    S.RandomData: _random,
    S.Teacher: _teacher,
    S.Shapes: shapes.rows,
}


def problems(data: S.DataSource) -> list[Problem]:
    """What makes a generated source impossible to draw, found from the spec alone."""
    found = Problems()
    if isinstance(data, S.Shapes):
        shapes.static_problems(data, found)
    return found.items


def prepare(data: S.DataSource, ctx: Context, _fitted: object = None) -> Splits:
    """Generate the rows and split them with a seeded permutation."""
    found = Problems()
    found.items.extend(problems(data))
    found.check()
    generator = torch.Generator().manual_seed(ctx.seed)
    features, target = GENERATORS[type(data)](data, generator, ctx)
    rows = TensorData(features, target)
    strata = target.reshape(len(rows), -1)[:, 0].long() if data.split.stratify else None
    index = split_index(len(rows), data.split, generator, strata)
    return Splits(*split_rows(rows, index))


def rows(data: S.DataSource) -> int:
    if isinstance(data, S.Rings):
        return data.n_positive + data.n_negative
    return data.n


def signature(data: S.DataSource, ctx: Context | None = None) -> DataSignature:
    """Known from the spec alone: nothing is generated. A stratified split of labels drawn
    at random (teacher, random) is counted as unstratified: within a row per class."""
    classes = None
    if isinstance(data, S.Rings) and data.split.stratify:
        classes = (data.n_positive, data.n_negative)
    counts = split_sizes(rows(data), data.split, classes=classes)
    if isinstance(data, S.LinearRegression):
        return DataSignature(
            (FeatureInfo((len(data.weights),), "float32"),), S.Target(kind="regression"), counts
        )
    if isinstance(data, S.Rings):
        return DataSignature((FeatureInfo((2,), "float32"),), S.Target(kind="binary"), counts)
    if isinstance(data, S.Shapes):
        return shapes.signature(data, counts)
    if isinstance(data, S.Teacher):
        target = S.Target(kind="class", num_classes=data.num_classes)
        return DataSignature((FeatureInfo((data.features,), "float32"),), target, counts)
    # Random features follow the model's inputs (unknown without a model).
    inputs = ctx.inputs if ctx is not None else ()
    features = tuple(FeatureInfo(tuple(i.shape), i.dtype) for i in inputs) or None
    return DataSignature(features, data.target, counts, id_limit=data.int_high)
