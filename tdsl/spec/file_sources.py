"""The data sources read from files: named arrays, CSV and Parquet tables with their
columns and targets, image folders, labelled texts and time series. Paths (fields marked
PATH) are relative to the spec file."""

from typing import Any, Literal

from attrs import field, frozen

from tdsl.spec.data_section import PATH, Split, TargetKind
from tdsl.spec.frozen import FrozenMap, freeze
from tdsl.spec.origins import Recorded
from tdsl.spec.values import (
    as_float,
    as_floats,
    as_tuple,
    each_positive,
    non_empty,
    non_negative,
    positive,
)


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
