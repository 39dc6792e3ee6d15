"""The pure step's out-of-place optimizer updates: bitwise what torch's own optimizers do,
with the input state left as it was."""

from __future__ import annotations

import copy
from collections import OrderedDict

import attrs
import pytest
import torch
from helpers import first_batches
from helpers import ring_spec as compile_test_rings
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

import tdsl
from tdsl.train.program import compile
from tdsl.train.pure_updates import pure_update_for
from tdsl.train.state import DonatedStateError

CPU = torch.device("cpu")

# (optimizer class, its arguments, per-group arguments for the second layer's parameters)
COVERED = {
    "sgd": (torch.optim.SGD, {"lr": 0.1}, {}),
    "sgd_weight_decay_maximize": (
        torch.optim.SGD,
        {"lr": 0.1, "weight_decay": 0.01, "maximize": True},
        {"lr": 0.03},
    ),
    "sgd_momentum_dampening": (
        torch.optim.SGD,
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.01},
        {"lr": 0.05, "weight_decay": 0.0},
    ),
    "sgd_nesterov": (
        torch.optim.SGD,
        {"lr": 0.1, "momentum": 0.8, "nesterov": True, "maximize": True},
        {"momentum": 0.5},
    ),
    "adam": (torch.optim.Adam, {"lr": 0.01}, {}),
    "adam_weight_decay_maximize": (
        torch.optim.Adam,
        {"lr": 0.01, "weight_decay": 0.1, "maximize": True, "betas": (0.8, 0.99)},
        {"lr": 0.002, "weight_decay": 0.0},
    ),
    "adam_amsgrad": (torch.optim.Adam, {"lr": 0.01, "amsgrad": True, "eps": 1e-6}, {}),
    "adamw": (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.05}, {"weight_decay": 0.3}),
    "adamw_amsgrad_maximize": (
        torch.optim.AdamW,
        {"lr": 0.01, "amsgrad": True, "maximize": True},
        {"lr": 0.1},
    ),
}


def bits(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's bit patterns, so that 0.0 and -0.0 (or two NaNs) compare as different."""
    ints = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    return tensor.view(ints[tensor.element_size()])


def assert_bitwise(actual, expected, where: str = "") -> None:
    """Same nested dicts (keys in the same order) and tuples, tensors equal bit for bit."""
    if isinstance(expected, torch.Tensor) and expected.is_sparse:
        assert actual.is_sparse, where
        actual, expected = actual.coalesce(), expected.coalesce()
        assert_bitwise((actual.indices(), actual.values()), (expected.indices(), expected.values()))
    elif isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_bitwise(a, e, f"{where}[{index}]")
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), where
        assert list(actual) == list(expected), where
        for key, value in expected.items():
            assert_bitwise(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), where
        assert (actual.dtype, actual.shape) == (expected.dtype, expected.shape), where
        assert torch.equal(bits(actual), bits(expected)), where
    else:
        assert actual == expected, where


def tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    items = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, tuple) else ()
    return [t for item in items for t in tensors(item)]


def net() -> nn.Module:
    torch.manual_seed(0)
    # 128 x 300 weights: more values than torch's parallel grain, so with two threads the
    # kernels split their work as they would on a real model.
    return nn.Sequential(OrderedDict(first=nn.Linear(300, 128), second=nn.Linear(128, 3)))


def groups(module: nn.Module, second: dict) -> list[dict]:
    return [
        {"params": list(module.first.parameters())},
        {"params": list(module.second.parameters()), **second},
    ]


