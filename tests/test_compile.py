"""A compiled train_step equals a hand-written PyTorch step, and steps are pure."""

from collections import OrderedDict

import attrs
import pytest
import torch
from helpers import first_batches, ring_spec
from torch import nn

import tdsl
from tdsl.data import load_data
from tdsl.train.program import compile
from tdsl.train.state import DonatedStateError


def hand_written_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(
            linear1=nn.Linear(2, 4),
            relu1=nn.ReLU(),
            linear2=nn.Linear(4, 8),
            relu2=nn.ReLU(),
            linear3=nn.Linear(8, 1),
        )
    )


OPTIMIZERS = {
    "sgd_momentum": (
        tdsl.Optimizer("sgd", lr=0.1, momentum=0.9),
        torch.optim.SGD,
        {"momentum": 0.9},
    ),
    "adam": (tdsl.Optimizer("adam", lr=0.01), torch.optim.Adam, {}),
    "adamw": (
        tdsl.Optimizer("adamw", lr=0.01, weight_decay=0.05),
        torch.optim.AdamW,
        {"weight_decay": 0.05},
    ),
}
REGULARIZERS = {
    "none": (),
    "l1_l2": (tdsl.Regularizer(kind="l1", weight=0.01), tdsl.Regularizer(kind="l2", weight=0.02)),
}


