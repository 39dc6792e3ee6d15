"""Data sources -> splits of rows, the fast batching path over them, and fitted transforms.

`load_data(spec)` reads (or generates) the spec's data, splits it with the spec's seed, fits
the source's transforms on the training rows and returns `Splits`; `load_data(spec, fitted)`
re-applies transforms fitted before (a run directory's `transforms.json`) instead.
`data_signature(spec)` says what the data yields, for validation. Paths in a spec resolve
relative to the spec file (the current folder for a spec built in Python).

Modules: `tensors` (Batch, TensorData, splits), `streaming` (file-backed rows through
DataLoader workers), `synthetic`, `files` (.npz/.pt/.npy), `table` (CSV), `images`, `text`,
`timeseries`, `text_lm` and `addition` (language-model tasks; their tokens: `vocabulary`;
text ids made vectorized: `token_ids`, and kept in a run's `data_cache/`: `token_cache`),
`shapes` and `masks` (segmentation: generated, and image folders with mask folders),
`bundled` (scikit-learn's data sets), `imported` (arrays from user code), `labels` (targets
from text), `csvfile`, `fitted`, `checks` (validation).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

from tdsl import spec as S
from tdsl.data import (
    addition,
    arrays,
    bundled,
    files,
    images,
    imported,
    masks,
    synthetic,
    table,
    text,
    text_lm,
    timeseries,
    token_cache,
)
from tdsl.data.arrays import stored_spec
from tdsl.data.base import (
    Context,
    DataError,
    DataSignature,
    FeatureInfo,
    Problems,
    context,
    path_fields,
    resolve_path,
    spec_base,
    stamp,
)
from tdsl.data.base import with_absolute_paths as _absolute_paths
from tdsl.data.column_inference import expand_spec
from tdsl.data.data_root import HINT as DATA_ROOT_HINT
from tdsl.data.data_root import accepts_data_root, data_root, outside, outside_message
from tdsl.data.fitted import FILE_NAME as FITTED_FILE
from tdsl.data.fitted import Fitted, tampered_guard
from tdsl.data.recorded import recorded
from tdsl.data.streaming import FileData
from tdsl.data.tensors import Batch, Splits, TensorData
from tdsl.spec.frozen import FrozenMap

__all__ = [
    "Batch",
    "Context",
    "DataError",
    "DataSignature",
    "FeatureInfo",
    "FileData",
    "FITTED_FILE",
    "Fitted",
    "Splits",
    "TensorData",
    "clear_cache",
    "data_root",
    "data_signature",
    "load_data",
    "read_input",
    "read_input_groups",
    "resolve_path",
    "spec_base",
    "stored_spec",
    "train_rows",
    "with_absolute_paths",
]

# File sources: modules with prepare(source, ctx, fitted) -> (Splits, DataSignature), and
# where prediction rows can come from a file of the source's own format, read_input.
FILE_SOURCES: dict[type, ModuleType] = {
    S.Tensors: files,
    S.Table: table,
    S.ParquetTable: table,
    S.ImageFolder: images,
    S.Text: text,
    S.TimeSeries: timeseries,
    S.Bundled: bundled,
    S.Arrays: arrays,  # in memory: nothing to read, but prepared once like a file
    S.TextLM: text_lm,
    S.Addition: addition,
    S.Segmentation: masks,
}


def is_synthetic(source: S.DataSource) -> bool:
    return type(source) in synthetic.GENERATORS


@functools.lru_cache(maxsize=4)
def _prepare_cached(source, ctx: Context, fitted: Fitted | None, _stamp: tuple, _cache):
    with tampered_guard(fitted):
        return FILE_SOURCES[type(source)].prepare(source, ctx, fitted)


TOKENIZED = (S.Text, S.TextLM)  # sources that use a run's token cache (data_cache/)


def clear_cache() -> None:
    """Forget prepared sources (they share their tensors with every `load_data` caller)."""
    _prepare_cached.cache_clear()
    imported.clear_cache()
    token_cache.forget_pending()


def prepare(
    source: S.DataSource,
    ctx: Context,
    fitted: Fitted | None = None,
    allow_imports: Sequence[str] = (),
):
    """(Splits, DataSignature) of a file source; raises `DataError`. Cached while the files
    are unchanged, so validating, compiling and loading read a file once. A `python` source's
    factory is imported only under the `allow_imports` prefixes."""
    if isinstance(source, S.PythonData):
        return imported.prepare(source, ctx, allow_imports)
    _refuse_outside_root(source, ctx)
    paths = [ctx.path(v) for k in path_fields(source) if (v := getattr(source, k)) is not None]
    # Under a run's token cache a text source is prepared through it (once per cache
    # folder), so the cache is read or filled; other sources ignore it.
    cache = token_cache.active() if isinstance(source, TOKENIZED) else None
    cache = None if cache is None else cache.folder
    return _prepare_cached(source, ctx, fitted, stamp(paths), cache)


def _refuse_outside_root(source: S.DataSource, ctx: Context) -> None:
    """With a data root set: each data path outside it, located at its field, before any
    file is read (`stamp` hashes small files)."""
    problems = Problems()
    for key in path_fields(source):
        value = getattr(source, key)
        if value is None:
            continue
        resolved = outside(resolve_path(ctx.base, value))
        if resolved is not None:
            problems.add((key,), outside_message(value, resolved), DATA_ROOT_HINT)
    problems.check()


def with_absolute_paths(spec: S.Spec) -> S.Spec:
    """The spec as a run directory keeps it: data paths absolute, so it means the same from
    any folder, and a CSV source's `columns: all` written out as the columns (and transforms)
    it stands for, so the run stays reproducible."""
    return expand_spec(_absolute_paths(spec))


@accepts_data_root
def load_data(
    spec: S.Spec, fitted: Fitted | None = None, allow_imports: Sequence[str] = ()
) -> Splits:
    """The spec's rows, split by its seed, with transforms fitted on the training rows — or
    the given `fitted` transforms re-applied. Raises `DataError` for data that cannot be
    read as the spec says. User code (`kind: python`) runs only under `allow_imports`.
    `data_root`: refuse data paths outside that folder."""
    ctx = context(spec)
    if is_synthetic(spec.data):
        return synthetic.prepare(spec.data, ctx)
    splits, _ = prepare(spec.data, ctx, fitted, allow_imports)
    return splits


def declared_target(source: S.DataSource) -> S.Target:
    """The target as the spec declares it, without reading anything."""
    if isinstance(source, S.TimeSeries):
        return S.Target(kind="regression", shape=(len(source.targets or source.columns),))
    if isinstance(source, S.Bundled):
        return bundled.declared_target(source)
    if isinstance(source, S.TextLM | S.Addition | S.Segmentation):
        return FILE_SOURCES[type(source)].declared_target(source)
    named = declared_targets(source)
    if named:
        return next(iter(named.values()))
    return S.Target(kind=source.target_kind, num_classes=getattr(source, "num_classes", None))


def declared_targets(source: S.DataSource) -> FrozenMap | None:
    """A source's named targets (`targets:`) as declared; None for one target."""
    named = getattr(source, "targets", None)
    if not named or not isinstance(named, FrozenMap):
        return None
    return FrozenMap(
        {name: S.Target(kind=t.kind, num_classes=t.num_classes) for name, t in named.items()}
    )


