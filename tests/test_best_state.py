"""The in-memory best state that `fit` keeps is held, not copied: the loop must not donate
it to the next step, whatever the optimizer (out-of-place updates or cloning loads)."""

import copy

import pytest
import torch

import tdsl
from tdsl.train.standard import BestState

SPEC = """\
name: best
seed: 3
data: {kind: rings, n_positive: 120, n_negative: 120, split: {train: 0.7, val: 0.3}}
model:
  inputs: [{shape: [2]}]
  layers: [{op: linear, out_features: 8}, relu, {op: linear, out_features: 1}]
loss: bce_with_logits
optimizer: {kind: OPTIMIZER, lr: 0.05}
metrics: [accuracy]
train: {epochs: 6, batch_size: 16}
device: cpu
"""


class _Snapshots:
    """Deep copies of every epoch's state, taken when the epoch ends."""

    def __init__(self):
        self.states = {}

    def on_epoch_end(self, run, state, logs):
        self.states[state.epoch] = copy.deepcopy((state.params, state.optimizer))


# adam and sgd update out of place after a kept state; rmsprop and adagrad clone it.
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop", "adagrad"])
def test_best_state_is_the_best_epochs_untouched(optimizer):
    spec = tdsl.load(SPEC.replace("OPTIMIZER", optimizer))
    program = tdsl.compile(spec)
    data = tdsl.load_data(spec)
    snapshots = _Snapshots()
    result = tdsl.fit(program, program.init(), data, callbacks=[snapshots])
    best = result.best_state
    losses = [row["val_loss"] for row in result.history]
    assert best.epoch == losses.index(min(losses)) + 1
    params, moments = snapshots.states[best.epoch]
    assert all(torch.equal(best.params[n], params[n]) for n in params)
    for name, state in moments.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(best.optimizer[name][key], value), (name, key)
    # Usable: neither donated nor changed by the epochs after it.
    tdsl.evaluate(program, best, data.val)
    if best.epoch < result.state.epoch:
        assert not torch.equal(best.params["linear1.weight"], result.state.params["linear1.weight"])


def test_training_is_the_same_with_and_without_keeping_the_best():
    spec = tdsl.load(SPEC.replace("OPTIMIZER", "adam"))
    program = tdsl.compile(spec)
    data = tdsl.load_data(spec)
    kept = tdsl.fit(program, program.init(), data)
    plain = tdsl.fit(program, program.init(), data, keep_best=False)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in kept.history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in plain.history]
    assert all(torch.equal(kept.state.params[n], plain.state.params[n]) for n in kept.state.params)


def test_best_state_outside_a_loop_copies():
    spec = tdsl.load(SPEC.replace("OPTIMIZER", "adam"))
    program = tdsl.compile(spec)
    state = program.init()
    keeper = BestState("val_loss")
    keeper.on_epoch_end(None, state, {"val_loss": 1.0})
    assert keeper.state is not state
    assert torch.equal(keeper.state.params["linear1.weight"], state.params["linear1.weight"])
    assert keeper.state.params["linear1.weight"] is not state.params["linear1.weight"]
    assert keeper.state.lease is not state.lease