@pytest.mark.parametrize("regularizers", REGULARIZERS, ids=str)
@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=str)
def test_train_step_matches_hand_written_pytorch(optimizer, regularizers):
    tdsl_opt, torch_opt, torch_args = OPTIMIZERS[optimizer]
    spec = ring_spec(tdsl_opt, REGULARIZERS[regularizers])
    program = compile(spec)
    state = program.init()

    net = hand_written_net(spec.seed)
    for name, tensor in net.state_dict().items():  # same initialization, bit for bit
        assert torch.equal(tensor, state.params[name]), name
    opt = torch_opt(net.parameters(), lr=spec.optimizer.lr, **torch_args)
    criterion = nn.BCEWithLogitsLoss()

    for batch in first_batches(spec, 3):
        state, metrics = program.train_step(state, batch)
        x, y = batch.features[0], batch.target
        loss = criterion(net(x), y)
        weights = [p for n, p in net.named_parameters() if n.endswith("weight")]
        if regularizers == "l1_l2":
            loss = loss + 0.01 * sum(w.abs().sum() for w in weights)
            loss = loss + 0.02 * 0.5 * sum(w.pow(2).sum() for w in weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        expected_data_loss = criterion(net(x).detach(), y)  # after the update; not compared
        del expected_data_loss

    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(state.params[name], tensor, rtol=1e-6, atol=1e-7)
    assert state.step == 3


def test_reported_loss_is_the_data_loss_and_terms_are_separate():
    regs = REGULARIZERS["l1_l2"]
    program = compile(ring_spec(tdsl.Optimizer("sgd", lr=0.1), regs))
    state = program.init()
    batch = first_batches(program.spec, 1)[0]
    net = hand_written_net(program.spec.seed)
    _, metrics = program.train_step(state, batch)
    data_loss = nn.BCEWithLogitsLoss()(net(batch.features[0]), batch.target)
    weights = [p for n, p in net.named_parameters() if n.endswith("weight")]
    torch.testing.assert_close(metrics["loss"], data_loss.detach())
    torch.testing.assert_close(metrics["l1"], 0.01 * sum(w.abs().sum() for w in weights).detach())
    torch.testing.assert_close(metrics["l2"], 0.01 * sum(w.pow(2).sum() for w in weights).detach())


def dropout_spec() -> tdsl.Spec:
    layers = [
        tdsl.Layer("linear", out_features=16),
        tdsl.Layer("batchnorm"),
        tdsl.Layer("relu"),
        tdsl.Layer("dropout", p=0.5),
        tdsl.Layer("linear", out_features=1),
    ]
    return ring_spec(tdsl.Optimizer("adam", lr=0.01), layers=layers)


def clone_state(state):
    return {k: v.clone() for k, v in state.model_state_dict().items()}


def test_train_step_is_pure_and_deterministic():
    program = compile(dropout_spec())
    state = program.init()
    first, second = first_batches(program.spec, 2)
    state, _ = program.train_step(state, first)  # so optimizer state exists too
    before = clone_state(state)
    before_opt = {k: {n: v.clone() for n, v in s.items()} for k, s in state.optimizer.items()}

    a, metrics_a = program.train_step(state, second)
    b, metrics_b = program.train_step(state, second)

    for name, tensor in a.model_state_dict().items():
        assert torch.equal(tensor, b.model_state_dict()[name]), name
        assert not torch.equal(tensor, before[name]) or "num_batches" not in name
    assert torch.equal(metrics_a["loss"], metrics_b["loss"])
    for name, tensor in state.model_state_dict().items():
        assert torch.equal(tensor, before[name]), f"input state changed: {name}"
    for name, param_state in state.optimizer.items():
        for key, value in param_state.items():
            assert torch.equal(value, before_opt[name][key])
    assert torch.equal(state.rng[0], state.rng[0].clone())
    assert not torch.equal(a.buffers["batchnorm1.running_mean"], before["batchnorm1.running_mean"])


def test_donated_state_matches_and_cannot_be_reused():
    program = compile(dropout_spec())
    batch = first_batches(program.spec, 1)[0]
    pure, _ = program.train_step(program.init(), batch)
    donor = program.init()
    donated, _ = program.train_step(donor, batch, donate=True)
    for name, tensor in pure.model_state_dict().items():
        assert torch.equal(tensor, donated.model_state_dict()[name]), name
    with pytest.raises(DonatedStateError, match="donated"):
        program.train_step(donor, batch)
    with pytest.raises(DonatedStateError):
        program.eval_step(donor, batch)


def _all_tensors(state):
    optimizer = {f"{k}.{n}": v for k, s in state.optimizer.items() for n, v in s.items()}
    return {**state.model_state_dict(), **optimizer}


def assert_same_state(a, b):
    a, b = _all_tensors(a), _all_tensors(b)
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name


@pytest.mark.parametrize(
    "spec_fn", [dropout_spec, lambda: ring_spec(tdsl.Optimizer("sgd", lr=0.1, momentum=0.9))]
)
def test_donated_chains_with_evaluations_and_branches_match_pure_steps(spec_fn):
    """Steps skip reloading a donated state that is already in the module; interleaved
    evaluations, branches from older states and fresh states must not confuse that."""
    program = compile(spec_fn())
    batches = first_batches(program.spec, 4)
    pure = program.init()
    for batch in batches:
        pure, _ = program.train_step(pure, batch)

    state = program.init()
    branch_point = None
    for index, batch in enumerate(batches):
        program.eval_step(state, batches[0])  # reads the state: a later donation may skip loading
        if index == 2:
            branch_point = state
            program.train_step(program.init(), batch, donate=True)  # another state moves in
            program.eval_step(branch_point, batch)
            state, _ = program.train_step(state, batch)  # pure: branch_point stays usable
        else:
            state, _ = program.train_step(state, batch, donate=index > 0)
    assert_same_state(state, pure)
    replay, _ = program.train_step(branch_point, batches[2], donate=True)
    replay, _ = program.train_step(replay, batches[3], donate=True)
    assert_same_state(replay, pure)


def test_rng_state_passes_through_only_without_random_layers():
    plain = compile(ring_spec(tdsl.Optimizer("adam", lr=0.01)))
    state = plain.init()
    after, _ = plain.train_step(state, first_batches(plain.spec, 1)[0])
    assert after.rng is state.rng
    noisy = compile(dropout_spec())
    state = noisy.init()
    after, _ = noisy.train_step(state, first_batches(noisy.spec, 1)[0])
    assert not torch.equal(after.rng[0], state.rng[0])


def test_epoch_metrics_do_not_depend_on_how_often_pending_outputs_are_flushed(monkeypatch):
    from tdsl.train import loops

    spec = attrs.evolve(
        ring_spec(tdsl.Optimizer("adam", lr=0.01)),
        metrics=[tdsl.Metric("accuracy"), tdsl.Metric("auroc"), tdsl.Metric("f1")],
        train=tdsl.Train(epochs=2, batch_size=16),
    )
    data = load_data(spec)
    histories = []
    for flush in (1, 10**9):  # after every batch, or once per epoch
        monkeypatch.setattr(loops.EpochTotals, "FLUSH_ELEMENTS", flush)
        program = compile(spec)
        histories.append(loops.fit(program, program.init(), data).history)
    for by_batch, by_epoch in zip(*histories, strict=True):
        for key in ("accuracy", "auroc", "f1", "val_accuracy", "val_auroc", "loss", "val_loss"):
            assert by_batch[key] == pytest.approx(by_epoch[key], rel=1e-12), key


def test_eval_and_predict_leave_the_state_alone():
    program = compile(dropout_spec())
    state = program.init()
    before = clone_state(state)
    batch = first_batches(program.spec, 1)[0]
    metrics = program.eval_step(state, batch)
    outputs = program.predict_step(state, batch.features)
    assert outputs.shape == (batch.size, 1)
    assert set(metrics) >= {"loss", "count", "output", "target"}
    for name, tensor in state.model_state_dict().items():
        assert torch.equal(tensor, before[name])


def test_state_loads_into_plain_pytorch_modules():
    program = compile(ring_spec(tdsl.Optimizer("adam", lr=0.01)))
    state, _ = program.train_step(program.init(), first_batches(program.spec, 1)[0])
    net = hand_written_net(0)
    net.load_state_dict(state.model_state_dict())
    standalone = program.module_for(state)
    x = torch.randn(5, 2)
    torch.testing.assert_close(standalone(x), net(x))
    print(program.module)  # printable like any module


def test_epoch_schedule_advances_through_end_epoch():
    opt = tdsl.Optimizer("sgd", lr=0.1, schedule=tdsl.Schedule("step", step_size=1, gamma=0.5))
    program = compile(ring_spec(opt))
    state = program.init()
    assert state.lrs == (0.1,)
    later = program.end_epoch(state, {"loss": 1.0})
    assert later.lrs == pytest.approx((0.05,))
    assert state.lrs == (0.1,) and later.epoch == 1
    again = program.end_epoch(state, {"loss": 1.0})
    assert again.lrs == later.lrs


def test_compile_refuses_an_invalid_spec():
    spec = ring_spec(tdsl.Optimizer("adamm"))
    with pytest.raises(tdsl.SpecError, match="unknown optimizer 'adamm'"):
        compile(spec)
    fixed = attrs.evolve(spec, optimizer=tdsl.Optimizer("adam"))
    assert compile(fixed).module is not None
