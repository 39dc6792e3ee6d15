"""Fuzzing `tdsl.validate`: whatever the spec, it returns a `Report` and never raises.

Two sources of input:

- every valid spec in `specs/*.yaml`, loaded as plain data and mutated (a key deleted, a
  value replaced by one of another type, two values swapped, a list element duplicated, a
  key renamed to a near miss), then dumped back to YAML text;
- whole `Spec` objects from `tests/strategies.py`, structurally valid but semantically
  random, validated both as objects and as the YAML text `tdsl.dump` writes for them.

Every diagnostic must be located inside the text (line and column >= 1), carry a path and a
non-empty message, and each example must finish within the Hypothesis deadline.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from strategies import specs

import tdsl
from tdsl.errors import Report, format_path

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILES = sorted((ROOT / "specs").glob("*.yaml"))

# A few seconds per example: validation runs on the meta device, so even a mutated spec
# declaring billions of parameters must not take long. Past three times that, the example is
# stopped (where SIGALRM exists), so that a hang fails the test instead of stalling it.
DEADLINE = timedelta(seconds=5)
HARD_LIMIT = 3 * DEADLINE.total_seconds()
# More examples for a longer hunt: TDSL_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py
SCALE = int(os.environ.get("TDSL_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(
    deadline=DEADLINE,
    max_examples=SCALE or 40,
    # The suite's run is the same every time, so that CI is red only for a change; a hunt
    # (TDSL_FUZZ_EXAMPLES set) draws new examples each run.
    derandomize=SCALE is None,
    # No shrinking: a slow example would be re-run for minutes while shrinking; the mutated
    # spec is small enough to read as it is.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Path_ = tuple[Any, ...]


# --- mutations of plain data ------------------------------------------------------------------

HUGE = 10**30
other_values = st.one_of(
    st.integers(min_value=-1000, max_value=1000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.lists(st.integers(min_value=-5, max_value=50), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(min_value=-5, max_value=50), max_size=3),
    st.sampled_from([HUGE, -HUGE, 2**63, 2**64, -(2**63) - 1, 99999999999999999999999]),
    st.sampled_from([-1, -3, -1.5, -0.0, -(2**31)]),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.sampled_from(["", " ", "yes", "null", "1e400", "x" * 200, "naïve", "线性", "😀"]),
)


# The same type, other values: these get past loading to the graph, shape and loss checks.
def _tweaks(value: Any) -> st.SearchStrategy:
    if isinstance(value, bool):
        return st.just(not value)
    if isinstance(value, int):
        return st.sampled_from([0, 1, -1, -value, value * 1000, 2**31, 2**63, HUGE])
    if isinstance(value, float):
        return st.sampled_from([0.0, -value, 1e300, -1e-300, math.nan, math.inf, -math.inf])
    if isinstance(value, str):
        return st.sampled_from(["", value.upper(), value[:-1], value + "x", "naïve", "线性"])
    if isinstance(value, list):
        return st.sampled_from([[], value * 3, value[:1], list(reversed(value))])
    return st.just(value)


def _paths(data: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every value's path in `data`, containers included, the root first."""
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


def _get(data: Any, path: Path_) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(data: Any, path: Path_, value: Any) -> None:
    _get(data, path[:-1])[path[-1]] = value


def _near_misses(key: str) -> list[str]:
    """Keys a typing slip turns `key` into."""
    out = [key + "s", key.upper(), key.replace("_", "-"), key + "_", " " + key]
    if len(key) > 1:
        out += [key[1:], key[:-1], key[1] + key[0] + key[2:]]
    return [k for k in out if k != key]


