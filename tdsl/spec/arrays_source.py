"""`Arrays`: a data source for arrays a program already holds, given in Python only.

Its fields hold the arrays themselves, so it has no YAML form: `kind: arrays` in a file is
refused, and a run directory stores the arrays as .npz files beside a `kind: tensors` source
(see `tdsl.data.arrays.stored_spec`). It compares by identity (arrays have no cheap
equality), so two `Arrays` of equal values are different sources.
"""

from collections.abc import Mapping
from typing import Any, Literal

from attrs import field, frozen

from tdsl.spec.data_section import Split, TargetKind
from tdsl.spec.origins import Recorded
from tdsl.spec.values import positive

PYTHON_ONLY = "arrays are given in Python: use tdsl.Arrays(...) in a Python spec"


def _pair(value: Any, name: str) -> tuple[Any, Any] | None:
    if value is None:
        return None
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"Arrays({name}=...) takes a (features, target) pair")
    return (value[0], value[1])


def _own_split(val: bool, test: bool) -> Split:
    """Fractions for splits given as their own arrays: all given rows train, and the
    fractions only say which splits exist (as for a tensors source with val_file)."""
    if val and test:
        return Split(train=0.5, val=0.25, test=0.25)
    if val or test:
        return Split(train=0.5, val=0.5 if val else 0.0, test=0.5 if test else 0.0)
    return Split(train=1.0, val=0.0, test=0.0)


@frozen(init=False, eq=False)
class Arrays(Recorded):
    """Arrays in memory: `Arrays(x, y, split=Split(...))`, or the splits as they are:
    `Arrays(train=(x, y), val=(x, y), test=(x, y))`. Features are one array, a tuple of
    arrays (one per model input, in order), or a mapping input name -> array; numpy arrays
    or torch tensors, one row per sample. `target_kind` says what the target is."""

    kind: Literal["arrays"]
    train: tuple[Any, Any]
    val: tuple[Any, Any] | None
    test: tuple[Any, Any] | None
    target_kind: TargetKind
    num_classes: int | None = field(validator=positive)
    split: Split
    # Whether val and test were given as arrays of their own (split then says only which).
    own: tuple[bool, bool]

    def __init__(
        self,
        x: Any = None,
        y: Any = None,
        *,
        train: Any = None,
        val: Any = None,
        test: Any = None,
        target_kind: TargetKind,
        num_classes: int | None = None,
        split: Split | None = None,
    ):
        if (x is None) != (y is None):
            raise TypeError("Arrays(x, y) takes both the features and the target")
        if x is not None and train is not None:
            raise TypeError("give Arrays(x, y, split=...) or Arrays(train=..., val=...), not both")
        if x is None and train is None:
            raise TypeError("Arrays needs rows: Arrays(x, y) or Arrays(train=(x, y), ...)")
        if x is not None:
            if val is not None or test is not None:
                raise TypeError("Arrays(x, y) is split by `split`; give val= only with train=")
            own = (False, False)
            pair, split = (x, y), split if split is not None else Split()
        else:
            if split is not None:
                raise TypeError("Arrays(train=...) has its splits already; split= goes with x, y")
            own = (val is not None, test is not None)
            pair, split = _pair(train, "train"), _own_split(*own)
        if target_kind not in ("binary", "class", "regression"):
            raise ValueError(
                f"target_kind must be 'binary', 'class' or 'regression', got {target_kind!r}"
            )
        self.__attrs_init__(
            kind="arrays",
            train=pair,
            val=_pair(val, "val"),
            test=_pair(test, "test"),
            target_kind=target_kind,
            num_classes=num_classes,
            split=split,
            own=own,
        )

    def rows(self) -> dict[str, int]:
        """Rows given per part (before `split` divides the training arrays)."""
        parts = {"train": self.train, "val": self.val, "test": self.test}
        return {name: len(pair[1]) for name, pair in parts.items() if pair is not None}

    def __repr__(self) -> str:
        rows = ", ".join(f"{k}={v}" for k, v in self.rows().items())
        return f"Arrays({rows} rows, target_kind={self.target_kind!r})"


def feature_items(features: Any) -> list[tuple[str | None, Any]]:
    """(input name or None for positional, array) per feature array."""
    if isinstance(features, Mapping):
        return [(str(k), v) for k, v in features.items()]
    if isinstance(features, tuple | list):
        return [(None, v) for v in features]
    return [(None, features)]
