"""A cost trace runs two identical copies of a repeated layer and counts the second for the
ones after it (check/repeat_scaling.py): the figures must be those of running them all."""

from __future__ import annotations

from pathlib import Path

import torch
from test_cost import measured

import tdsl
import tdsl.check.cost_trace as cost_trace
from tdsl.check.cost import estimate
from tdsl.check.pipeline import validated
from tdsl.model.modules import Repeated

ROOT = Path(__file__).resolve().parents[1]

# Nested repeats, `first:` (copy 0 changes the shape), `vary:` (copies differ), a block
# whose copies save their own output (relu) and one whose copies do not (add), frozen copies.
NESTED = """
name: nested_repeats
data: {kind: random, n: 24, target: {kind: class, num_classes: 3}}
model:
  inputs: [{name: x, shape: [12]}]
  blocks:
    cell:
      params: {width: 16}
      layers:
        - {name: inner, op: linear, out_features: $width, repeat: 4}
        - {name: act, op: relu}
    residual:
      params: {width: 16}
      layers:
        - {name: norm, op: layer_norm}
        - {name: fc, op: linear, out_features: $width}
        - {name: gelu, op: gelu}
        - {name: add, op: add, inputs: [x, gelu]}
  layers:
    - {name: stem, op: cell, width: 8, repeat: 5, first: {width: 16}}
    - {name: widen, op: linear, out_features: 16}
    - {name: body, op: residual, repeat: 6}
    - {name: dil, op: linear, out_features: 16, repeat: 5,
       vary: {bias: [true, true, false, false, false]}}
    - {name: frozen, op: residual, repeat: 4, trainable: false}
    - {name: head, op: linear, out_features: 3}
loss: cross_entropy
optimizer: {kind: adam, lr: 0.01}
train: {batch_size: 6}
"""


def _both(spec: tdsl.Spec):
    report, inference = validated(spec)
    assert report.ok, [str(d) for d in report.diagnostics]
    cost_trace._FULL_TRACE = True
    try:
        full = estimate(spec, inference)
    finally:
        cost_trace._FULL_TRACE = False
    return full, estimate(spec, inference), inference


def test_skipping_identical_copies_gives_the_full_traces_figures_and_a_real_steps():
    spec = tdsl.load(NESTED)
    full, skipping, inference = _both(spec)
    assert skipping == full
    assert sum(len(m) for m in inference.module.modules() if isinstance(m, Repeated)) > 20
    rows, activations, flops, _ = measured(spec)
    assert skipping.train_flops == flops
    assert abs(skipping.activation_bytes - activations) <= 0.2 * activations


def test_a_trace_runs_only_the_copies_it_needs(monkeypatch):
    spec = tdsl.load(NESTED)
    report, inference = validated(spec)
    ran: list[str] = []
    names = {id(m): n for n, m in inference.module.named_modules()}
    hooks = [
        m.register_forward_pre_hook(lambda m, _: ran.append(names[id(m)]))
        for rep in inference.module.modules()
        if isinstance(rep, Repeated)
        for m in rep
    ]
    try:
        estimate(spec, inference)
    finally:
        for hook in hooks:
            hook.remove()
    stem = sorted({n for n in ran if n.startswith("stem.") and n.count(".") == 1})
    # copy 0 differs; copy 1 changes the width (16 -> 8), so 2 and 3 run and 4 is counted
    assert stem == ["stem.0", "stem.1", "stem.2", "stem.3"]
    assert sorted({n for n in ran if n.startswith("body.")}) == ["body.0", "body.1"]
    assert sorted({n for n in ran if n.startswith("dil.")}) == ["dil.0", "dil.1", "dil.2", "dil.3"]
    # the module runs every copy again afterwards
    out = inference.module(torch.empty(2, 12, device="meta"))
    assert out.shape == (2, 3)
    assert "forward" not in vars(next(iter(inference.module.body)))


def test_gpt2_smalls_figures_are_the_full_traces():
    full, skipping, _ = _both(tdsl.load(ROOT / "specs" / "models" / "gpt2_small.yaml"))
    assert skipping == full
