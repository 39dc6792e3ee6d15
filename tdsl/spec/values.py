"""Validators and converters shared by the spec classes: local invariants, worded
"must be ... (got ...)", and the coercions that make `lr=1` and `lr: 1.0` one spec."""

import math
from collections.abc import Mapping
from typing import Any

import attrs

from tdsl.spec.frozen import FrozenMap, freeze

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


def bound(op: str, limit: float):
    tests = {">": lambda v: v > limit, ">=": lambda v: v >= limit, "<=": lambda v: v <= limit}

    def check(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        finite(_instance, attribute, value)
        if value is not None and not tests[op](value):
            raise ValueError(f"must be {op} {limit:g} (got {value!r})")

    return check


positive = bound(">", 0)
non_negative = bound(">=", 0)
at_most_one = bound("<=", 1)

# Rows a synthetic source generates, all held in memory: `n_positive: 1e10` would need
# hundreds of gigabytes, and is refused here instead of exhausting memory while generating.
MAX_GENERATED_ROWS = 10_000_000


def row_count(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    positive(_instance, attribute, value)
    if value > MAX_GENERATED_ROWS:
        raise ValueError(
            f"must be at most {MAX_GENERATED_ROWS:,} (got {value:,}): generated rows are "
            "held in memory; use a file source for more"
        )


def non_empty(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value:
        raise ValueError("must not be empty")


def each_positive(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    bad = [v for v in value if v <= 0]
    if bad:
        raise ValueError(f"sizes must be > 0 (got {list(value)!r})")
    if math.prod(value) > MAX_SAMPLE_VALUES:
        raise ValueError(f"too large: {math.prod(value)} values per sample (got {list(value)!r})")


def as_float(value: Any) -> Any:
    """Ints given for float fields become floats, so `lr=1` and `lr: 1.0` are one spec."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def as_floats(value: Any) -> Any:
    return tuple(as_float(v) for v in value)


def call_args(value: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> FrozenMap:
    return freeze({**(value or {}), **kwargs})


def as_tuple(value: Any) -> tuple:
    return (value,) if isinstance(value, str) else tuple(value)
