"""Specs survive YAML: `load(dump(spec)) == spec`, and Python construction equals YAML.

`Spec.source` (where each key sat in the file) is internal and ignored by `==` and `hash`.
"""

from __future__ import annotations

import difflib
import os
import typing
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from strategies import (
    COVERED_FIELDS,
    YAML_TRICKY,
    positive_floats,
    scalars,
    specs,
)

import tdsl
import tdsl.spec

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILES = sorted((ROOT / "specs").glob("*.yaml"))
GOLDEN_RING = ROOT / "tests" / "golden" / "ring_python_spec.yaml"

# No `explain` phase: tracing every shrink step makes a failure take minutes to report.
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def assert_round_trips(spec: tdsl.Spec) -> str:
    """dump is deterministic, load(dump(spec)) == spec, and re-dumping gives the same text."""
    # Comparisons are computed before `assert` so pytest does not diff two whole specs on
    # every failing example while Hypothesis shrinks (that is very slow).
    text = tdsl.dump(spec)
    deterministic = tdsl.dump(spec) == text
    assert deterministic, "dumping the same spec twice gave different text"
    back = tdsl.load(text)
    equal = back == spec
    assert equal, f"load(dump(spec)) != spec\n{_field_diff(spec, back)}\nThe YAML was:\n{text}"
    # Equality cannot tell 1 from 1.0 or True; the text can.
    again = tdsl.dump(back)
    stable = again == text
    assert stable, _diff(text, again)
    return text


def _field_diff(expected: object, got: object, path: str = "spec") -> str:
    """Where two specs differ: the first differing leaf, by attribute path."""
    if attrs.has(type(expected)) and type(expected) is type(got):
        for field in attrs.fields(type(expected)):
            a, b = getattr(expected, field.name), getattr(got, field.name)
            if field.eq and a != b:
                return _field_diff(a, b, f"{path}.{field.name}")
    if isinstance(expected, tuple) and isinstance(got, tuple) and len(expected) == len(got):
        for index, (a, b) in enumerate(zip(expected, got, strict=True)):
            if a != b:
                return _field_diff(a, b, f"{path}[{index}]")
    return f"{path}: expected {expected!r}, loaded {got!r}"


def _diff(expected: str, got: str) -> str:
    lines = difflib.unified_diff(
        expected.splitlines(), got.splitlines(), "dump(spec)", "dump(load(dump(spec)))"
    )
    return "re-dumping the loaded spec changed the text:\n" + "\n".join(lines)


# --- (a) random specs --------------------------------------------------------------------


@settings(PROPERTY, max_examples=200)
@given(specs())
def test_random_spec_round_trips(spec: tdsl.Spec) -> None:
    assert_round_trips(spec)


# Every string position a user controls, filled with one tricky string at a time, so a string
# YAML mangles shows up by name even when the random test shrinks to some other failure.
TRICKY_STRINGS = sorted(set(YAML_TRICKY))


def _spec_full_of(s: str) -> tdsl.Spec:
    return tdsl.Spec(
        name=s,
        data=tdsl.RandomData(target=tdsl.Target(kind="binary")),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2], name=s)],
            layers=[tdsl.Layer(s), tdsl.Layer("linear", name=s, inputs=[s], text=s, nested={s: s})],
            outputs=[s],
        ),
        loss=tdsl.Loss(s, reduction=s),
        optimizer=tdsl.Optimizer(s, schedule=tdsl.Schedule(s, monitor=s)),
        metrics=[tdsl.Metric(s), tdsl.Metric("accuracy", values=[s, s])],
        train=tdsl.Train(early_stopping=tdsl.EarlyStopping(monitor=s)),
        device=tdsl.Device(name=s),
    )


@pytest.mark.parametrize("s", TRICKY_STRINGS, ids=ascii)
def test_tricky_string_round_trips_everywhere(s: str) -> None:
    assert_round_trips(_spec_full_of(s))


@pytest.mark.parametrize("strategy", [positive_floats, scalars], ids=["positive", "scalars"])
@pytest.mark.parametrize("exponent", ["e-", "e+"])
def test_float_strategies_write_exponents(strategy, exponent: str) -> None:
    """The strategies produce floats whose repr has an exponent (1e-05, 3e+20), which YAML 1.1
    and YAML 1.2 spell differently."""
    found = find(strategy, lambda x: isinstance(x, float) and exponent in repr(x))
    assert exponent in repr(found)