@st.composite
def mutated(draw: st.DrawFn, original: Any) -> Any:
    """`original` (a deep copy of it) after one to three random mutations."""
    data = yaml.safe_load(yaml.safe_dump(original))  # a deep copy
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(data)
        kinds = ["delete", "replace", "tweak", "tweak", "swap", "duplicate", "rename"]
        kind = draw(st.sampled_from(kinds))
        if kind == "delete":
            keyed = [p for p in paths if p and isinstance(_get(data, p[:-1]), dict)]
            if keyed:
                path = draw(st.sampled_from(keyed))
                del _get(data, path[:-1])[path[-1]]
        elif kind == "replace":
            # Not the root: a whole document of another type is test_malformed's job.
            path = draw(st.sampled_from(paths[1:]))
            _set(data, path, draw(other_values))
        elif kind == "tweak":
            path = draw(st.sampled_from(paths[1:]))
            _set(data, path, draw(_tweaks(_get(data, path))))
        elif kind == "swap":
            inner = [p for p in paths if p]
            if len(inner) >= 2:
                first = draw(st.sampled_from(inner))
                # Not into itself: swapping a value with one of its own parts makes a cycle.
                others = [p for p in inner if p[: len(first)] != first and first[: len(p)] != p]
                if others:
                    second = draw(st.sampled_from(others))
                    a, b = _get(data, first), _get(data, second)
                    _set(data, first, b)
                    _set(data, second, a)
        elif kind == "duplicate":
            lists = [p for p in paths if isinstance(_get(data, p), list) and _get(data, p)]
            if lists:
                items = _get(data, draw(st.sampled_from(lists)))
                index = draw(st.integers(min_value=0, max_value=len(items) - 1))
                items.insert(index, yaml.safe_load(yaml.safe_dump(items[index])))
        else:
            keyed = [
                p
                for p in paths
                if p and isinstance(p[-1], str) and isinstance(_get(data, p[:-1]), dict)
            ]
            if keyed:
                path = draw(st.sampled_from(keyed))
                parent = _get(data, path[:-1])
                new = draw(st.sampled_from(_near_misses(path[-1])))
                if new not in parent:
                    # Keep the key's position, so the YAML reads as the user wrote it.
                    items = [(new if k == path[-1] else k, v) for k, v in parent.items()]
                    parent.clear()
                    parent.update(items)
    return data


# --- checks -----------------------------------------------------------------------------------


class Hang(BaseException):  # not Exception: tdsl must not catch it as a torch error
    pass


@contextlib.contextmanager
def _hard_limit(seconds: float):
    """Raise `Hang` in the main thread after `seconds` (a no-op without SIGALRM)."""
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def stop(_signum, _frame):
        raise Hang(f"validate did not finish within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _validate(source: Any) -> Report:
    # The CLI prints warnings; the suite turns them into errors (pyproject's filterwarnings),
    # which would make a harmless warning look like a crash here.
    with warnings.catch_warnings(), _hard_limit(HARD_LIMIT):
        warnings.simplefilter("ignore")
        return tdsl.validate(source)


def _check_report(report: Any, text: str | None) -> None:
    """The report's invariants; `text` is the YAML validated, None for a `Spec` object
    (whose diagnostics have no file to be located in)."""
    assert isinstance(report, Report), f"validate returned {type(report).__name__}"
    for diagnostic in report.diagnostics:
        shown = diagnostic.format()
        assert diagnostic.severity in ("error", "warning"), shown
        assert isinstance(diagnostic.message, str) and diagnostic.message.strip(), shown
        assert isinstance(diagnostic.path, tuple), shown
        assert format_path(diagnostic.path), shown
        if text is None:
            continue
        location = diagnostic.location
        assert location is not None, f"unlocated: {shown}"
        assert location.line >= 1 and location.column >= 1, shown
        lines = text.count("\n") + 1
        assert location.line <= lines, f"located past the end of the text: {shown}\n{text}"
    if report.ok:
        assert report.param_count is not None, "a valid report must count the parameters"


@pytest.fixture(scope="module", autouse=True)
def warm_up():
    """The first validation pays for torch's meta-device set-up; keep that out of the first
    example's deadline."""
    _validate((ROOT / "specs" / "ring_dnn.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("spec_file", SPEC_FILES, ids=lambda p: p.stem)
def test_mutated_specs_never_crash_validate(spec_file, monkeypatch):
    original = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    # YAML text reads data paths from the working directory; the spec file, from its folder.
    monkeypatch.chdir(spec_file.parent)

    @FUZZ
    @given(data=mutated(original))
    def check(data):
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        _check_report(_validate(text), text)

    check()


@settings(FUZZ, max_examples=SCALE or 100)
@given(spec=specs())
def test_random_specs_never_crash_validate(spec):
    _check_report(_validate(spec), None)
    text = tdsl.dump(spec)
    _check_report(_validate(text), text)
