"""The spec language as frozen attrs classes.

Field names are the YAML keys. Classes whose op/loss/optimizer takes free keyword
arguments (`Layer`, `Loss`, `Optimizer`, `ParamGroup`, `Schedule`, `Metric`) keep them
in `args` and accept them as keywords: `Layer("linear", out_features=4)` is the YAML
`{op: linear, out_features: 4}`. Those arguments are checked against the op's signature
by the validation pass, not here. Change a spec with `attrs.evolve`.
"""

import math
from collections.abc import Mapping
from typing import Any, Literal

import attrs
from attrs import field, frozen

from tdsl.frozen import FrozenMap, freeze

# --- validators: local invariants, worded "must be ... (got ...)" --------------------------


INT64_MAX = 2**63 - 1
# Values per sample an input may declare: inference multiplies it by its batch of 7919 and
# must stay within int64, and no real sample is larger.
MAX_SAMPLE_VALUES = 2**40
# Seconds (about 116 days): more than any wait is worth, and within torch's millisecond count.
MAX_TIMEOUT = 1e7


def finite(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be finite (got {value!r})")
    if isinstance(value, int) and not isinstance(value, bool) and value > INT64_MAX:
        raise ValueError(f"must be at most 2**63 - 1 (got {value!r})")
    if isinstance(value, int) and not isinstance(value, bool) and value < -INT64_MAX - 1:
        raise ValueError(f"must be at least -2**63 (got {value!r})")


def _bound(op: str, limit: float):
    tests = {">": lambda v: v > limit, ">=": lambda v: v >= limit, "<=": lambda v: v <= limit}

    def check(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        finite(_instance, attribute, value)
        if value is not None and not tests[op](value):
            raise ValueError(f"must be {op} {limit:g} (got {value!r})")

    return check


positive = _bound(">", 0)
non_negative = _bound(">=", 0)
at_most_one = _bound("<=", 1)


def _non_empty(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value:
        raise ValueError("must not be empty")


def _each_positive(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    bad = [v for v in value if v <= 0]
    if bad:
        raise ValueError(f"sizes must be > 0 (got {list(value)!r})")
    if math.prod(value) > MAX_SAMPLE_VALUES:
        raise ValueError(f"too large: {math.prod(value)} values per sample (got {list(value)!r})")


def _float(value: Any) -> Any:
    """Ints given for float fields become floats, so `lr=1` and `lr: 1.0` are one spec."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _floats(value: Any) -> Any:
    return tuple(_float(v) for v in value)


def _args(value: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> FrozenMap:
    return freeze({**(value or {}), **kwargs})


def _tuple(value: Any) -> tuple:
    return (value,) if isinstance(value, str) else tuple(value)


# --- model ---------------------------------------------------------------------------------

DType = Literal["float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"]


@frozen(kw_only=True)
class Input:
    """A named model input; `shape` excludes the batch dimension."""

    shape: tuple[int, ...] = field(converter=tuple, validator=_each_positive)
    dtype: DType = "float32"
    name: str = "x"


@frozen(init=False)
class Layer:
    """One graph node. With no `inputs` it consumes the previous node (sequential form)."""

    op: str
    name: str | None = None
    inputs: tuple[str, ...] = ()
    args: FrozenMap = FrozenMap()

    def __init__(self, op: str, *, name: str | None = None, inputs: Any = (), args=None, **kw):
        self.__attrs_init__(op=op, name=name, inputs=_tuple(inputs), args=_args(args, kw))


@frozen(kw_only=True)
class Model:
    inputs: tuple[Input, ...] = field(converter=tuple, validator=_non_empty)
    layers: tuple[Layer, ...] = field(converter=tuple, validator=_non_empty)
    # Names of the nodes whose values the model returns; default: the last layer.
    outputs: tuple[str, ...] = field(default=(), converter=_tuple)


# --- data -----------------------------------------------------------------------------------
# Synthetic sources are generated from the spec's seed; file sources read paths relative to
# the spec file (fields marked PATH). Fitted transforms (statistics, categories, vocabularies)
# are fitted on the training split only.

PATH = {"path": True}
TargetKind = Literal["binary", "class", "regression"]


@frozen(kw_only=True)
class Split:
    """Fractions of the rows per split, drawn with a seeded permutation. A split read from its
    own file (`val_file`, `test_file`) needs a non-zero fraction here; the main file's rows are
    then shared among the other splits in proportion to theirs."""

    train: float = field(converter=_float, default=0.8, validator=[non_negative, at_most_one])
    val: float = field(converter=_float, default=0.2, validator=[non_negative, at_most_one])
    test: float = field(converter=_float, default=0.0, validator=[non_negative, at_most_one])
    # Keep each class's share of the rows in every split (binary and class targets).
    stratify: bool = False


@frozen(kw_only=True)
class Target:
    kind: Literal["binary", "class", "regression"]
    num_classes: int | None = field(default=None, validator=positive)
    shape: tuple[int, ...] = field(default=(1,), converter=tuple)


@frozen(kw_only=True)
class LinearRegression:
    """y = x @ weights + bias + N(0, noise); x uniform in [low, high)."""

    kind: Literal["linear_regression"] = "linear_regression"
    n: int = field(default=400, validator=positive)
    weights: tuple[float, ...] = field(default=(2.0, -3.0), converter=_floats, validator=_non_empty)
    bias: float = field(default=10.0, converter=_float, validator=finite)
    noise: float = field(converter=_float, default=2.0, validator=non_negative)
    low: float = field(default=-5.0, converter=_float, validator=finite)
    high: float = field(default=5.0, converter=_float, validator=finite)
    split: Split = Split()


@frozen(kw_only=True)
class Rings:
    """Two noisy concentric rings; the inner ring is the positive class."""

    kind: Literal["rings"] = "rings"
    n_positive: int = field(default=2000, validator=positive)
    n_negative: int = field(default=2000, validator=positive)
    r_positive: float = field(converter=_float, default=5.0, validator=positive)
    r_negative: float = field(converter=_float, default=8.0, validator=positive)
    noise: float = field(converter=_float, default=1.0, validator=non_negative)
    split: Split = Split()


@frozen(kw_only=True)
class RandomData:
    """Random features shaped like the model's inputs, with targets of a declared kind."""

    kind: Literal["random"] = "random"
    target: Target
    n: int = field(default=1000, validator=positive)
    # Integer inputs (token ids) are drawn from [0, int_high).
    int_high: int = field(default=100, validator=positive)
    split: Split = Split()


@frozen(kw_only=True)
class Teacher:
    """Gaussian features labelled by a fixed random two-layer network: a learnable
    classification task of any size, for benchmarks."""

    kind: Literal["teacher"] = "teacher"
    n: int = field(default=10_000, validator=positive)
    features: int = field(default=32, validator=positive)
    num_classes: int = field(default=2, validator=positive)
    hidden: int = field(default=64, validator=positive)
    # Fraction of the labels replaced by random ones.
    label_noise: float = field(converter=_float, default=0.0, validator=[non_negative, at_most_one])
    split: Split = Split()


@frozen(kw_only=True)
class Tensors:
    """Named arrays: an .npz or .pt file, or a folder of NAME.npy files (memory-mapped and
    read batch by batch, so a data set larger than memory trains)."""

    kind: Literal["tensors"] = "tensors"
    file: str = field(metadata=PATH)
    target_kind: TargetKind
    # Array names: one per model input, and the target's.
    features: tuple[str, ...] = field(default=("x",), converter=_tuple, validator=_non_empty)
    target: str = "y"
    # Class targets: default one more than the largest label.
    num_classes: int | None = field(default=None, validator=positive)
    val_file: str | None = field(default=None, metadata=PATH)
    test_file: str | None = field(default=None, metadata=PATH)
    # DataLoader worker processes for memory-mapped folders.
    workers: int = field(default=2, validator=non_negative)
    split: Split = Split()


@frozen(kw_only=True)
class Column:
    """One CSV column as features. `passthrough`, `standardize` and `minmax` read numbers;
    `onehot` reads categories; `missing` gives only a 0/1 was-missing column."""

    name: str
    transform: Literal["passthrough", "standardize", "minmax", "onehot", "missing"] = "passthrough"
    # Missing numbers become fill_value, or the training rows' mean or median.
    fill: Literal["value", "mean", "median"] | None = None
    fill_value: float = field(default=0.0, converter=_float)
    # Add a 0/1 column: was the cell missing?
    indicator: bool = False
    # onehot: one more column for missing cells and categories the training rows lack.
    unknown: bool = False


def _columns(value: Any) -> tuple:
    """`"Fare"` is `Column(name="Fare")`, as `- Fare` is in YAML."""
    return tuple(Column(name=v) if isinstance(v, str) else v for v in value)


@frozen(kw_only=True)
class Table:
    """A CSV file with a header: feature columns with per-column transforms, and a target."""

    kind: Literal["csv"] = "csv"
    file: str = field(metadata=PATH)
    columns: tuple[Column, ...] = field(converter=_columns, validator=_non_empty)
    # The target column and its kind; class labels that are not integers are numbered in
    # sorted order.
    target: str
    target_kind: TargetKind
    num_classes: int | None = field(default=None, validator=positive)
    delimiter: str = ","
    # Cell texts that mean missing.
    missing: tuple[str, ...] = field(default=("", "NA", "NaN", "nan"), converter=_tuple)
    val_file: str | None = field(default=None, metadata=PATH)
    test_file: str | None = field(default=None, metadata=PATH)
    split: Split = Split()


@frozen(kw_only=True)
class ImageFolder:
    """One sub-folder of PNG/JPEG images per class, classes in sorted order (needs Pillow:
    `pip install 'tdsl[images]'`)."""

    kind: Literal["images"] = "images"
    folder: str = field(metadata=PATH)
    # Every image is resized to [height, width].
    size: tuple[int, ...] = field(converter=tuple, validator=_each_positive)
    mode: Literal["rgb", "gray"] = "rgb"
    target_kind: Literal["binary", "class"] = "class"
    # Per-channel normalization of pixels in [0, 1]: (x - mean) / std; empty: none.
    mean: tuple[float, ...] = field(default=(), converter=_floats)
    std: tuple[float, ...] = field(default=(), converter=_floats)
    # Augmentations of training rows: a random horizontal flip; a random crop after padding
    # by this many pixels.
    random_flip: bool = False
    random_crop: int = field(default=0, validator=non_negative)
    val_folder: str | None = field(default=None, metadata=PATH)
    test_folder: str | None = field(default=None, metadata=PATH)
    workers: int = field(default=2, validator=non_negative)
    split: Split = Split()


@frozen(kw_only=True)
class Text:
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
class TimeSeries:
    """Sliding windows over numeric CSV columns in time order: `window` rows in, the row
    `horizon` steps after the window out. Splits are chronological: train first."""

    kind: Literal["timeseries"] = "timeseries"
    file: str = field(metadata=PATH)
    columns: tuple[str, ...] = field(converter=_tuple, validator=_non_empty)
    # The predicted columns; default: the input columns.
    targets: tuple[str, ...] = field(default=(), converter=_tuple)
    window: int = field(default=8, validator=positive)
    horizon: int = field(default=1, validator=positive)
    stride: int = field(default=1, validator=positive)
    # Model the differences between consecutive rows (daily increments of cumulative counts).
    difference: bool = False
    delimiter: str = ","
    split: Split = Split()


@frozen(kw_only=True)
class Bundled:
    """A data set that ships inside scikit-learn, so nothing is downloaded: `digits` (8x8
    images of handwritten digits, pixels 0-16, 10 classes), `iris` and `wine` (3 classes),
    `breast_cancer` (binary). Needs scikit-learn: `pip install 'tdsl[sklearn]'`."""

    kind: Literal["sklearn"] = "sklearn"
    dataset: Literal["digits", "iris", "wine", "breast_cancer"]
    # Per-sample feature shape, e.g. [1, 8, 8] for the digits as one-channel images;
    # default: the flat feature vector.
    shape: tuple[int, ...] = field(default=(), converter=tuple, validator=_each_positive)
    split: Split = Split()


@frozen(kw_only=True)
class PythonData:
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
    args: FrozenMap = field(default=FrozenMap(), converter=lambda value: _args(value, {}))
    # The arrays of a returned mapping: one per model input, and the target's.
    features: tuple[str, ...] = field(default=("x",), converter=_tuple, validator=_non_empty)
    target: str = "y"
    # Class targets: default one more than the largest label.
    num_classes: int | None = field(default=None, validator=positive)
    split: Split = Split()


DataSource = (
    LinearRegression
    | Rings
    | RandomData
    | Teacher
    | Tensors
    | Table
    | ImageFolder
    | Text
    | TimeSeries
    | PythonData
    | Bundled
)


# --- loss, optimizer, metrics ---------------------------------------------------------------


@frozen(kw_only=True)
class Regularizer:
    """A penalty on the parameters a selector picks: globs on names and/or op types."""

    kind: Literal["l1", "l2", "elastic_net"]
    weight: float = field(converter=_float, validator=positive)
    params: tuple[str, ...] = field(default=("*",), converter=_tuple)
    modules: tuple[str, ...] = field(default=(), converter=_tuple)
    exclude: tuple[str, ...] = field(default=(), converter=_tuple)
    # As in the seeds: biases and normalization parameters are not penalized by default.
    include_bias_and_norm: bool = False
    l1_ratio: float = field(converter=_float, default=0.5, validator=[non_negative, at_most_one])


@frozen(init=False)
class LossTerm:
    """One weighted part of a `kind: sum` loss."""

    kind: str
    weight: float = field(default=1.0, converter=_float, validator=positive)
    args: FrozenMap = FrozenMap()

    def __init__(self, kind: str, *, weight: float = 1.0, args=None, **kw):
        self.__attrs_init__(kind=kind, weight=weight, args=_args(args, kw))


@frozen(init=False)
class Loss:
    """A loss by name with its arguments, or `kind: sum` of weighted `terms`; plus
    regularizers on the parameters."""

    kind: str
    terms: tuple[LossTerm, ...] = ()
    regularizers: tuple[Regularizer, ...] = ()
    args: FrozenMap = FrozenMap()

    def __init__(self, kind: str, *, terms: Any = (), regularizers: Any = (), args=None, **kw):
        self.__attrs_init__(
            kind=kind, terms=tuple(terms), regularizers=tuple(regularizers), args=_args(args, kw)
        )


@frozen(init=False)
class ParamGroup:
    """Parameters picked like a regularizer's, with their own optimizer arguments."""

    params: tuple[str, ...] = ("*",)
    modules: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    include_bias_and_norm: bool = True
    args: FrozenMap = FrozenMap()

    def __init__(
        self,
        *,
        params: Any = ("*",),
        modules: Any = (),
        exclude: Any = (),
        include_bias_and_norm: bool = True,
        args=None,
        **kw,
    ):
        self.__attrs_init__(
            params=_tuple(params),
            modules=_tuple(modules),
            exclude=_tuple(exclude),
            include_bias_and_norm=include_bias_and_norm,
            args=_args(args, kw),
        )


@frozen(init=False)
class Schedule:
    kind: str
    interval: Literal["epoch", "step"] = "epoch"
    # What reduce_on_plateau watches; other schedules ignore it.
    monitor: str = "val_loss"
    args: FrozenMap = FrozenMap()

    def __init__(self, kind: str, *, interval="epoch", monitor="val_loss", args=None, **kw):
        self.__attrs_init__(kind=kind, interval=interval, monitor=monitor, args=_args(args, kw))


@frozen(init=False)
class Optimizer:
    kind: str = "adam"
    lr: float = field(converter=_float, default=1e-3, validator=positive)
    groups: tuple[ParamGroup, ...] = ()
    schedule: Schedule | None = None
    args: FrozenMap = FrozenMap()

    def __init__(self, kind="adam", *, lr=1e-3, groups=(), schedule=None, args=None, **kw):
        self.__attrs_init__(
            kind=kind, lr=lr, groups=tuple(groups), schedule=schedule, args=_args(args, kw)
        )


@frozen(init=False)
class Metric:
    kind: str
    args: FrozenMap = FrozenMap()

    def __init__(self, kind: str, *, args=None, **kw):
        self.__attrs_init__(kind=kind, args=_args(args, kw))


# --- training and placement -----------------------------------------------------------------

Mode = Literal["min", "max", "auto"]


@frozen(kw_only=True)
class EarlyStopping:
    monitor: str = "val_loss"
    mode: Mode = "auto"
    patience: int = field(default=5, validator=non_negative)
    min_delta: float = field(converter=_float, default=0.0, validator=non_negative)


@frozen(kw_only=True)
class Checkpoint:
    # None: val_loss when the data has a validation split, else loss.
    monitor: str | None = None
    mode: Mode = "auto"
    save_best: bool = True
    save_last: bool = True


@frozen(kw_only=True)
class Train:
    epochs: int = field(default=10, validator=positive)
    # The effective batch: with accumulate: k, each batch runs as k micro-batches whose
    # gradients add up before one optimizer step (same update, less memory).
    batch_size: int = field(default=32, validator=positive)
    accumulate: int = field(default=1, validator=positive)
    # Rows per batch when evaluating and predicting; by default 4 * batch_size or 2**20
    # input values, whichever is more.
    eval_batch_size: int | None = field(default=None, validator=positive)
    # Run each training step as one torch.compile graph: faster steps after a compile of
    # seconds to a minute at the start of each run.
    compile: bool = False
    # Gradient clipping before each optimizer step: by total norm and/or by value.
    clip_norm: float | None = field(default=None, converter=_float, validator=positive)
    clip_value: float | None = field(default=None, converter=_float, validator=positive)
    # A non-finite loss stops the run (keeping the last good checkpoint), or with
    # skip_batch that batch's update is dropped and counted.
    on_nan: Literal["stop", "skip_batch"] = "stop"
    early_stopping: EarlyStopping | None = None
    checkpoint: Checkpoint = Checkpoint()
    # Also log each epoch's metrics, learning rate and parameter histograms for TensorBoard
    # in RUN_DIR/tensorboard (needs `pip install 'tdsl[tensorboard]'`).
    tensorboard: bool = False


@frozen(kw_only=True)
class Device:
    # auto | cpu | cuda | cuda:N | mps
    name: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # ddp: one process per device, launched by `tdsl run --nproc N` or torchrun; each takes
    # its share of every (global) batch and gradients are averaged across processes.
    strategy: Literal["single", "ddp"] = "single"
    # auto: nccl on CUDA, gloo on the CPU.
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    # Allow a batch_size that the number of processes does not divide.
    uneven_batches: bool = False
    # Seconds a process waits for the others before the run fails instead of hanging.
    timeout: float = field(
        default=300.0, converter=_float, validator=[positive, _bound("<=", MAX_TIMEOUT)]
    )


@frozen(kw_only=True)
class Spec:
    """A whole experiment."""

    name: str
    data: DataSource
    model: Model
    loss: Loss
    seed: int = field(default=0, validator=finite)
    optimizer: Optimizer = Optimizer()
    metrics: tuple[Metric, ...] = field(default=(), converter=tuple)
    train: Train = Train()
    device: Device = Device()
    # Where each key of the YAML this spec came from sits; not part of the spec's value.
    source: Any = field(default=None, eq=False, repr=False, metadata={"internal": True})

    def __str__(self) -> str:
        """The spec as the YAML a user would write."""
        from tdsl.loading import dump  # loading builds on these classes

        return dump(self)


# Classes whose unknown keys are keyword arguments for the thing they name.
CALL_CLASSES = (Layer, Loss, LossTerm, ParamGroup, Schedule, Optimizer, Metric)
DATA_SOURCES = {cls.__attrs_attrs__.kind.default: cls for cls in DataSource.__args__}
