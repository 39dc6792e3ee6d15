"""The `data` section: one class per data source kind, and how rows are split."""

from typing import Any, Literal

from attrs import field, frozen

from tdsl.spec.frozen import FrozenMap, freeze
from tdsl.spec.origins import Recorded
from tdsl.spec.values import (
    as_float,
    as_floats,
    as_tuple,
    at_most_one,
    call_args,
    each_positive,
    finite,
    non_empty,
    non_negative,
    positive,
    row_count,
)

# --- data -----------------------------------------------------------------------------------
# Synthetic sources are generated from the spec's seed; file sources read paths relative to
# the spec file (fields marked PATH). Fitted transforms (statistics, categories, vocabularies)
# are fitted on the training split only.

PATH = {"path": True}
TargetKind = Literal["binary", "class", "regression"]


@frozen(kw_only=True)
class Split(Recorded):
    """Fractions of the rows per split, drawn with a seeded permutation. A split read from its
    own file (`val_file`, `test_file`) needs a non-zero fraction here; the main file's rows are
    then shared among the other splits in proportion to theirs."""

    train: float = field(converter=as_float, default=0.8, validator=[non_negative, at_most_one])
    val: float = field(converter=as_float, default=0.2, validator=[non_negative, at_most_one])
    test: float = field(converter=as_float, default=0.0, validator=[non_negative, at_most_one])
    # Keep each class's share of the rows in every split (binary and class targets).
    stratify: bool = False


@frozen(kw_only=True)
class Target(Recorded):
    kind: Literal["binary", "class", "regression"]
    num_classes: int | None = field(default=None, validator=positive)
    shape: tuple[int, ...] = field(default=(1,), converter=tuple)


@frozen(kw_only=True)
class LinearRegression(Recorded):
    """y = x @ weights + bias + N(0, noise); x uniform in [low, high)."""

    kind: Literal["linear_regression"] = "linear_regression"
    n: int = field(default=400, validator=row_count)
    weights: tuple[float, ...] = field(
        default=(2.0, -3.0), converter=as_floats, validator=non_empty
    )
    bias: float = field(default=10.0, converter=as_float, validator=finite)
    noise: float = field(converter=as_float, default=2.0, validator=non_negative)
    low: float = field(default=-5.0, converter=as_float, validator=finite)
    high: float = field(default=5.0, converter=as_float, validator=finite)
    split: Split = Split()


@frozen(kw_only=True)
class Rings(Recorded):
    """Two noisy concentric rings; the inner ring is the positive class."""

    kind: Literal["rings"] = "rings"
    n_positive: int = field(default=2000, validator=row_count)
    n_negative: int = field(default=2000, validator=row_count)
    r_positive: float = field(converter=as_float, default=5.0, validator=positive)
    r_negative: float = field(converter=as_float, default=8.0, validator=positive)
    noise: float = field(converter=as_float, default=1.0, validator=non_negative)
    split: Split = Split()


@frozen(kw_only=True)
class RandomData(Recorded):
    """Random features shaped like the model's inputs, with targets of a declared kind."""

    kind: Literal["random"] = "random"
    target: Target
    n: int = field(default=1000, validator=row_count)
    # Integer inputs (token ids) are drawn from [0, int_high).
    int_high: int = field(default=100, validator=positive)
    split: Split = Split()


@frozen(kw_only=True)
class Teacher(Recorded):
    """Gaussian features labelled by a fixed random two-layer network: a learnable
    classification task of any size, for benchmarks."""

    kind: Literal["teacher"] = "teacher"
    n: int = field(default=10_000, validator=row_count)
    features: int = field(default=32, validator=positive)
    num_classes: int = field(default=2, validator=positive)
    hidden: int = field(default=64, validator=positive)
    # Fraction of the labels replaced by random ones.
    label_noise: float = field(
        converter=as_float, default=0.0, validator=[non_negative, at_most_one]
    )
    split: Split = Split()


@frozen(kw_only=True)
class Tensors(Recorded):
    """Named arrays: an .npz or .pt file, or a folder of NAME.npy files (memory-mapped and
    read batch by batch, so a data set larger than memory trains)."""

    kind: Literal["tensors"] = "tensors"
    file: str = field(metadata=PATH)
    target_kind: TargetKind
    # Array names: one per model input, and the target's.
    features: tuple[str, ...] = field(default=("x",), converter=as_tuple, validator=non_empty)
    target: str = "y"
    # Class targets: default one more than the largest label.
    num_classes: int | None = field(default=None, validator=positive)
    val_file: str | None = field(default=None, metadata=PATH)
    test_file: str | None = field(default=None, metadata=PATH)
    # DataLoader worker processes for memory-mapped folders.
    workers: int = field(default=2, validator=non_negative)
    split: Split = Split()


