"""What a sweep varies: `--grid PATH=V1,V2,...` lists and `--param PATH=DIST(...)` draws.

Distributions: `uniform(a,b)`, `log_uniform(a,b)` (a > 0), `int_uniform(a,b)` (both ends
included) and `choice(v1,v2,...)`. Values are read as YAML, as `--set` reads them, and a
drawn value is written back as `--set` text, so each trial is plain overrides.
"""

from __future__ import annotations

import math
import random
import re
from typing import Any

import attrs
import yaml

from tdsl.errors import TdslError
from tdsl.spec.located_yaml import dump_data, load_value
from tdsl.spec.overrides import parse_path
from tdsl.wording import did_you_mean

KINDS = ("uniform", "log_uniform", "int_uniform", "choice")
_CALL = re.compile(r"^\s*([A-Za-z_]+)\s*\((.*)\)\s*$", re.S)


class SweepError(TdslError):
    """A sweep's parameters, trials or directory cannot be used as asked."""


@attrs.frozen
class Distribution:
    path: str  # as written: `optimizer.lr`
    kind: str
    values: tuple[Any, ...]  # (low, high) or the choices

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return rng.choice(self.values)
        low, high = self.values
        if self.kind == "int_uniform":
            return rng.randint(low, high)
        if self.kind == "log_uniform":
            return math.exp(rng.uniform(math.log(low), math.log(high)))
        return rng.uniform(low, high)


def split_values(text: str) -> list[str]:
    """`1e-3,[8, 3],x` -> ['1e-3', '[8, 3]', 'x']: commas inside brackets do not split."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts


def _assignment(text: str, option: str) -> tuple[str, str]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not parse_path(key) or not raw.strip():
        raise SweepError(f"{option} {text}: expected PATH=VALUES, e.g. optimizer.lr=1e-3,1e-2")
    return key, raw


def parse_grid(text: str) -> tuple[str, list[str]]:
    """`optimizer.lr=1e-3,3e-3` -> ('optimizer.lr', ['1e-3', '3e-3'])."""
    key, raw = _assignment(text, "--grid")
    values = split_values(raw)
    if any(not value for value in values):
        raise SweepError(f"--grid {text}: an empty value")
    return key, values


def _read(text: str, where: str) -> Any:
    try:
        return load_value(text)
    except (yaml.YAMLError, ValueError, RecursionError, AttributeError):
        raise SweepError(f"{where}: cannot read value {text!r}") from None


def parse_param(text: str) -> Distribution:
    """`optimizer.lr=log_uniform(1e-4,1e-1)` -> a Distribution, checked."""
    key, raw = _assignment(text, "--param")
    call = _CALL.match(raw)
    where = f"--param {text}"
    if call is None:
        raise SweepError(f"{where}: expected a distribution, one of {', '.join(KINDS)}")
    kind = call.group(1)
    if kind not in KINDS:
        hint = did_you_mean(kind, KINDS)
        raise SweepError(f"{where}: unknown distribution {kind!r}" + (f" ({hint})" if hint else ""))
    values = tuple(_read(v, where) for v in split_values(call.group(2)) if v)
    if kind == "choice":
        if not values:
            raise SweepError(f"{where}: choice needs at least one value")
        return Distribution(key, kind, values)
    if len(values) != 2:
        raise SweepError(f"{where}: {kind} takes two numbers, low and high")
    low, high = values
    wanted = int if kind == "int_uniform" else (int, float)
    if not all(isinstance(v, wanted) and not isinstance(v, bool) for v in values):
        what = "integers" if kind == "int_uniform" else "numbers"
        raise SweepError(f"{where}: {kind} takes two {what}")
    if not low <= high:
        raise SweepError(f"{where}: low {low} is above high {high}")
    if kind == "log_uniform" and low <= 0:
        raise SweepError(f"{where}: log_uniform needs low > 0")
    return Distribution(key, kind, (low, high))


def as_text(value: Any) -> str:
    """A value as `--set` text that reads back as the same value."""
    if isinstance(value, float):
        return f"{value:.6g}" if "e" in f"{value:.6g}" or "." in f"{value:.6g}" else repr(value)
    return dump_data(value).strip().removesuffix("...").strip()
