"""The `data` section: how rows are split, the target of generated data, and the sources
made in code (synthetic, scikit-learn's bundled sets, a Python factory). Sources read from
files are in `tdsl.spec.file_sources`; task data (text LM, addition, shapes, segmentation)
in `tdsl.spec.task_data_section`."""

from typing import Literal

from attrs import field, frozen

from tdsl.spec.frozen import FrozenMap
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