def gradients(module: nn.Module, step: int) -> dict[str, torch.Tensor | None]:
    """Random gradients; `second.bias` never gets one and `first.bias` none on step 1."""
    generator = torch.Generator().manual_seed(step)
    grads = {n: torch.randn(p.shape, generator=generator) for n, p in module.named_parameters()}
    grads["first.weight"][0] = 0.0  # zero gradients, where signs of zeros could go astray
    grads["second.bias"] = None
    if step == 1:
        grads["first.bias"] = None
    return grads


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("config", COVERED, ids=str)
def test_out_of_place_update_is_torchs_own_bitwise(config, threads):
    cls, args, second = COVERED[config]
    ours, theirs = net(), net()
    optimizer = cls(groups(ours, second), **args)
    reference = cls(groups(theirs, second), **args)
    update = pure_update_for(optimizer, ours, CPU)
    assert update is not None and update.covers(g for g in optimizer.param_groups)
    params = {n: p.detach().clone() for n, p in ours.named_parameters()}
    state: dict = {}
    names = {p: n for n, p in theirs.named_parameters()}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for step in range(4):
            grads = gradients(ours, step)
            for module in (ours, theirs):
                for name, param in module.named_parameters():
                    grad = grads[name]
                    param.grad = None if grad is None else grad.clone()
            before = copy.deepcopy((params, state))
            reference.step()
            made = update(params, state)
            assert made is not None
            assert_bitwise((params, state), before, "input")  # only read
            # and shared with nothing new: a later donated step may write to the new tensors
            assert not {t.data_ptr() for t in tensors(made)} & {
                t.data_ptr() for t in tensors(before)
            }
            params, state = made
            assert_bitwise(params, {n: p.detach() for n, p in theirs.named_parameters()})
            assert_bitwise(state, {names[p]: s for p, s in reference.state.items()}, "state")
    finally:
        torch.set_num_threads(previous_threads)


@pytest.mark.parametrize(
    "cls, args",
    [
        (torch.optim.Adam, {"foreach": True}),
        (torch.optim.Adam, {"capturable": True}),
        (torch.optim.Adam, {"differentiable": True}),
        (torch.optim.AdamW, {"lr": torch.tensor(0.01)}),
        (torch.optim.SGD, {"lr": 0.1, "fused": True}),
    ],
)
def test_options_torch_runs_differently_are_not_covered(cls, args):
    module = net()
    optimizer = cls(module.parameters(), **args)
    update = pure_update_for(optimizer, module, CPU)
    assert update is not None and not update.covers(optimizer.param_groups)


def test_other_optimizers_and_devices_get_no_out_of_place_update():
    module = net()
    assert pure_update_for(torch.optim.RMSprop(module.parameters()), module, CPU) is None
    adam = torch.optim.Adam(module.parameters())
    assert pure_update_for(adam, module, torch.device("cuda")) is None


@pytest.mark.parametrize("layout", ["sparse", "strided"])
def test_sparse_or_strided_tensors_are_left_to_torch(layout):
    if layout == "sparse":
        module: nn.Module = nn.Embedding(10, 3, sparse=True)
        module(torch.tensor([1, 2])).sum().backward()
    else:  # a transposed weight, whose gradient autograd lays out the same way
        module = nn.Linear(3, 4)
        module.weight.data = module.weight.data.t().contiguous().t()
        module(torch.ones(2, 3)).sum().backward()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    update = pure_update_for(optimizer, module, CPU)
    assert update is not None
    assert update({n: p.detach() for n, p in module.named_parameters()}, {}) is None


# --- through the program's train_step ----------------------------------------------------


def ring_spec(optimizer: tdsl.Optimizer, **train) -> tdsl.Spec:
    """test_compile's rings, with a buffer to update (batchnorm's running statistics)."""
    layers = [
        tdsl.Layer("linear", out_features=8),
        tdsl.Layer("batchnorm"),
        tdsl.Layer("relu"),
        tdsl.Layer("linear", out_features=1),
    ]
    return attrs.evolve(compile_test_rings(optimizer, layers=layers), train=tdsl.Train(**train))


def sparse_embedding_spec() -> tdsl.Spec:
    return tdsl.Spec(
        name="sparse",
        seed=0,
        data=tdsl.RandomData(n=64, int_high=20, target=tdsl.Target(kind="binary")),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[4], dtype="int64")],
            layers=[
                tdsl.Layer("embedding", num_embeddings=20, embedding_dim=3, sparse=True),
                tdsl.Layer("flatten"),
                tdsl.Layer("linear", out_features=1),
            ],
        ),
        loss=tdsl.Loss("bce_with_logits"),
        optimizer=tdsl.Optimizer("sgd", lr=0.1, momentum=0.9),
    )


