"""`program.init()` gives the fp16 loss scaler's initial state, however far the steps have
moved the scaler they share with it (fp16 trains only on GPUs, so the state function is
driven directly here, with torch's CPU GradScaler)."""

from __future__ import annotations

import torch
from helpers import ring_spec

import tdsl
from tdsl.train.fresh_states import FreshStates


def test_init_after_training_starts_from_the_initial_scale():
    program = tdsl.compile(ring_spec(tdsl.Optimizer("sgd", lr=0.1)))
    known = program._steps.fresh
    scaler = torch.amp.GradScaler("cpu")
    fresh = FreshStates(
        program.spec,
        known.graph,
        program.module,
        program.device,
        (),
        known.values,
        None,
        known.hyper,
        None,
        scaler,
        known.layout,
    )
    initial = fresh(0).scaler
    assert initial["scale"] == 2.0**16 and initial["_growth_tracker"] == 0
    # What an fp16 step does to the scaler it shares: an overflowing gradient halves it.
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    for _ in range(3):
        scaler.scale((weight * torch.tensor([1.0, float("inf")])).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
    assert scaler.get_scale() == 2.0**13
    assert fresh(0).scaler == initial
    assert fresh(1).scaler == initial  # the path that builds the layers again, too
    fresh(0).scaler["scale"] = 1.0  # each state holds its own dict
    assert fresh(0).scaler == initial
