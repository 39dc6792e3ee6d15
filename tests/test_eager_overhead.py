"""The eager loop's own overhead (issue 23): what `compile` + `init` reuse, and how little
tdsl code runs per step, counted deterministically (Python frames, not seconds)."""

import io
import sys
from pathlib import Path

import attrs
import pytest
import torch
from helpers import ring_spec

import tdsl
from tdsl.train import checked_specs, loops
from tdsl.train.fresh_states import FreshStates
from tdsl.train.progress import ProgressPrinter

PACKAGE = str(Path(tdsl.__file__).parent)


def spec_(**train) -> tdsl.Spec:
    spec = ring_spec(tdsl.Optimizer("adam", lr=0.01))
    return attrs.evolve(spec, train=attrs.evolve(spec.train, **train)) if train else spec


def tdsl_frames(fn, other=lambda frame: None) -> int:
    """Python functions of the tdsl package entered while `fn` runs (`other` is told of
    every other one)."""
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        if event == "call" and frame.f_code.co_filename.startswith(PACKAGE):
            count += 1
        elif event == "call":
            other(frame)

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


@pytest.fixture
def validations(monkeypatch):
    """How many times `compile` validated a spec."""
    calls = []
    real = checked_specs.validated
    monkeypatch.setattr(
        checked_specs, "validated", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    checked_specs.forget()
    yield calls
    checked_specs.forget()


def test_an_equal_spec_compiles_again_without_validating(validations):
    first = tdsl.compile(spec_())
    second = tdsl.compile(spec_())  # equal, not the same object
    assert len(validations) == 1
    a, b = first.init(), second.init()
    assert all(torch.equal(a.params[n], b.params[n]) for n in a.params)
    tdsl.compile(spec_(epochs=3))  # another spec: validated
    with torch.device("cpu"):
        torch.set_default_dtype(torch.float64)
        try:
            tdsl.compile(spec_())  # what validation infers depends on the default dtype
        finally:
            torch.set_default_dtype(torch.float32)
    assert len(validations) == 3


def test_specs_whose_checks_read_outside_them_validate_every_time(validations, tmp_path):
    table = tmp_path / "rows.csv"
    table.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    data = tdsl.Table(file=str(table), columns="all", target="y", target_kind="binary")
    from_file = attrs.evolve(spec_(), data=data)
    for spec, allow in (
        (from_file, ()),
        (from_file, ()),
        (spec_(), ("tests",)),
        (spec_(), ("tests",)),
    ):
        tdsl.compile(spec, allow_imports=allow)
    assert len(validations) == 4


def test_a_spec_with_errors_is_refused_every_time(validations):
    spec = spec_()
    layers = (*spec.model.layers[:-1], tdsl.Layer("lineer", out_features=1))
    broken = attrs.evolve(spec, model=attrs.evolve(spec.model, layers=layers))
    for _ in range(2):
        with pytest.raises(tdsl.SpecError):
            tdsl.compile(broken)
    assert len(validations) == 2


def test_init_clones_the_kept_weights_and_training_does_not_touch_them():
    program = tdsl.compile(spec_())
    start = program.init()
    rebuilt = FreshStates.__new__(FreshStates)
    rebuilt.__dict__.update(program._steps.fresh.__dict__, kept=None)  # build every time
    built = rebuilt(program.spec.seed)
    state = start
    batch = next(tdsl.load_data(program.spec).train.batches(16, 0))
    for donate in (False, True, True):
        state, _ = program.train_step(state, batch, donate=donate)
    with torch.no_grad():
        for param in program.module.parameters():
            param.data.mul_(3)  # even a caller's in-place change of the scratch module
    again = program.init()
    for name, value in built.params.items():
        assert torch.equal(value, again.params[name])
        assert value.data_ptr() != again.params[name].data_ptr()
    assert torch.equal(built.rng[0], again.rng[0])
    assert not any(torch.equal(start.params[n], state.params[n]) for n in start.params)


def test_a_train_step_runs_few_tdsl_functions():
    program = tdsl.compile(spec_())
    batches = list(tdsl.load_data(program.spec).train.batches(10, 0))[:7]
    state, _ = program.train_step(program.init(), batches[0])
    # The first donated step gathers what the optimizer's update takes (once per state).
    states = [program.train_step(state, batches[1], donate=True)[0]]

    def steps():
        for batch in batches[2:]:
            states.append(program.train_step(states[-1], batch, donate=True)[0])

    # 17 before issue 23: the autocast context, per-step dicts of no penalties, helpers.
    # 9 before the update called torch's functional Adam itself: its two frames replace
    # Optimizer.step's wrapper, which is not entered any more (torch's frames, not counted).
    entered = set()

    def code(frame):
        entered.add((Path(frame.f_code.co_filename).name, frame.f_code.co_name))

    assert tdsl_frames(steps, code) <= 11 * 5
    assert ("adam.py", "_single_tensor_adam") in entered and ("adam.py", "step") not in entered


def test_validation_runs_few_tdsl_functions_per_batch():
    program = tdsl.compile(spec_())
    data = tdsl.load_data(program.spec)
    state = program.init()
    many = tdsl_frames(lambda: loops.evaluate(program, state, data.train, batch_size=10))
    one = tdsl_frames(lambda: loops.evaluate(program, state, data.train, batch_size=1000))
    # ~20 per batch before issue 23: a no-grad region, a state load and mode per batch.
    assert (many - one) / (len(data.train) // 10) <= 10


def test_one_validation_pass_equals_evaluating_batch_by_batch():
    program = tdsl.compile(spec_())
    data = tdsl.load_data(program.spec)
    state = program.init()
    seen = []
    program.eval_batches(state, data.val.batches(7), seen.append)
    single = [program.eval_step(state, batch) for batch in data.val.batches(7)]
    assert len(seen) == len(single)
    for a, b in zip(seen, single, strict=True):
        assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["output"], b["output"])
    assert torch.is_grad_enabled()

    def refuse(metrics):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        program.eval_batches(state, data.val.batches(7), refuse)
    assert torch.is_grad_enabled()  # the no-grad region ends with the pass, however it ends


class Counting:
    def __init__(self, wants: bool):
        self.wants_batches, self.batches = wants, 0

    def on_batch_end(self, run, metrics):
        self.batches += 1


def test_callbacks_that_want_no_batches_are_not_called_per_step():
    program = tdsl.compile(spec_(epochs=1))
    data = tdsl.load_data(program.spec)
    quiet, listening, pipe = Counting(False), Counting(True), ProgressPrinter(io.StringIO())
    assert not pipe.wants_batches  # a progress line per epoch: nothing to do per step
    tdsl.fit(program, program.init(), data, callbacks=[quiet, listening, pipe])
    assert quiet.batches == 0
    assert listening.batches == data.train.num_batches(program.spec.train.batch_size)