GROUPS = [tdsl.ParamGroup(params=["*.bias"], lr=0.05, weight_decay=0.0)]
SPECS = {
    "adam_groups_step_schedule": ring_spec(
        tdsl.Optimizer(
            "adam",
            lr=0.01,
            weight_decay=0.01,
            groups=GROUPS,
            schedule=tdsl.Schedule("step", interval="step", step_size=2, gamma=0.5),
        )
    ),
    "adamw_clipped": ring_spec(
        tdsl.Optimizer("adamw", lr=0.01, amsgrad=True), clip_norm=0.1, clip_value=0.05
    ),
    "sgd_nesterov_groups": ring_spec(
        tdsl.Optimizer("sgd", lr=0.1, momentum=0.9, nesterov=True, groups=GROUPS)
    ),
}
# (spec, whether its pure steps update out of place)
FALLBACKS = {
    "rmsprop": (ring_spec(tdsl.Optimizer("rmsprop", lr=0.01)), False),
    "adam_foreach": (ring_spec(tdsl.Optimizer("adam", lr=0.01, foreach=True)), False),
    "accumulate": (ring_spec(tdsl.Optimizer("adam", lr=0.01), accumulate=2), False),
    "skip_batch": (ring_spec(tdsl.Optimizer("adam", lr=0.01), on_nan="skip_batch"), False),
    "sparse_gradient": (sparse_embedding_spec(), False),
}


def contents(state) -> dict:
    """Everything in a state that a step computes."""
    fields = attrs.asdict(state, recurse=False)
    return {k: v for k, v in fields.items() if k not in ("lease", "rng", "hyper", "schedule")}


@pytest.fixture
def torch_steps():
    """Counts the calls of any torch optimizer's own step() while the test runs."""
    calls: list[object] = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: calls.append(optimizer)
    )
    yield calls
    handle.remove()


def run(program, count: int, donate: bool):
    state = program.init()
    for batch in first_batches(program.spec, count, size=16):
        state, _ = program.train_step(state, batch, donate=donate)
    return state


@pytest.mark.parametrize(
    "spec, out_of_place",
    [(s, True) for s in SPECS.values()] + list(FALLBACKS.values()),
    ids=list(SPECS) + list(FALLBACKS),
)
def test_pure_steps_match_donated_ones_bitwise(spec, out_of_place, torch_steps):
    """Donated steps run torch's optimizer in place on the state's own tensors."""
    programs = compile(spec), compile(spec)
    torch_steps.clear()  # validation may try a step
    donated = run(programs[0], 4, donate=True)
    assert len(torch_steps) == 4
    pure = run(programs[1], 4, donate=False)
    assert len(torch_steps) == (4 if out_of_place else 8)
    assert_bitwise(contents(pure), contents(donated))
    assert pure.hyper == donated.hyper and pure.schedule == donated.schedule


def test_pure_step_leaves_its_input_alone_even_when_the_result_is_donated():
    program = compile(SPECS["adam_groups_step_schedule"])
    bias = program.module.linear1.bias
    first, second, third = first_batches(program.spec, 3, size=16)
    state, _ = program.train_step(program.init(), first)  # the bias has Adam moments now
    kept = copy.deepcopy(state)
    bias.requires_grad_(False)  # no gradient this step: torch's step leaves the bias alone
    after, _ = program.train_step(state, second)
    assert_bitwise(contents(state), contents(kept))
    assert_bitwise(after.params["linear1.bias"], state.params["linear1.bias"])
    assert_bitwise(after.optimizer["linear1.bias"], state.optimizer["linear1.bias"])
    assert not torch.equal(after.params["linear1.weight"], state.params["linear1.weight"])
    bias.requires_grad_(True)  # this donated step updates the bias and its moments in place
    program.train_step(after, third, donate=True)
    assert_bitwise(contents(state), contents(kept))
    with pytest.raises(DonatedStateError, match="donated"):
        program.train_step(after, third)
    program.eval_step(state, first)  # the old state is still usable, and steps the same
    again, _ = program.train_step(state, second)
    assert_bitwise(contents(again), contents(program.train_step(kept, second)[0]))
