"""`SteadyCalls`: compiled code runs without dynamo's guard evaluation only while nothing
those guards check can have changed; every change goes back through the guards, so the
results are always what guarded calls give."""

import types

import attrs
import pytest
import torch
from test_compiled import needs_compiler, rings

import tdsl
from tdsl.data import load_data
from tdsl.train.loops import fit
from tdsl.train.steady_calls import SteadyCalls, layout

pytestmark = needs_compiler


class Counter:
    def __init__(self):
        self.value = 0

    def __call__(self) -> int:
        return self.value


def ones_plus(x: torch.Tensor) -> torch.Tensor:
    # The default dtype and grad mode are baked into the graph: a stale graph shows.
    return x.sum() + torch.ones(2)


class Entered:
    """Counts the calls that enter the compiled wrapper (dynamo) at all."""

    def __init__(self, compiled):
        self.compiled, self.count = compiled, 0

    def __call__(self, *args):
        self.count += 1
        return self.compiled(*args)


@pytest.fixture(params=["stance", "direct"])
def steady(request):
    """SteadyCalls over a fresh copy of `ones_plus` (its own dynamo cache), skipping the
    guards by dynamo's stance or, given what was compiled, by running the compiled code
    directly."""

    def make():
        fn = types.FunctionType(ones_plus.__code__.replace(), globals(), "ones_plus")
        traced = fn if request.param == "direct" else None
        generation = Counter()
        return SteadyCalls(torch.compile(fn, backend="eager"), generation, traced), generation

    return make


def test_the_same_layout_skips_the_guards_and_a_new_one_does_not(steady):
    calls, _ = steady()
    x = torch.ones(3)
    for _ in range(3):
        assert calls(layout([x]), x).tolist() == [4.0, 4.0]
    assert calls.steady_calls == 2  # the first call went through the guards
    y = torch.ones(4, 2)
    assert calls(layout([y]), y).tolist() == [9.0, 9.0]  # new layout: guarded (recompiles)
    assert calls.steady_calls == 2
    assert calls(layout([y]), y).tolist() == [9.0, 9.0]
    assert calls(layout([x]), x).tolist() == [4.0, 4.0]  # both known: steady, right entry
    assert calls.steady_calls == 4


def test_a_new_generation_of_slots_goes_through_the_guards(steady):
    calls, generation = steady()
    x = torch.ones(3)
    calls(layout([x]), x)
    generation.value += 1
    calls(layout([x]), x)
    assert calls.steady_calls == 0
    calls(layout([x]), x)
    assert calls.steady_calls == 1


def test_a_changed_default_dtype_or_grad_mode_goes_through_the_guards(steady):
    calls, _ = steady()
    x = torch.ones(3)
    calls(layout([x]), x)
    calls(layout([x]), x)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        # Without the check the graph traced under float32 would answer float32.
        assert calls(layout([x]), x).dtype == torch.float64
    finally:
        torch.set_default_dtype(before)
    assert calls.steady_calls == 1
    with torch.no_grad():
        calls(layout([x]), x)
    assert calls.steady_calls == 1


def test_a_function_mode_or_a_reset_cache_goes_through_the_guards(steady):
    calls, _ = steady()
    x = torch.ones(3)
    calls(layout([x]), x)
    with torch.device("meta"):  # a torch function mode: new tensors on meta
        assert calls(layout([x]), x).device.type == "meta"
    assert calls.steady_calls == 0
    torch._dynamo.reset()  # no compiled code left: the steady call finds none, retried
    assert calls(layout([x]), x).tolist() == [4.0, 4.0]
    assert calls.steady_calls == 0


def test_a_direct_steady_call_does_not_enter_dynamo_and_a_reset_stops_it(steady):
    calls, _ = steady()
    if calls.traced is None:
        pytest.skip("the stance path enters dynamo by design")
    calls.compiled = entered = Entered(calls.compiled)
    x = torch.ones(3)
    for _ in range(3):
        assert calls(layout([x]), x).tolist() == [4.0, 4.0]
    assert (entered.count, calls.steady_calls) == (1, 2)
    # The compiled code is dropped: the steady call under the stance finds none, and the
    # guarded retry compiles anew.
    torch._dynamo.reset()
    assert calls(layout([x]), x).tolist() == [4.0, 4.0]
    assert (entered.count, calls.steady_calls) == (3, 2)
    assert calls(layout([x]), x).tolist() == [4.0, 4.0]
    assert (entered.count, calls.steady_calls) == (3, 3)


def test_a_layout_tells_apart_what_tensor_guards_check():
    x = torch.ones(4, 2)
    assert layout([x]) == layout([torch.zeros(4, 2)])
    for other in (
        torch.ones(4, 3),
        torch.ones(2, 4).t(),  # strides
        torch.ones(4, 2, dtype=torch.float64),
        torch.ones(4, 2, requires_grad=True),
    ):
        assert layout([other]) != layout([x])
    with torch.inference_mode():
        made = torch.ones(4, 2)
    assert layout([made]) != layout([x])


def test_a_compiled_fit_runs_steady_steps_and_each_epoch_reloads_through_the_guards():
    spec = rings(tdsl.Optimizer("adam", lr=0.01), eval_batch_size=15, compile=True)
    data = load_data(spec)
    program = tdsl.compile(spec)
    compiled = fit(program, program.init(), data, progress=False)
    step = program._steps.compiled
    # 2 epochs of 7 full batches and a short one. Guarded: the first compiled step (the
    # very first is eager), the first step after each epoch's reload, and each epoch's
    # short batch (a new layout since the reload); the rest are steady.
    assert step.steady_step.steady_calls == (7 - 2) + (7 - 1)
    assert step.steady_forward.steady_calls == 2 * (4 - 1)  # 4 validation batches an epoch
    # Each steady call ran the compiled code directly, not through dynamo.
    assert all(step.steady_step.known.values()) and all(step.steady_forward.known.values())
    eager_spec = attrs.evolve(spec, train=attrs.evolve(spec.train, compile=False))
    eager_program = tdsl.compile(eager_spec)
    eager = fit(eager_program, eager_program.init(), data, progress=False)
    for key in ("loss", "val_loss", "val_accuracy"):
        assert compiled.history[-1][key] == pytest.approx(eager.history[-1][key], rel=1e-4)