# Column names may be written as numbers (`- 5`, `target: 4`): a header of numbers, or the
# positions 0, 1, ... of a file without one.
NAME = {"numbers_as_text": True}


@frozen(kw_only=True)
class Column(Recorded):
    """One CSV column as features. `passthrough`, `standardize` and `minmax` read numbers;
    `onehot` reads categories; `missing` gives only a 0/1 was-missing column."""

    name: str = field(metadata=NAME)
    transform: Literal["passthrough", "standardize", "minmax", "onehot", "missing"] = "passthrough"
    # Missing numbers become fill_value, or the training rows' mean or median.
    fill: Literal["value", "mean", "median"] | None = None
    fill_value: float = field(default=0.0, converter=as_float)
    # Add a 0/1 column: was the cell missing?
    indicator: bool = False
    # onehot: one more column for missing cells and categories the training rows lack.
    unknown: bool = False


def _columns(value: Any) -> tuple | str:
    """`"Fare"` is `Column(name="Fare")`, as `- Fare` is in YAML; `"all"` stays."""
    if value == "all":
        return value
    return tuple(Column(name=str(v)) if isinstance(v, str | int) else v for v in value)


@frozen(kw_only=True)
class TargetColumn(Recorded):
    """One of several named targets of a CSV: its column and kind."""

    column: str = field(metadata=NAME)
    kind: TargetKind
    num_classes: int | None = field(default=None, validator=positive)


@frozen(kw_only=True)
class Table(Recorded):
    """A CSV file: feature columns with per-column transforms, and a target. `columns: all`
    takes every column but the target and `exclude`, each as its cells say: numbers through
    `default_transform`, text one-hot (a run's spec.yaml lists what was chosen)."""

    kind: Literal["csv"] = "csv"
    file: str = field(metadata=PATH)
    columns: tuple[Column, ...] | Literal["all"] = field(converter=_columns, validator=non_empty)
    # The target column and its kind; class labels that are not integers are numbered in
    # sorted order.
    target: str | None = field(default=None, metadata=NAME)
    target_kind: TargetKind | None = None
    num_classes: int | None = field(default=None, validator=positive)
    # Several targets instead, by name (one value per row each): what `kind: outputs`
    # losses and metrics with `output:` read. `split.stratify` goes by the first.
    targets: dict[str, TargetColumn] = field(factory=FrozenMap, converter=freeze)
    # columns: all: the columns left out, and the transform of number columns.
    exclude: tuple[str, ...] = field(default=(), converter=as_tuple, metadata=NAME)
    default_transform: Literal["passthrough", "standardize", "minmax"] = "standardize"
    # Lines before anything else (a file's own preamble); is the next line a header; names
    # for the columns instead of the header's (default without a header: 0, 1, ...).
    skip_rows: int = field(default=0, validator=non_negative)
    header: bool = True
    names: tuple[str, ...] = field(default=(), converter=as_tuple, metadata=NAME)
    delimiter: str = ","
    # Cell texts that mean missing.
    missing: tuple[str, ...] = field(default=("", "NA", "NaN", "nan"), converter=as_tuple)
    val_file: str | None = field(default=None, metadata=PATH)
    test_file: str | None = field(default=None, metadata=PATH)
    split: Split = Split()


@frozen(kw_only=True)
class ParquetTable(Table):
    """Parquet: a `.parquet` file, or a folder of them read in name order, with the columns,
    targets, transforms and splits of a CSV source (the CSV layout keys do not apply).
    Columns are checked against the files' schemas without reading their rows."""

    kind: Literal["parquet"] = "parquet"
    # auto: read into memory when the rows fit, else stream them by row groups as batches
    # are drawn; always: stream; never: read into memory (refused when it would not fit).
    stream: Literal["auto", "always", "never"] = "auto"
    # DataLoader worker processes reading row groups when streamed.
    workers: int = field(default=2, validator=non_negative)


@frozen(kw_only=True)
class ImageFolder(Recorded):
    """One sub-folder of PNG/JPEG images per class, classes in sorted order (needs Pillow:
    `pip install pillow`)."""

    kind: Literal["images"] = "images"
    folder: str = field(metadata=PATH)
    # Every image is resized to [height, width].
    size: tuple[int, ...] = field(converter=tuple, validator=each_positive)
    mode: Literal["rgb", "gray"] = "rgb"
    target_kind: Literal["binary", "class"] = "class"
    # Per-channel normalization of pixels in [0, 1]: (x - mean) / std; empty: none.
    mean: tuple[float, ...] = field(default=(), converter=as_floats)
    std: tuple[float, ...] = field(default=(), converter=as_floats)
    # Augmentations of training rows: a random horizontal flip; a random crop after padding
    # by this many pixels.
    random_flip: bool = False
    random_crop: int = field(default=0, validator=non_negative)
    val_folder: str | None = field(default=None, metadata=PATH)
    test_folder: str | None = field(default=None, metadata=PATH)
    workers: int = field(default=2, validator=non_negative)
    split: Split = Split()


