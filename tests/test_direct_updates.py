"""`DirectUpdate`: torch's functional update called without `Optimizer.step`'s wrapper
gives bitwise the parameters and optimizer state `optimizer.step()` gives, and everything
it does not cover still goes through `optimizer.step()`."""

import copy

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from tdsl.train.direct_updates import DirectUpdate

CONFIGS = [
    (torch.optim.SGD, {"lr": 0.1}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.8, "dampening": 0.1, "maximize": True}),
    (torch.optim.Adam, {"lr": 0.01}),
    (torch.optim.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.05}),
]


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = torch.nn.Linear(3, 4), torch.nn.Linear(4, 1)
        self.unused = torch.nn.Parameter(torch.ones(2))  # never gets a gradient

    def forward(self, x):
        return self.second(torch.tanh(self.first(x)))


def train(model, optimizer, step, steps=5):
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 3, generator=generator)
        optimizer.zero_grad()
        model(x).square().mean().backward()
        step()


class Counted:
    def __init__(self, optimizer):
        self.calls, self.step = 0, optimizer.step
        optimizer.step = self

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.step(*args, **kwargs)


def pair(kind, options):
    model = Model()
    twin = copy.deepcopy(model)
    return (model, kind(model.parameters(), **options)), (twin, kind(twin.parameters(), **options))


@pytest.mark.parametrize(("kind", "options"), CONFIGS)
def test_the_direct_update_is_bitwise_the_optimizers_step(kind, options):
    (model, optimizer), (twin, twin_optimizer) = pair(kind, options)
    counted = Counted(optimizer)
    train(model, optimizer, DirectUpdate(optimizer))
    train(twin, twin_optimizer, twin_optimizer.step)
    for mine, theirs in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    mine, theirs = optimizer.state_dict()["state"], twin_optimizer.state_dict()["state"]
    assert mine.keys() == theirs.keys()  # the unused parameter got no state in either
    for index in mine:
        assert mine[index].keys() == theirs[index].keys()
        for key in mine[index]:
            assert torch.equal(mine[index][key], theirs[index][key]), (index, key)
    # Only steps before the optimizer's state existed went through optimizer.step().
    plain_sgd = kind is torch.optim.SGD and not options.get("momentum")
    assert counted.calls == (0 if plain_sgd else 1)


class Subclassed(torch.optim.Adam):
    pass


@pytest.mark.parametrize(
    "make",
    [
        lambda params: Subclassed(params, lr=0.01),  # may change what step() does
        lambda params: torch.optim.Adam(params, lr=0.01, foreach=True),
        lambda params: torch.optim.RMSprop(params, lr=0.01),
        lambda params: torch.optim.Adam(params, lr=torch.tensor(0.01)),
        # A tensor where pure_updates' list says a number (not only lr and betas).
        lambda params: torch.optim.SGD(params, lr=0.1, momentum=torch.tensor(0.9)),
    ],
)
def test_what_it_does_not_cover_goes_through_the_optimizers_step(make):
    model = Model()
    optimizer = make(model.parameters())
    counted = Counted(optimizer)
    train(model, optimizer, DirectUpdate(optimizer), steps=3)
    assert counted.calls == 3


def test_a_step_hook_still_runs():
    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    seen = []
    optimizer.register_step_post_hook(lambda *_: seen.append(1))
    handle = register_optimizer_step_pre_hook(lambda *_: seen.append(2))  # one for every optimizer
    try:
        train(model, optimizer, DirectUpdate(optimizer), steps=3)
    finally:
        handle.remove()
    assert seen == [2, 1] * 3


def test_sparse_gradients_go_through_the_optimizers_step():
    torch.manual_seed(0)
    table = torch.nn.Embedding(5, 2, sparse=True)
    twin = copy.deepcopy(table)
    optimizer = torch.optim.SGD(table.parameters(), lr=0.1, momentum=0.9)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    counted = Counted(optimizer)
    update = DirectUpdate(optimizer)
    for step in range(3):
        for module, opt, do in ((table, optimizer, update), (twin, twin_optimizer, None)):
            opt.zero_grad()
            module(torch.tensor([step, 4])).sum().backward()
            (do or opt.step)()
    assert counted.calls == 3
    assert torch.equal(table.weight, twin.weight)


@pytest.mark.parametrize(("kind", "options"), [CONFIGS[1], CONFIGS[3]])
def test_a_parameter_that_starts_getting_gradients_later_is_updated_as_torch_does(kind, options):
    (model, optimizer), (twin, twin_optimizer) = pair(kind, options)
    counted = Counted(optimizer)
    update = DirectUpdate(optimizer)
    for step in range(6):
        for module, opt, do in ((model, optimizer, update), (twin, twin_optimizer, None)):
            opt.zero_grad()
            x = torch.full((4, 3), float(step))
            loss = module(x).square().mean()
            if step >= 3:  # from here on the unused parameter is used too
                loss = loss + module.unused.sum()
            loss.backward()
            (do or opt.step)()
    assert torch.equal(model.unused, twin.unused) and not torch.equal(model.unused, torch.ones(2))
    for mine, theirs in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    assert counted.calls == 2  # the first step and the one that gave it state
