"""An in-place layer (`inplace: true`) overwriting a value the backward pass needs is a
located validation error, not torch's "modified by an inplace operation" at the first
step; torch itself (a real backward pass) is the judge of every case here."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import tdsl
from tdsl.check.pipeline import checked
from tdsl.data import load_data
from tdsl.model.build import materialize

ROOT = Path(__file__).resolve().parent.parent

HEAD = """\
name: inplace
data: {kind: rings, n_positive: 20, n_negative: 20}
loss: {kind: bce_with_logits}
optimizer: {kind: sgd, lr: 0.1}
train: {epochs: 1, batch_size: 8}
model:
"""
BLOCK = """\
  blocks:
    b:
      layers:
        - {name: s, op: sigmoid}
        - {name: d, op: dropout, inplace: true}
"""

# name -> (model lines after `model:`, the layer whose output is overwritten, or None)
FAILING = {
    "softmax_dropout": (
        "  inputs: [{shape: [2]}]\n  layers:\n    - {op: linear, out_features: 4}\n"
        "    - {op: softmax, dim: -1}\n    - {op: dropout, inplace: true}\n"
        "    - {op: linear, out_features: 1}\n",
        "softmax1",
    ),
    "relu_dropout": (
        "  inputs: [{shape: [2]}]\n  layers:\n    - {op: linear, out_features: 4}\n"
        "    - relu\n    - {op: dropout, inplace: true}\n    - {op: linear, out_features: 1}\n",
        "relu1",
    ),
    "tanh_leaky_relu": (
        "  inputs: [{shape: [2]}]\n  layers:\n    - {op: linear, out_features: 4}\n"
        "    - tanh\n    - {op: leaky_relu, inplace: true}\n    - {op: linear, out_features: 1}\n",
        "tanh1",
    ),
    "through_views": (
        "  inputs: [{name: x, shape: [2]}]\n  layers:\n"
        "    - {name: a, op: linear, out_features: 4, inputs: [x]}\n"
        "    - {name: s, op: sigmoid, inputs: [a]}\n"
        "    - {name: u, op: unflatten, dim: 1, unflattened_size: [2, 2], inputs: [s]}\n"
        "    - {name: f, op: flatten, inputs: [u]}\n"
        "    - {name: d, op: dropout, inplace: true, inputs: [f]}\n"
        "    - {name: o, op: linear, out_features: 1, inputs: [d]}\n",
        "s",
    ),
    "repeat": (
        "  inputs: [{shape: [2]}]\n  layers:\n    - {op: linear, out_features: 4}\n"
        "    - {op: relu, inplace: true, repeat: 2}\n    - {op: linear, out_features: 1}\n",
        "relu1.0",
    ),
    "in_block": (
        BLOCK + "  inputs: [{shape: [2]}]\n  layers:\n    - {op: linear, out_features: 4}\n"
        "    - b\n    - {op: linear, out_features: 1}\n",
        "b1.s",
    ),
    "second_reader_keeps_it": (
        "  inputs: [{name: x, shape: [2]}]\n  layers:\n"
        "    - {name: a, op: linear, out_features: 4, inputs: [x]}\n"
        "    - {name: l, op: linear, out_features: 4, inputs: [a]}\n"
        "    - {name: r, op: relu, inplace: true, inputs: [a]}\n"
        "    - {name: sum, op: add, inputs: [l, r]}\n"
        "    - {name: o, op: linear, out_features: 1, inputs: [sum]}\n",
        None,
    ),
}

TRAINING = {
    "linear_relu": "    - {op: linear, out_features: 4}\n    - {op: relu, inplace: true}\n",
    "batchnorm_relu": "    - {op: linear, out_features: 4}\n    - batchnorm1d\n"
    "    - {op: relu, inplace: true}\n",
    "gelu_dropout": "    - {op: linear, out_features: 4}\n    - gelu\n"
    "    - {op: dropout, inplace: true}\n",
    "dropout_then_relu": "    - {op: linear, out_features: 4}\n"
    "    - {op: dropout, inplace: true}\n    - {op: relu, inplace: true}\n",
    # Dropout with p 0 writes nothing (torch returns its input as it is).
    "softmax_dropout_p0": "    - {op: linear, out_features: 4}\n    - {op: softmax, dim: -1}\n"
    "    - {op: dropout, p: 0, inplace: true}\n",
}


def _torch_fails(text: str) -> bool:
    """Whether a real forward and backward pass of the model raises torch's error."""
    _, inference = checked(text)
    module = materialize(inference.graph, inference.values, "cpu").train()
    try:
        module(torch.randn(4, 2)).sum().backward()
    except RuntimeError as exc:
        assert "modified by an inplace operation" in str(exc)
        return True
    return False


@pytest.mark.parametrize("case", sorted(FAILING))
def test_an_inplace_layer_overwriting_a_needed_value_is_located_at_its_inplace(case):
    model, producer = FAILING[case]
    text = HEAD + model
    assert _torch_fails(text)
    errors = tdsl.validate(text).errors
    assert len(errors) == 1, [e.format() for e in errors]
    (error,) = errors
    assert error.path[-1] == "inplace"
    line = text.splitlines()[error.location.line - 1]
    assert line[error.location.column - 1 :].startswith("inplace: true")
    assert "has inplace: true" in error.message
    if producer is not None:
        assert f"the output of layer {producer!r}" in error.message
        assert "gradient needs its output" in error.message
    else:
        assert "'a', which layer 'l' (linear) keeps for its gradient" in error.message
    assert error.hint.startswith("set inplace: false")


