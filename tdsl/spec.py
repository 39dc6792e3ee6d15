"""The spec language as frozen attrs classes.

Field names are the YAML keys. Classes whose op/loss/optimizer takes free keyword
arguments (`Layer`, `Loss`, `Optimizer`, `ParamGroup`, `Schedule`, `Metric`) keep them
in `args` and accept them as keywords: `Layer("linear", out_features=4)` is the YAML
`{op: linear, out_features: 4}`. Those arguments are checked against the op's signature
by the validation pass, not here. Change a spec with `attrs.evolve`.
"""

from collections.abc import Mapping
from typing import Any, Literal

import attrs
from attrs import field, frozen

from tdsl.frozen import FrozenMap, freeze

# --- validators: local invariants, worded "must be ... (got ...)" --------------------------


def _bound(op: str, limit: float):
    tests = {">": lambda v: v > limit, ">=": lambda v: v >= limit, "<=": lambda v: v <= limit}

    def check(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
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


# --- data (placeholder-grade sources; the data issue adds files) ---------------------------


@frozen(kw_only=True)
class Split:
    train: float = field(converter=_float, default=0.8, validator=[non_negative, at_most_one])
    val: float = field(converter=_float, default=0.2, validator=[non_negative, at_most_one])
    test: float = field(converter=_float, default=0.0, validator=[non_negative, at_most_one])


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
    bias: float = field(default=10.0, converter=_float)
    noise: float = field(converter=_float, default=2.0, validator=non_negative)
    low: float = field(default=-5.0, converter=_float)
    high: float = field(default=5.0, converter=_float)
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


DataSource = LinearRegression | Rings | RandomData


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
    # Gradient clipping before each optimizer step: by total norm and/or by value.
    clip_norm: float | None = field(default=None, converter=_float, validator=positive)
    clip_value: float | None = field(default=None, converter=_float, validator=positive)
    # A non-finite loss stops the run (keeping the last good checkpoint), or with
    # skip_batch that batch's update is dropped and counted.
    on_nan: Literal["stop", "skip_batch"] = "stop"
    early_stopping: EarlyStopping | None = None
    checkpoint: Checkpoint = Checkpoint()


@frozen(kw_only=True)
class Device:
    # auto | cpu | cuda | cuda:N | mps
    name: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"


@frozen(kw_only=True)
class Spec:
    """A whole experiment."""

    name: str
    data: DataSource
    model: Model
    loss: Loss
    seed: int = 0
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