@pytest.mark.parametrize("value", [1e-05, 3e-4, 3e20, 1e16, 5e-324, 1.7976931348623157e308])
def test_exponent_floats_round_trip_as_floats(value: float) -> None:
    spec = attrs.evolve(
        ring_spec(), optimizer=tdsl.Optimizer("adam", lr=value, eps=-value, tag=repr(value))
    )
    text = assert_round_trips(spec)
    back = tdsl.load(text).optimizer
    assert type(back.lr) is float and back.lr == value and back.args["eps"] == -value
    assert back.args["tag"] == repr(value)  # the same digits as a string stay a string


def test_strategies_cover_every_field() -> None:
    """A field added to a spec class must be added to tests/strategies.py too."""

    def settable(field: attrs.Attribute) -> bool:
        fixed_tag = typing.get_origin(field.type) is typing.Literal and (
            len(typing.get_args(field.type)) == 1
        )
        return not field.metadata.get("internal") and not fixed_tag

    spec_classes = [
        cls
        for cls in vars(tdsl.spec).values()
        if isinstance(cls, type)
        and attrs.has(cls)
        and cls.__module__.startswith("tdsl.spec.")
        # Arrays hold arrays and have no YAML form to round-trip (tests/test_arrays.py).
        and cls is not tdsl.Arrays
    ]
    assert tdsl.Spec in spec_classes and tdsl.Layer in spec_classes
    for cls in spec_classes:
        expected = {f.name for f in attrs.fields(cls) if settable(f)}
        assert COVERED_FIELDS.get(cls, set()) == expected, cls.__name__


# --- (b) Python construction == YAML ------------------------------------------------------


def ring_spec() -> tdsl.Spec:
    """The ring model of specs/ring_dnn.yaml (its `train` section left at the defaults),
    built in Python: a 2-4-8-1 MLP with relu, bce_with_logits, adam lr 0.01, accuracy."""
    return tdsl.Spec(
        name="ring_dnn",
        data=tdsl.Rings(split=tdsl.Split(train=0.7, val=0.3)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])],
            layers=[
                tdsl.Layer("linear", out_features=4),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=8),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=1),
            ],
        ),
        loss=tdsl.Loss("bce_with_logits"),
        optimizer=tdsl.Optimizer("adam", lr=0.01),
        metrics=[tdsl.Metric("accuracy")],
    )


# The same spec as a user writes it by hand: comments, indented lists, defaults spelled out.
HAND_WRITTEN_RING = """\
# Two noisy rings; a 2-4-8-1 MLP.
name: ring_dnn
seed: 0                      # the default
data:
  kind: rings
  n_positive: 2000
  split: {train: 0.7, val: 0.3}
model:
  inputs:
    - shape: [2]
  layers:
    - {op: linear, out_features: 4}
    - relu
    - op: linear
      out_features: 8
    - {op: relu}
    - {op: linear, args: {out_features: 1}}
loss:
  kind: bce_with_logits
optimizer:
  kind: adam
  lr: 0.01
metrics: [accuracy]
device: auto
"""


def test_hand_written_yaml_equals_python_spec() -> None:
    loaded = tdsl.load(HAND_WRITTEN_RING)
    assert loaded == ring_spec()
    assert hash(loaded) == hash(ring_spec())


def test_python_spec_dumps_to_golden_yaml() -> None:
    if os.environ.get("TDSL_UPDATE_GOLDENS"):
        GOLDEN_RING.write_text(tdsl.dump(ring_spec()), encoding="utf-8")
    golden = GOLDEN_RING.read_text(encoding="utf-8")
    assert tdsl.dump(ring_spec()) == golden
    assert tdsl.load(golden) == ring_spec()
    assert tdsl.load(GOLDEN_RING) == ring_spec()