def data_signature(spec: S.Spec | S.DataSource, allow_imports: Sequence[str] = ()) -> DataSignature:
    """What the data yields. File sources are read (cheap for the files specs name, and
    cached); a source that cannot be read, or whose factory is not allowed, reports its
    declared target and unknown features. Given a bare source, relative paths start at the
    current folder. Never raises."""
    if isinstance(spec, S.Spec):
        source, ctx = spec.data, context(spec)
    else:
        source, ctx = spec, Context(Path("."))
    if is_synthetic(source):
        return synthetic.signature(source, ctx)
    found = recorded(source)  # a run's own data, as the run recorded it: nothing is read
    if found is not None:
        return found
    try:
        if isinstance(source, S.Bundled):  # known sizes: no scikit-learn import to validate
            return bundled.signature(source, ctx)
        return prepare(source, ctx, allow_imports=allow_imports)[1]
    except DataError:
        return DataSignature(None, declared_target(source), targets=declared_targets(source))


def train_rows(spec: S.Spec, allow_imports: Sequence[str] = ()) -> int:
    """How many training rows the spec's data has (steps per epoch follow from it)."""
    rows = data_signature(spec, allow_imports).rows or {}
    return rows.get("train", 0)


def read_input(spec: S.Spec, fitted: Fitted | None, path: Path) -> tuple[torch.Tensor, ...] | None:
    """Prediction rows from a file in the source's own format (a CSV without the target
    column, texts, a series, images), transformed with `fitted` (fitted now when None).
    None for plain arrays (.npy, .npz, .pt: rows as the model takes them) and for sources
    without a format of their own."""
    path = Path(path)
    reader = getattr(FILE_SOURCES.get(type(spec.data)), "read_input", None)
    if reader is None or path.suffix.lower() in PLAIN_ARRAYS:
        return None
    if fitted is None:
        fitted = load_data(spec).fitted
    with tampered_guard(fitted):
        return reader(spec.data, context(spec), fitted, path)


def read_input_groups(spec: S.Spec, fitted: Fitted | None, path: Path):
    """(rows, an iterator of each row group's features) for a Parquet input of a Parquet
    source that does not fit in memory (or `stream: always`); None: read it whole with
    `read_input`."""
    source = spec.data
    if not isinstance(source, S.Table) or source.kind != "parquet" or source.stream == "never":
        return None
    from tdsl.data.parquet_input import input_groups  # pyarrow: only for Parquet sources

    if fitted is None:
        fitted = load_data(spec).fitted
    with tampered_guard(fitted):
        return input_groups(source, context(spec), fitted, Path(path))


PLAIN_ARRAYS = (".npy", ".npz", ".pt")
