"""`train.compile: true`: the compiled step must train exactly like the eager one (to float
tolerance), keep torch's optimizer state format, and refuse what it does not support."""

import os
import shutil

import attrs
import pytest
import torch

import tdsl
from tdsl.data import load_data
from tdsl.train.loops import fit

needs_compiler = pytest.mark.skipif(
    not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("clang++")),
    reason="torch.compile on the CPU needs a C++ compiler",
)


def rings(optimizer: tdsl.Optimizer, **train) -> tdsl.Spec:
    return tdsl.Spec(
        name="compiled",
        data=tdsl.Rings(n_positive=150, n_negative=150, split=tdsl.Split(train=0.8, val=0.2)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])],
            layers=[
                tdsl.Layer("linear", out_features=8),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=1),
            ],
        ),
        loss=tdsl.Loss(
            "bce_with_logits",
            regularizers=[tdsl.Regularizer(kind="l2", weight=0.01)],
        ),
        optimizer=optimizer,
        metrics=[tdsl.Metric("accuracy")],
        train=tdsl.Train(epochs=2, batch_size=32, **train),
    )


def train_both(spec: tdsl.Spec, steps: int):
    """(eager state, compiled state, compiled program) after the same `steps` batches; the
    batches include a short last one, so a second input shape is compiled too."""
    data = load_data(spec)
    batches = list(data.train.batches(spec.train.batch_size, order_seed=0))
    batches = (batches * steps)[:steps]
    results = []
    for compiled in (False, True):
        program = tdsl.compile(attrs.evolve(spec, train=attrs.evolve(spec.train, compile=compiled)))
        state = program.init()
        for index, batch in enumerate(batches):
            state, metrics = program.train_step(state, batch, donate=index > 0)
        results.append((program, state, metrics))
    return results


def assert_same_training(eager, compiled):
    (_, eager_state, eager_metrics), (_, compiled_state, compiled_metrics) = eager, compiled
    for name, value in eager_state.params.items():
        torch.testing.assert_close(compiled_state.params[name], value, rtol=1e-4, atol=1e-5)
    for name, slots in eager_state.optimizer.items():
        assert compiled_state.optimizer[name].keys() == slots.keys()
        for key, value in slots.items():
            torch.testing.assert_close(
                compiled_state.optimizer[name][key], value, atol=1e-5, rtol=1e-4
            )
    torch.testing.assert_close(
        compiled_metrics["loss"], eager_metrics["loss"], atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(compiled_metrics["l2"], eager_metrics["l2"], atol=1e-6, rtol=1e-4)


@needs_compiler
def test_adamw_with_groups_and_clipping_matches_eager():
    optimizer = tdsl.Optimizer(
        "adamw",
        lr=0.05,
        weight_decay=0.01,
        groups=[tdsl.ParamGroup(params=["*.bias"], lr=0.01, weight_decay=0.0)],
    )
    eager, compiled = train_both(rings(optimizer, clip_norm=0.5), steps=9)
    steps = compiled[0]._steps
    assert steps.compiled.update is not None and steps.compiled.ready()  # the one-graph path
    assert_same_training(eager, compiled)


@needs_compiler
def test_sgd_nesterov_with_value_clipping_matches_eager():
    optimizer = tdsl.Optimizer("sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    eager, compiled = train_both(rings(optimizer, clip_value=0.05), steps=9)
    assert_same_training(eager, compiled)


@needs_compiler
def test_other_optimizers_step_eagerly_on_compiled_gradients():
    eager, compiled = train_both(rings(tdsl.Optimizer("rmsprop", lr=0.01)), steps=6)
    assert compiled[0]._steps.compiled.update is None
    assert_same_training(eager, compiled)


@needs_compiler
def test_fit_with_compiled_steps_learns_and_keeps_the_spec_semantics():
    spec = rings(tdsl.Optimizer("adam", lr=0.05), compile=True)
    program = tdsl.compile(spec)
    result = fit(program, program.init(), load_data(spec))
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.state.step == 2 * 8  # 240 training rows in batches of 32
    # Compiled before the first epoch (warmup steps leave the state alone), and reported
    # apart from the epoch's seconds, once.
    assert result.history[0]["compile_seconds"] > 0
    assert "compile_seconds" not in result.history[1]


@pytest.mark.parametrize(
    ("train", "device", "refused"),
    [
        ({"accumulate": 2}, "cpu", "train.accumulate > 1"),
        ({"on_nan": "skip_batch"}, "cpu", "train.on_nan: skip_batch"),
    ],
)
def test_validate_refuses_what_compiled_steps_do_not_support(train, device, refused):
    spec = rings(tdsl.Optimizer("adam", lr=0.01), compile=True, **train)
    report = tdsl.validate(attrs.evolve(spec, device=tdsl.Device(name=device)))
    found = [d.message for d in report.errors if d.path == ("train", "compile")]
    assert found == [f"a compiled step does not support {refused}; set train.compile: false"]
