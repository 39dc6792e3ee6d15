"""`train.compile: true`: the compiled step must train exactly like the eager one (to float
tolerance), keep torch's optimizer state format, and refuse what it does not support."""

from pathlib import Path

import attrs
import pytest
import torch

import tdsl
from tdsl.check.training_setup import has_cpp_compiler
from tdsl.data import load_data
from tdsl.train.compiled_step import CompileError
from tdsl.train.loops import fit

LINEAR_REGRESSION = Path(__file__).resolve().parent.parent / "specs" / "linear_regression.yaml"

needs_compiler = pytest.mark.skipif(
    not has_cpp_compiler(), reason="torch.compile on the CPU needs a C++ compiler"
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
def test_frozen_parameters_stay_out_of_the_compiled_step():
    """Frozen parameters are constants to the compiled gradient: none of theirs, so the
    clipping norm is the trainable parameters' as in the eager step, and no update."""
    spec = rings(tdsl.Optimizer("adam", lr=0.05), clip_norm=0.5)
    layers = (attrs.evolve(spec.model.layers[0], trainable=False), *spec.model.layers[1:])
    spec = attrs.evolve(spec, model=attrs.evolve(spec.model, layers=layers))
    eager, compiled = train_both(spec, steps=6)
    assert_same_training(eager, compiled)
    start = compiled[0].init()
    for name in ("linear1.weight", "linear1.bias"):
        assert torch.equal(compiled[1].params[name], start.params[name])
        assert name not in compiled[1].optimizer


@needs_compiler
def test_batch_norm_running_statistics_update_as_in_eager_steps():
    """Regression: a module with batch norm failed to compile (its running statistics are
    updated in place, which torch.func.grad refuses on buffers it sees as captured)."""
    spec = rings(tdsl.Optimizer("sgd", lr=0.1, momentum=0.9))
    layers = (spec.model.layers[0], tdsl.Layer("batch_norm1d"), *spec.model.layers[1:])
    spec = attrs.evolve(spec, model=attrs.evolve(spec.model, layers=layers))
    eager, compiled = train_both(spec, steps=6)
    assert_same_training(eager, compiled)
    for name, value in eager[1].buffers.items():
        torch.testing.assert_close(compiled[1].buffers[name], value, rtol=1e-4, atol=1e-5)
    assert int(compiled[1].buffers["batch_norm1d1.num_batches_tracked"]) == 6


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


@pytest.fixture(scope="module", autouse=True)
def compile_every_configuration():
    """All compiled steps share one code object, and dynamo compiles at most 8 variants of
    it before it runs the rest eagerly; this module compiles more, and a silently eager
    "compiled" run would compare eager with eager."""
    with torch._dynamo.config.patch(recompile_limit=64, fail_on_recompile_limit_hit=True):
        yield


def regression(
    optimizer: tdsl.Optimizer | None = None, clip_norm: float | None = None, hidden: bool = False
) -> tdsl.Spec:
    """The issue's spec (one linear layer, half an MSE, SGD lr 0.001, batches of 10), or
    with a hidden layer: a linear layer's raw weight gradient is a matmul, which inductor
    once mishandled."""
    spec = tdsl.load(LINEAR_REGRESSION)
    if hidden:
        layers = [tdsl.Layer("linear", out_features=4), tdsl.Layer("relu"), *spec.model.layers]
        spec = attrs.evolve(spec, model=attrs.evolve(spec.model, layers=layers))
    train = attrs.evolve(spec.train, clip_norm=clip_norm)
    return attrs.evolve(spec, optimizer=optimizer or spec.optimizer, train=train)


def classification(
    optimizer: tdsl.Optimizer, clip_norm: float | None = None, l2: bool = False
) -> tdsl.Spec:
    return tdsl.Spec(
        name="compiled_classification",
        data=tdsl.Rings(n_positive=80, n_negative=80, split=tdsl.Split(train=1.0, val=0.0)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])],
            layers=[
                tdsl.Layer("linear", out_features=4),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=1),
            ],
        ),
        loss=tdsl.Loss(
            "bce_with_logits", regularizers=[tdsl.Regularizer(kind="l2", weight=0.01)] if l2 else []
        ),
        optimizer=optimizer,
        train=tdsl.Train(epochs=1, batch_size=16, clip_norm=clip_norm),
    )