def test_the_path_through_views_names_the_hops():
    errors = tdsl.validate(HEAD + FAILING["through_views"][0]).errors
    assert "through layer 'f' (flatten), layer 'u' (unflatten)" in errors[0].message


def test_a_later_reader_of_the_overwritten_value_is_reported():
    # Torch raises nothing here, but `sum` would add relu(a) to itself, not a to relu(a).
    text = HEAD + (
        "  inputs: [{name: x, shape: [2]}]\n  layers:\n"
        "    - {name: a, op: linear, out_features: 4, inputs: [x]}\n"
        "    - {name: r, op: relu, inplace: true, inputs: [a]}\n"
        "    - {name: sum, op: add, inputs: [a, r]}\n"
        "    - {name: o, op: linear, out_features: 1, inputs: [sum]}\n"
    )
    (error,) = tdsl.validate(text).errors
    assert "'a', which layer 'sum' (add) reads afterwards" in error.message


@pytest.mark.parametrize("case", sorted(TRAINING))
def test_inplace_layers_torch_trains_are_valid(case):
    text = HEAD + "  inputs: [{shape: [2]}]\n  layers:\n" + TRAINING[case]
    text += "    - {op: linear, out_features: 1}\n"
    assert not _torch_fails(text)
    assert tdsl.validate(text).ok


def test_the_check_imports_neither_dynamo_nor_sympy(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(HEAD + FAILING["through_views"][0])
    code = f"""
        import sys
        from tdsl.runs.cli import main
        for path in ({str(ROOT / "specs" / "ring_dnn.yaml")!r}, {str(spec)!r}):
            try:
                main(["validate", path])
            except SystemExit:
                pass
        print(sorted(m for m in ("torch._dynamo", "sympy") if m in sys.modules))
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "spec.yaml:13:30: error: model.layers[4].inplace:" in done.stdout + done.stderr
    assert "has inplace: true" in done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_shared_inplace_layer_is_located_at_its_share():
    text = HEAD + (
        "  inputs: [{name: x, shape: [2]}]\n  layers:\n"
        "    - {name: a, op: linear, out_features: 4, inputs: [x]}\n"
        "    - {name: s, op: sigmoid, inputs: [a]}\n"
        "    - {name: r, op: relu, inplace: true, inputs: [a]}\n"
        "    - {name: again, share: r, inputs: [s]}\n"
        "    - {name: sum, op: add, inputs: [r, again]}\n"
        "    - {name: o, op: linear, out_features: 1, inputs: [sum]}\n"
    )
    assert _torch_fails(text)
    (error,) = tdsl.validate(text).errors
    assert error.path == ("model", "layers", 3, "share")
    assert "the output of layer 's' (sigmoid)" in error.message
    assert error.hint == "set inplace: false on layer 'r', which 'again' applies again"


def test_a_frozen_trunk_keeps_nothing_to_overwrite():
    # No gradient reaches the frozen sigmoid's output, so autograd keeps nothing there.
    text = HEAD + (
        "  inputs: [{shape: [2]}]\n  layers:\n"
        "    - {op: linear, out_features: 4, trainable: false}\n    - sigmoid\n"
        "    - {op: dropout, inplace: true}\n    - {op: linear, out_features: 1}\n"
    )
    assert tdsl.validate(text).ok
    program = tdsl.compile(tdsl.load(text))
    batch = next(load_data(program.spec).train.batches(8))
    state, logs = program.train_step(program.init(), batch)
    assert state.step == 1 and torch.isfinite(logs["loss"])
    trained = tdsl.validate(text.replace(", trainable: false", "")).errors
    assert "the output of layer 'sigmoid1'" in trained[0].message


@pytest.mark.parametrize(
    "layer", ["{op: leaky_relu, inplace: true}", "{op: dropout, inplace: true}"]
)
def test_an_inplace_layer_on_the_model_input_is_located(layer):
    text = HEAD + f"  inputs: [{{shape: [2]}}]\n  layers:\n    - {layer}\n"
    text += "    - {op: linear, out_features: 1}\n"
    # Torch raises nothing: the rows held in memory change instead. The validation split is
    # batched in row order (slices of the kept tensor), so each epoch reads them overwritten.
    _, inference = checked(text)
    module = materialize(inference.graph, inference.values, "cpu").train()
    rows = load_data(tdsl.load(text)).val
    kept = rows.features[0].clone()
    for _ in range(2):  # epochs
        for batch in rows.batches(8):
            module(*batch.features)
    assert not torch.equal(rows.features[0], kept)
    (error,) = tdsl.validate(text).errors
    assert error.path == ("model", "layers", 0, "inplace")
    line = text.splitlines()[error.location.line - 1]
    assert line == f"    - {layer}" and line[error.location.column - 1 :] == "inplace: true}"
    assert "would overwrite the model's input 'x', which is the batch itself" in error.message
    assert error.hint == f"set inplace: false on layer '{layer[5:].split(',')[0]}1'"