@frozen(kw_only=True)
class Text(Recorded):
    """Lines of `label<delimiter>text`, tokenized, as token ids padded or cut to `length`."""

    kind: Literal["text"] = "text"
    file: str = field(metadata=PATH)
    target_kind: Literal["binary", "class"] = "binary"
    num_classes: int | None = field(default=None, validator=positive)
    delimiter: str = "\t"
    # regex: the matches of `pattern`; whitespace: split on spaces.
    tokenizer: Literal["regex", "whitespace"] = "regex"
    pattern: str = r"\w+(?:'\w+)?"
    lowercase: bool = True
    # Ids 0..vocab_size-1, reserved ids included; the most frequent training tokens first.
    vocab_size: int = field(default=10_000, validator=positive)
    min_freq: int = field(default=1, validator=positive)
    length: int = field(default=200, validator=positive)
    pad_id: int = field(default=1, validator=non_negative)
    unknown_id: int = field(default=0, validator=non_negative)
    # pre: pad at the front and keep the last tokens (as the seeds do); post: the other end.
    padding: Literal["pre", "post"] = "pre"
    truncation: Literal["pre", "post"] = "pre"
    val_file: str | None = field(default=None, metadata=PATH)
    test_file: str | None = field(default=None, metadata=PATH)
    split: Split = Split()


@frozen(kw_only=True)
class TimeSeries(Recorded):
    """Sliding windows over numeric CSV columns in time order: `window` rows in, the row
    `horizon` steps after the window out. Splits are chronological: train first."""

    kind: Literal["timeseries"] = "timeseries"
    file: str = field(metadata=PATH)
    columns: tuple[str, ...] = field(converter=as_tuple, validator=non_empty)
    # The predicted columns; default: the input columns.
    targets: tuple[str, ...] = field(default=(), converter=as_tuple)
    window: int = field(default=8, validator=positive)
    horizon: int = field(default=1, validator=positive)
    stride: int = field(default=1, validator=positive)
    # Model the differences between consecutive rows (daily increments of cumulative counts).
    difference: bool = False
    delimiter: str = ","
    split: Split = Split()


@frozen(kw_only=True)
class Bundled(Recorded):
    """A data set that ships inside scikit-learn, so nothing is downloaded: `digits` (8x8
    images of handwritten digits, pixels 0-16, 10 classes), `iris` and `wine` (3 classes),
    `breast_cancer` (binary). Needs scikit-learn: `pip install scikit-learn`."""

    kind: Literal["sklearn"] = "sklearn"
    dataset: Literal["digits", "iris", "wine", "breast_cancer"]
    # Per-sample feature shape, e.g. [1, 8, 8] for the digits as one-channel images;
    # default: the flat feature vector.
    shape: tuple[int, ...] = field(default=(), converter=tuple, validator=each_positive)
    split: Split = Split()
    # A new class for each of the data set's classes, in order: digits odd/even is
    # [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]. The split stays the original classes' (stratified by them).
    relabel: tuple[int, ...] = field(default=(), converter=tuple)


@frozen(kw_only=True)
class PythonData(Recorded):
    """Arrays made by your own code: `factory` names a function by import path, imported
    only when its prefix is allowed (`--allow-import mylab`; `allow_imports=["mylab"]`).
    It is called with `args` as keywords, plus `seed=` the spec's seed when it has a `seed`
    parameter, and returns a mapping of named arrays (numpy arrays or tensors, one row per
    sample) or a `(features, target)` tuple, whose features are one array or a list."""

    kind: Literal["python"] = "python"
    # The function, by import path: `mylab.data.make` or `mylab.data:make`.
    factory: str
    target_kind: TargetKind
    # Keyword arguments for the factory (plain YAML values).
    args: FrozenMap = field(default=FrozenMap(), converter=lambda value: call_args(value, {}))
    # The arrays of a returned mapping: one per model input, and the target's.
    features: tuple[str, ...] = field(default=("x",), converter=as_tuple, validator=non_empty)
    target: str = "y"
    # Class targets: default one more than the largest label.
    num_classes: int | None = field(default=None, validator=positive)
    split: Split = Split()