def sgd_variants(lr: float) -> tdsl.Optimizer:
    """Plain SGD on the biases, Nesterov with weight decay on the last weight, momentum with
    dampening on the rest: SGD's three updates in one program."""
    return tdsl.Optimizer(
        "sgd",
        lr=lr,
        momentum=0.9,
        dampening=0.1,
        groups=[
            tdsl.ParamGroup(params=["*.bias"], momentum=0.0),
            tdsl.ParamGroup(
                params=["linear2.weight"], nesterov=True, dampening=0.0, weight_decay=0.01
            ),
        ],
    )


BIASES = tdsl.ParamGroup(params=["*.bias"], lr=0.2, weight_decay=0.0)

# The full matrix (SGD, SGD with momentum, Nesterov, Adam, AdamW x regression or
# classification x clip_norm or not x param groups or not) is 40 programs, each its own
# torch.compile (5-30 s on a busy 2-core machine). These 6, with the two tests above, cover
# every optimizer on both tasks, with and without clipping, and with param groups; and
# without groups plain SGD, Nesterov (above), Adam and AdamW, not momentum alone. SGD's
# three updates share programs as param groups (`sgd_variants`). Without clipping or a
# regularizer a weight's update gets its raw matmul gradient, which the inductor bug
# needed: the cases without clipping are the ones that failed before the fix.
CASES = {
    "sgd-regression": regression(),  # the run
    "sgd-variants-groups-classification": classification(sgd_variants(lr=0.1)),
    "sgd-variants-groups-clip-regression": regression(
        sgd_variants(lr=0.001), clip_norm=20.0, hidden=True
    ),
    "adam-regression": regression(tdsl.Optimizer("adam", lr=0.05, weight_decay=0.01, amsgrad=True)),
    "adam-groups-clip-classification": classification(
        tdsl.Optimizer("adam", lr=0.02, groups=[BIASES]), clip_norm=0.5, l2=True
    ),
    "adamw-regression": regression(tdsl.Optimizer("adamw", lr=0.05, weight_decay=0.05)),
    # AdamW with groups, clip_norm and a regularizer on classification: the first test above.
}


def train_steps(spec: tdsl.Spec, compiled: bool, steps: int = 30):
    """(program, state, each step's loss) after `steps` full batches from the seed's state."""
    batches = list(load_data(spec).train.batches(spec.train.batch_size, order_seed=0))
    program = tdsl.compile(attrs.evolve(spec, train=attrs.evolve(spec.train, compile=compiled)))
    state, losses = program.init(), []
    for index, batch in enumerate((batches * steps)[:steps]):
        state, metrics = program.train_step(state, batch, donate=index > 0)
        losses.append(metrics["loss"])
    return program, state, torch.stack(losses)


@needs_compiler
@pytest.mark.parametrize("case", list(CASES))
def test_compiled_training_matches_eager_step_by_step(case):
    spec = CASES[case]
    _, eager, eager_losses = train_steps(spec, compiled=False)
    program, compiled, compiled_losses = train_steps(spec, compiled=True)
    assert program._steps.compiled.update is not None and program._steps.compiled.ready()
    torch.testing.assert_close(compiled_losses, eager_losses, rtol=1e-4, atol=1e-5)
    for name, value in eager.params.items():
        torch.testing.assert_close(compiled.params[name], value, rtol=1e-4, atol=1e-5)
    for name, slots in eager.optimizer.items():
        assert compiled.optimizer[name].keys() == slots.keys()
        for key, value in slots.items():
            torch.testing.assert_close(compiled.optimizer[name][key], value, rtol=1e-4, atol=1e-5)


@needs_compiler
def test_compiled_linear_regression_reaches_the_eager_loss():
    """`tdsl run specs/linear_regression.yaml --set train.compile=true` diverged to inf."""
    spec = regression()  # the program of "sgd-regression" above: nothing more to compile
    final = []
    for compiled in (False, True):
        program = tdsl.compile(attrs.evolve(spec, train=attrs.evolve(spec.train, compile=compiled)))
        result = fit(program, program.init(), load_data(spec), epochs=3)
        final.append(result.history[-1]["loss"])
    assert final[1] == pytest.approx(final[0], rel=1e-4)


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


