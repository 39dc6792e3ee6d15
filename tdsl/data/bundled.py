"""Data sets that ship inside the scikit-learn wheel (`kind: sklearn`): real data with no
download, such as the 8x8 handwritten digits the seeds' MNIST chapter stands in for.

scikit-learn is an optional extra (`pip install scikit-learn`); without it the source
reports a located problem instead of failing on import. The rows are split with the spec's
seed like every other source; nothing is fitted.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math

import attrs
import numpy as np
import torch

from tdsl import spec as S
from tdsl.data.base import Context, DataError, DataSignature, FeatureInfo, Problems
from tdsl.data.labels import float_dtype
from tdsl.data.tensors import Splits, TensorData, split_index, split_rows, split_sizes
from tdsl.wording import file_reason, install_hint

INSTALL_HINT = install_hint("scikit-learn", "sklearn")


@attrs.frozen
class DatasetInfo:
    loader: str  # the function in sklearn.datasets
    features: int  # values per row
    class_sizes: tuple[int, ...]  # rows per label, as scikit-learn ships the data set
    binary: bool = False

    @property
    def classes(self) -> int:
        return len(self.class_sizes)


# The class sizes make validation's row counts exact without importing scikit-learn
# (over a second); a test checks them against the data sets.
DATASETS = {
    "digits": DatasetInfo("load_digits", 64, (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)),
    "iris": DatasetInfo("load_iris", 4, (50, 50, 50)),
    "wine": DatasetInfo("load_wine", 13, (59, 71, 48)),
    "breast_cancer": DatasetInfo("load_breast_cancer", 30, (212, 357), binary=True),
}


def sklearn_available() -> bool:
    return importlib.util.find_spec("sklearn") is not None


def declared_target(source: S.Bundled) -> S.Target:
    """The target, known from the data set's name alone."""
    info = DATASETS[source.dataset]
    if info.binary:
        return S.Target(kind="binary")
    if source.relabel and _relabel_ok(source):
        return S.Target(kind="class", num_classes=max(source.relabel) + 1)
    return S.Target(kind="class", num_classes=info.classes)


def _relabel_ok(source: S.Bundled) -> bool:
    info = DATASETS[source.dataset]
    # New classes stay within the data set's own count: a larger label would only add
    # empty classes (and a huge one an enormous output layer).
    return len(source.relabel) == info.classes and all(
        0 <= label < info.classes for label in source.relabel
    )


def _feature_shape(source: S.Bundled) -> tuple[int, ...]:
    return tuple(source.shape) or (DATASETS[source.dataset].features,)


def static_problems(source: S.Bundled, problems: Problems) -> None:
    info = DATASETS[source.dataset]
    if source.shape and math.prod(source.shape) != info.features:
        hint = "e.g. shape: [1, 8, 8]" if source.dataset == "digits" else None
        problems.add(
            ("shape",),
            f"{source.dataset} rows have {info.features} values; shape {list(source.shape)} "
            f"holds {math.prod(source.shape)}",
            hint,
        )
    if source.relabel and info.binary:
        problems.add(("relabel",), f"{source.dataset} is binary; relabel is for class data sets")
    elif source.relabel and not _relabel_ok(source):
        problems.add(
            ("relabel",),
            f"relabel needs a class from 0 to {info.classes - 1} for each of the "
            f"{info.classes} classes of {source.dataset} (got {list(source.relabel)})",
        )
    if not sklearn_available():
        problems.add(
            ("kind",),
            "the sklearn data sets need scikit-learn, which is not installed",
            INSTALL_HINT,
        )


@functools.lru_cache(maxsize=len(DATASETS))
def _load(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, F] float64, labels [N] int) as scikit-learn ships them."""
    try:
        datasets = importlib.import_module("sklearn.datasets")
        x, y = getattr(datasets, DATASETS[dataset].loader)(return_X_y=True)
    except (ImportError, OSError) as exc:  # a broken install: say so in one line
        raise DataError.at(
            ("dataset",),
            f"cannot load {dataset} from scikit-learn: {file_reason(exc)}",
            INSTALL_HINT,
        ) from None
    return np.asarray(x), np.asarray(y)


def signature(source: S.Bundled, ctx: Context) -> DataSignature:
    """What `prepare` says the data yields (features, target, rows per split), from the
    data set's known sizes: nothing is loaded. Raises DataError as `prepare` does."""
    problems = Problems()
    static_problems(source, problems)
    problems.check()
    sizes = DATASETS[source.dataset].class_sizes
    classes = sizes if source.split.stratify else None
    found = split_sizes(sum(sizes), source.split, classes=classes)
    counts = {name: rows for name, rows in found.items() if name == "train" or rows}
    feature = FeatureInfo(_feature_shape(source), str(float_dtype(ctx)).removeprefix("torch."))
    return DataSignature((feature,), declared_target(source), counts)


def prepare(source: S.Bundled, ctx: Context, _fitted: object = None):
    problems = Problems()
    static_problems(source, problems)
    problems.check()
    x, y = _load(source.dataset)
    shape = _feature_shape(source)
    dtype = float_dtype(ctx)
    features = torch.from_numpy(x).to(dtype).reshape(len(x), *shape)
    labels = torch.from_numpy(y).long()
    target = labels.float().reshape(-1, 1) if DATASETS[source.dataset].binary else labels
    if source.relabel:
        target = torch.tensor(source.relabel)[labels]
    strata = labels if source.split.stratify else None
    generator = torch.Generator().manual_seed(ctx.seed)
    index = split_index(len(labels), source.split, generator, strata)
    train, val, test = split_rows(TensorData((features,), target), index)
    counts = {
        name: len(rows)
        for name, rows in (("train", train), ("val", val), ("test", test))
        if rows is not None
    }
    feature = FeatureInfo(shape, str(dtype).removeprefix("torch."))
    return Splits(train, val, test), DataSignature((feature,), declared_target(source), counts)