def test_golden_is_what_a_user_would_write() -> None:
    """Defaults left out, keyword arguments next to `op`/`kind`, shorthands used."""
    golden = GOLDEN_RING.read_text(encoding="utf-8")
    keys = {line.strip(" -").split(":")[0] for line in golden.splitlines()}
    for default in ("seed", "n_positive", "dtype", "train", "device", "args"):
        assert default not in keys
    assert "seed:" not in golden
    assert "{op: linear, out_features: 4}" in golden
    assert "- relu" in golden
    assert "metrics: [accuracy]" in golden
    assert "loss: bce_with_logits" in golden


# --- (c) attrs.evolve ---------------------------------------------------------------------


def test_evolve_changes_only_the_learning_rate_line() -> None:
    spec = ring_spec()
    faster = attrs.evolve(spec, optimizer=attrs.evolve(spec.optimizer, lr=0.1))
    assert faster.optimizer == tdsl.Optimizer("adam", lr=0.1)
    assert spec.optimizer.lr == 0.01  # the original is untouched
    before = tdsl.dump(spec).splitlines()
    after = assert_round_trips(faster).splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [("optimizer: {kind: adam, lr: 0.01}", "optimizer: {kind: adam, lr: 0.1}")]


@PROPERTY
@given(specs(), positive_floats)
def test_evolve_lr_keeps_everything_else(spec: tdsl.Spec, lr: float) -> None:
    evolved = attrs.evolve(spec, optimizer=attrs.evolve(spec.optimizer, lr=lr))
    assert evolved.optimizer.lr == lr
    for field in attrs.fields(tdsl.Optimizer):
        if field.name != "lr":
            assert getattr(evolved.optimizer, field.name) == getattr(spec.optimizer, field.name)
    for field in attrs.fields(tdsl.Spec):
        if field.name != "optimizer":
            assert getattr(evolved, field.name) == getattr(spec, field.name)
    assert_round_trips(evolved)


@PROPERTY
@given(specs(), st.integers(min_value=1, max_value=4096))
def test_evolve_layer_args(spec: tdsl.Spec, width: int) -> None:
    first = spec.model.layers[0]
    wider = attrs.evolve(first, args={**first.args, "out_features": width})
    assert wider.op == first.op and wider.name == first.name and wider.inputs == first.inputs
    assert wider.args["out_features"] == width
    layers = (wider, *spec.model.layers[1:])
    evolved = attrs.evolve(spec, model=attrs.evolve(spec.model, layers=layers))
    assert evolved.model.inputs == spec.model.inputs
    assert_round_trips(evolved)


# --- (d) the shipped spec files -------------------------------------------------------------


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_spec_file_round_trips(path: Path) -> None:
    spec = tdsl.load(path)
    assert tdsl.load(tdsl.dump(spec)) == spec
    assert_round_trips(spec)


# --- (e) hashing ----------------------------------------------------------------------------


@PROPERTY
@given(specs())
def test_equal_specs_hash_equal(spec: tdsl.Spec) -> None:
    copies = [tdsl.load(tdsl.dump(spec)), attrs.evolve(spec), attrs.evolve(spec, source="x")]
    for copy in copies:
        equal = copy == spec
        assert equal, _field_diff(spec, copy)
        same_hash = hash(copy) == hash(spec)
        assert same_hash
    distinct = len({spec, *copies})
    assert distinct == 1


def test_keyword_and_args_forms_are_equal_and_hash_equal() -> None:
    pairs = [
        (tdsl.Layer("linear", out_features=4), tdsl.Layer("linear", args={"out_features": 4})),
        (tdsl.Layer("conv2d", kernel_size=[3, 3]), tdsl.Layer("conv2d", kernel_size=(3, 3))),
        (tdsl.Layer("add", inputs="a"), tdsl.Layer("add", inputs=["a"])),
        (
            tdsl.Loss("focal", opts={"gamma": [2]}),
            tdsl.Loss("focal", args={"opts": {"gamma": (2,)}}),
        ),
        (tdsl.Optimizer(momentum=0.9), tdsl.Optimizer("adam", lr=1e-3, args={"momentum": 0.9})),
        (tdsl.ParamGroup(params="*.weight"), tdsl.ParamGroup(params=["*.weight"])),
    ]
    for a, b in pairs:
        assert a == b
        assert hash(a) == hash(b)