def test_validate_refuses_compiling_on_the_cpu_without_a_cpp_compiler(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-g++")
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert not has_cpp_compiler()
    spec = rings(tdsl.Optimizer("adam", lr=0.01), compile=True)
    report = tdsl.validate(attrs.evolve(spec, device=tdsl.Device(name="cpu")))
    found = [d.message for d in report.errors if d.path == ("train", "compile")]
    assert found == [
        "torch.compile needs a C++ compiler on the CPU and 'no-such-g++' was not found; "
        "install one (e.g. g++) or set train.compile: false"
    ]


def _graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


@needs_compiler
def test_a_step_schedule_does_not_recompile_and_fit_reuses_the_compiled_code():
    """The learning rate goes in as a tensor: 20 steps of an exponential schedule (and
    SGD with momentum and weight decay) compile one training graph, not one per step (after
    8 of which torch ran the rest eagerly). A second `fit` compiles nothing and says so;
    validation runs a compiled forward pass and loss, one graph for every batch size."""
    sgd = tdsl.Optimizer(
        "sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-3,
        schedule=tdsl.Schedule(kind="exponential", interval="step", gamma=0.9),
    )
    spec = attrs.evolve(rings(sgd), train=tdsl.Train(epochs=2, batch_size=24, eval_batch_size=50))
    data = load_data(spec)  # 240 training rows: 10 full batches; 60 val rows: 50 and 10
    results, graphs = [], []
    for compiled in (False, True, True):
        if compiled and len(results) == 1:
            program = tdsl.compile(attrs.evolve(spec, train=attrs.evolve(spec.train, compile=True)))
        elif not compiled:
            program = tdsl.compile(spec)
        before = _graphs()
        results.append(fit(program, program.init(), data))
        graphs.append(_graphs() - before)
    eager, first, second = results
    # The training step and the evaluation forward pass (alone: 2; after other tests dynamo
    # may compile one again with symbolic sizes, having seen other sizes of the same code);
    # one graph per learning rate would be 20.
    assert graphs[0] == 0 and 2 <= graphs[1] <= 3 and graphs[2] == 0
    assert first.history[0]["compile_seconds"] > 0
    assert second.history[0]["compile_seconds"] == 0.0
    for result in (first, second):
        for key in ("loss", "val_loss", "val_accuracy", "lr"):
            assert result.history[-1][key] == pytest.approx(eager.history[-1][key], rel=1e-4)
    assert program._steps.compiled.update is not None  # the update ran compiled throughout


def test_a_schedule_moving_a_graph_constant_steps_eagerly_instead_of_recompiling():
    """one_cycle cycles SGD's momentum, a constant of the compiled update: from the first
    change on, the update runs eagerly on compiled gradients (no compiler needed here)."""
    optimizer = tdsl.Optimizer("sgd", lr=0.1, momentum=0.9)
    program = tdsl.compile(rings(optimizer, compile=True))
    step = program._steps.compiled
    calls = []
    step.steady_step.compiled = lambda params, features, target, groups: (
        calls.append(groups)
        or (
            [torch.zeros_like(p) for p in params] if groups is None else None,
            torch.zeros(1),
            torch.zeros(()),
            [],
            [],  # the buffers' new values: the spec has none
        )
    )
    group = step.optimizer.param_groups[0]
    for lr, momentum in ((0.1, 0.9), (0.05, 0.9), (0.05, 0.85), (0.02, 0.8)):
        group.update(lr=lr, momentum=momentum)
        step((torch.zeros(1, 2),), torch.zeros(1, 1))
    hypers = [groups[0][0] if groups else None for groups in calls]
    assert hypers[2:] == [None, None] and step.update is None
    # The learning rate went in as the same tensor (on the parameters' device), refilled.
    assert hypers[0]["lr"] is hypers[1]["lr"] and float(hypers[1]["lr"]) == 0.05
    assert hypers[0]["lr"].device == step.params[0].device


def test_each_program_compiles_its_own_code():
    """Dynamo's limit of 8 compiled variants is per code object: programs must not share."""
    spec = rings(tdsl.Optimizer("adam", lr=0.01), compile=True)
    first, second = (tdsl.compile(spec)._steps.compiled for _ in range(2))
    for a, b in (
        (first.compiled, second.compiled),
        (first.compiled_forward, second.compiled_forward),
    ):
        code_a, code_b = (getattr(f, "_torchdynamo_orig_callable", f).__code__ for f in (a, b))
        assert code_a is not code_b


def test_a_step_torch_cannot_compile_is_one_message_not_its_internals():
    program = tdsl.compile(rings(tdsl.Optimizer("sgd", lr=0.1), compile=True))
    step = program._steps.compiled

    def refuse(*_args):
        raise RuntimeError("Unsupported: a graph break\n  File internals.py, line 1")

    step.steady_step.compiled = refuse
    with pytest.raises(CompileError) as caught:
        step((torch.zeros(1, 2),), torch.zeros(1, 1))
    assert str(caught.value) == (
        "train.compile: torch could not compile this model's training step (RuntimeError: "
        "Unsupported: a graph break); train it with train.compile: false"
    )
