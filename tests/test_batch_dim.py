"""The batch dimension through every op: inference at the stand-in batch size agrees with
real forwards at small batch sizes, and ops that move, merge or drop the batch are refused
at validation, located at the layer, with the shapes in and out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import tdsl
from tdsl import spec as S
from tdsl.errors import Diagnostics
from tdsl.model import batch_rule
from tdsl.model.build import build_graph, materialize
from tdsl.model.graph import Graph, Node
from tdsl.registry import ops
from tdsl.registry.ops import BATCH, OpDef
from tdsl.runs.cli import main

ROOT = Path(__file__).resolve().parents[1]


def case(args: dict, *shapes: tuple, before: tuple = (), dtype: str = "float32") -> dict:
    """An op's example: its arguments, its inputs' per-sample shapes, and the layers that
    come first (op, args) to make an input it takes (a tuple for `item`)."""
    return {"args": args, "shapes": shapes, "before": before, "dtype": dtype}


CONV = {"out_channels": 4, "kernel_size": 3}
POOL = {"kernel_size": 2}
RNN = {"hidden_size": 4, "num_layers": 2}
ENCODER = {"nhead": 2, "dim_feedforward": 16, "dropout": 0.0}
LSTM_FIRST = (("lstm", {"hidden_size": 4}),)

# Every registered op name: how to exercise it.
EXAMPLES: dict[str, dict] = {
    "linear": case({"out_features": 5}, (3,)),
    "dropout": case({"p": 0.5}, (4, 3)),
    "layernorm": case({}, (4, 3)),
    "layer_norm": case({}, (4, 3)),
    "groupnorm": case({"num_groups": 2}, (4, 5)),
    "group_norm": case({"num_groups": 2}, (4, 5)),
    "embedding": case({"num_embeddings": 10, "embedding_dim": 3}, (6,), dtype="int64"),
    "embedding_bag": case({"num_embeddings": 10, "embedding_dim": 3}, (6,), dtype="int64"),
    "embeddingbag": case({"num_embeddings": 10, "embedding_dim": 3}, (6,), dtype="int64"),
    "lstm": case(RNN, (5, 3)),
    "gru": case({**RNN, "bidirectional": True}, (5, 3)),
    "rnn": case(RNN, (5, 3)),
    "flatten": case({}, (2, 3, 4)),
    "unflatten": case({"dim": 1, "unflattened_size": (2, 3)}, (6,)),
    "softmax": case({}, (4, 3)),
    "log_softmax": case({}, (4, 3)),
    "logsoftmax": case({"dim": 1}, (4, 3)),
    "leaky_relu": case({}, (4,)),
    "prelu": case({}, (4,)),
    "batchnorm": case({}, (4, 5)),
    "batch_norm": case({}, (4, 5, 5)),
    "transformer_encoder_layer": case({**ENCODER}, (5, 8)),
    "transformer_encoder": case({**ENCODER, "num_layers": 2}, (5, 8)),
    "multihead_attention": case({"num_heads": 2}, (5, 8)),
    "attention": case({"heads": 2}, (5, 8), (4, 8), (4, 8)),
    "self_attention": case({"heads": 2, "causal": True}, (5, 8)),
    "padding_mask": case({"pad_id": 0}, (6,), dtype="int64"),
    # Values without a batch are no model output: each is added to the batched input.
    "positions": case({}, (6,), dtype="int64"),
    "parameter": case({"shape": (1, 4)}, (4,)),
    "constant": case({"value": [[1.0, 2.0, 3.0, 4.0]]}, (4,)),
    "abs": case({}, (4, 3)),
    "cast": case({"dtype": "float64"}, (4, 3)),
    "matmul": case({}, (4, 3), (3, 5)),
    "einsum": case({"equation": "bij,bjk->bik"}, (4, 3), (3, 5)),
    "add": case({}, (4, 3), (4, 3)),
    "mul": case({"value": 2.0}, (4, 3)),
    "sub": case({}, (4, 3), (1, 3)),
    "concat": case({"dim": -1}, (4, 3), (4, 2)),
    "stack": case({"dim": 1}, (4, 3), (4, 3)),
    "item": case({"index": 1}, (5, 3), before=(("lstm", RNN),)),
    "select": case({"dim": 1, "index": -1}, (5, 3)),
    "slice": case({"dim": 2, "start": 1}, (5, 3)),
    "transpose": case({"dim0": 1, "dim1": 2}, (5, 3)),
    "permute": case({"dims": (0, 2, 1)}, (5, 3)),
    "reshape": case({"shape": (3, -1)}, (6, 2)),
    "mean": case({"dim": 1}, (5, 3)),
    "sum": case({"dim": (1, 2), "keepdim": True}, (5, 3)),
    "max": case({"dim": -1}, (5, 3)),
}
for _r in (1, 2, 3):
    _map = (2, *(6,) * _r)  # [channels, *spatial]
    EXAMPLES |= {
        f"conv{_r}d": case(CONV, _map),
        f"conv_transpose{_r}d": case(CONV, _map),
        f"convtranspose{_r}d": case({**CONV, "stride": 2}, _map),
        f"maxpool{_r}d": case(POOL, _map),
        f"max_pool{_r}d": case({**POOL, "ceil_mode": True}, _map),
        f"avgpool{_r}d": case(POOL, _map),
        f"avg_pool{_r}d": case({**POOL, "padding": 1}, _map),
        f"adaptive_maxpool{_r}d": case({"output_size": 2}, _map),
        f"adaptivemaxpool{_r}d": case({"output_size": 3}, _map),
        f"adaptive_avgpool{_r}d": case({"output_size": 2}, _map),
        f"adaptiveavgpool{_r}d": case({"output_size": 3}, _map),
        f"batchnorm{_r}d": case({}, (2, 6) if _r == 1 else _map),
        f"batch_norm{_r}d": case({}, (2,) if _r == 1 else _map),
        f"instancenorm{_r}d": case({}, _map),
        f"dropout{_r}d": case({"p": 0.5}, _map),
    }
# Registered ops no example can exercise, with the reason.
UNEXERCISED: dict[str, str] = {
    "bilinear": "registered with one input, but nn.Bilinear's forward takes two",
}

# torch.nn layers reached by lower-cased class name.
TORCH_LAYERS: dict[str, dict] = {
    "relu": case({}, (4,)),
    "gelu": case({}, (4, 3)),
    "silu": case({}, (4,)),
    "tanh": case({}, (4,)),
    "sigmoid": case({}, (4,)),
    "elu": case({}, (4,)),
    "selu": case({}, (4,)),
    "softplus": case({}, (4,)),
    "hardtanh": case({}, (4,)),
    "mish": case({}, (4,)),
    "identity": case({}, (4, 3)),
    "threshold": case({"threshold": 0.1, "value": 0.0}, (4,)),
    "softmin": case({"dim": -1}, (4,)),
    "softmax2d": case({}, (2, 3, 3)),
    "logsigmoid": case({}, (4,)),
    "glu": case({}, (4, 6)),
    "pixelshuffle": case({"upscale_factor": 2}, (4, 3, 3)),
    "pixelunshuffle": case({"downscale_factor": 2}, (1, 4, 4)),
    "upsample": case({"scale_factor": 2}, (2, 3, 3)),
    "zeropad2d": case({"padding": 1}, (2, 3, 3)),
    "reflectionpad1d": case({"padding": 1}, (2, 5)),
    "constantpad1d": case({"padding": 2, "value": 1.0}, (2, 5)),
    "channelshuffle": case({"groups": 2}, (4, 3, 3)),
    "localresponsenorm": case({"size": 2}, (4, 5)),
    "unfold": case({"kernel_size": 2}, (1, 4, 4)),
    "fold": case({"output_size": (4, 4), "kernel_size": 2}, (4, 9)),
    "lppool1d": case({"norm_type": 2, "kernel_size": 2}, (2, 6)),
    "rmsnorm": case({"normalized_shape": 4}, (3, 4)),
    "lstmcell": case({"input_size": 3, "hidden_size": 4}, (3,)),
    "grucell": case({"input_size": 3, "hidden_size": 4}, (3,)),
}


def graph_of(op: str, example: dict) -> Graph:
    inputs = tuple(
        S.Input(shape=shape, dtype=example["dtype"], name=f"x{i}")
        for i, shape in enumerate(example["shapes"])
    )
    nodes, previous = [], tuple(i.name for i in inputs)
    for index, (name, args) in enumerate(example["before"]):
        nodes.append(Node(f"before{index}", name, args, previous, ("model", "layers", index)))
        previous = (f"before{index}",)
    path = ("model", "layers", len(nodes))
    sources = () if ops.takes_no_inputs(op) else previous  # parameter, constant: no input
    nodes.append(Node("op", op, dict(example["args"]), sources, path))
    if ops.lookup(op).batch != "broadcast":
        return Graph(inputs, tuple(nodes), ("op",))
    nodes.append(Node("out", "add", {}, ("op", inputs[0].name), (*path[:-1], path[-1] + 1)))
    return Graph(inputs, tuple(nodes), ("out",))


def substituted(value: Any, batch: int) -> Any:
    """The inferred shapes with the stand-in batch size replaced by `batch`."""
    if isinstance(value, torch.Tensor):
        assert not any(d % BATCH == 0 and d != BATCH for d in value.shape if d), value.shape
        return tuple(batch if d == BATCH else d for d in value.shape)
    if value is None:
        return None
    return tuple(substituted(v, batch) for v in value)


def real_batch(graph: Graph, batch: int) -> list[torch.Tensor]:
    if graph.inputs[0].dtype == "int64":
        return [torch.randint(0, 10, (batch, *i.shape)) for i in graph.inputs]
    return [torch.randn(batch, *i.shape) for i in graph.inputs]


def check_against_real_forwards(op: str, example: dict) -> None:
    graph = graph_of(op, example)
    diags = Diagnostics()
    module, values = build_graph(graph, diags)
    assert module is not None and not diags.items, [d.message for d in diags.items]
    torch.manual_seed(0)
    real = materialize(graph, values, "cpu").eval()
    for batch in (2, 3):
        with torch.no_grad():
            output = real(*real_batch(graph, batch))
        out = graph.outputs[0]
        assert substituted(values[out], batch) == substituted(output, batch), (op, batch)


def test_every_registered_op_has_an_example():
    listed = set(EXAMPLES) | set(UNEXERCISED)
    assert set(ops.registered_names()) == listed, "add the op to EXAMPLES (or UNEXERCISED)"


@pytest.mark.parametrize("op", sorted(EXAMPLES))
def test_inferred_shapes_match_real_forwards(op):
    check_against_real_forwards(op, EXAMPLES[op])


@pytest.mark.parametrize("op", sorted(TORCH_LAYERS))
def test_torch_layers_inferred_shapes_match_real_forwards(op):
    assert op not in ops.registered_names() and ops.lookup(op) is not None
    check_against_real_forwards(op, TORCH_LAYERS[op])


# --- refusals, located, with the shapes in and out ---------------------------------------


def spec_text(shape: list[int], *layers: str) -> str:
    listed = "\n".join(f"    - {layer}" for layer in layers)
    return f"""\
name: batch
data: {{kind: random, n: 8, target: {{kind: regression, shape: [1]}}}}
model:
  inputs: [{{shape: {shape}}}]
  layers:
{listed}
    - {{op: linear, out_features: 1}}
loss: mse
optimizer: {{kind: sgd, lr: 0.1}}
train: {{epochs: 1, batch_size: 4}}
"""


MOVES = "<spec>:6:7: error: model.layers[0]: layer {} moves the batch dimension: {}"
MOVES_HINT = "dimension 0 is the batch; transpose, permute and stack only the per-sample"
REFUSED = {
    "transpose": (
        ("{name: t1, op: transpose, dim0: 0, dim1: 1}", "flatten"),
        MOVES.format("'t1' (transpose)", "[B, 3, 16] -> [3, B, 16]"),
        f"{MOVES_HINT} dimensions 1..n",
    ),
    "permute": (
        ("{name: p, op: permute, dims: [2, 1, 0]}", "flatten"),
        MOVES.format("'p' (permute)", "[B, 3, 16] -> [16, 3, B]"),
        f"{MOVES_HINT} dimensions 1..n",
    ),
    "flatten": (
        ("{name: f, op: flatten, start_dim: 0}",),
        "<spec>:6:7: error: model.layers[0]: layer 'f' (flatten) merges the batch dimension "
        "with another: [B, 3, 16] -> [B*48]",
        "dimension 0 is the batch; flatten and concat only the per-sample dimensions 1..n "
        "(flatten's start_dim defaults to 1)",
    ),
    "mean": (
        ("{name: m, op: mean, dim: 0}",),
        "<spec>:6:7: error: model.layers[0]: layer 'm' (mean) drops the batch dimension: "
        "[B, 3, 16] -> [3, 16]",
        "dimension 0 is the batch; select, slice and reduce only the per-sample dimensions 1..n",
    ),
}


@pytest.mark.parametrize("op", sorted(REFUSED))
def test_ops_moving_merging_or_dropping_the_batch_are_refused(op):
    layers, message, hint = REFUSED[op]
    report = tdsl.validate(spec_text([3, 16], *layers))
    assert report.format() == f"{message}\n    hint: {hint}"


def test_refused_specs_neither_run_nor_show_the_stand_in(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "moved.yaml"
    spec.write_text(spec_text([3, 16], *REFUSED["transpose"][0]), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["summary", str(spec)]) == 1
    assert main(["run", str(spec)]) == 1
    out, err = capsys.readouterr()
    assert "moves the batch dimension" in out + err
    assert "Traceback" not in out + err and not _stand_in_sizes(out + err)


def _stand_in_sizes(text: str) -> list[int]:
    return [n for n in map(int, re.findall(r"\d+", text)) if n and n % BATCH == 0]


@pytest.mark.parametrize("spec", sorted((ROOT / "specs").glob("*.yaml")), ids=lambda p: p.stem)
def test_gallery_summaries_show_no_stand_in_batch(spec, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["summary", str(spec.relative_to(ROOT))]) == 0
    out = capsys.readouterr().out
    shapes = re.findall(r"\[[^\]]*\]", out)
    # Every value has the batch, but those that broadcast over it (positions: [1, T]).
    assert shapes and all("B" in s or re.match(r"\[1[,\]]", s) for s in shapes), shapes
    assert not _stand_in_sizes(" ".join(shapes))


@pytest.mark.parametrize(
    ("layers", "message", "hint"),
    [
        (
            ("{name: s, op: softmax, dim: 0}",),
            "layer 's' (softmax) works along the batch dimension (dim 0): [B, 3, 16] -> [B, 3, 16]",
            "dimension 0 is the batch; work along the per-sample dimensions 1..n "
            "(dim -1 is the last)",
        ),
        (
            ("{name: s, op: nn.Softmax}",),  # torch picks dim 0 for a 3-d input
            "layer 's' (nn.Softmax) works along the batch dimension (dim 0): [B, 3, 16] -> "
            "[B, 3, 16]",
            "dimension 0 is the batch; work along the per-sample dimensions 1..n "
            "(dim -1 is the last)",
        ),
        (
            ("{name: s, op: slice, dim: 0, start: 1}",),
            "layer 's' (slice) changes the size of the batch dimension: [B, 3, 16] -> [B-1, 3, 16]",
            "dimension 0 is the batch; select, slice and reduce only the per-sample "
            "dimensions 1..n",
        ),
        (
            ("{name: r, op: nn.LSTM, input_size: 16, hidden_size: 4}", "{op: item, index: 0}"),
            "layer 'r' (nn.LSTM) would read dimension 1 as the batch (batch_first is false)",
            "dimension 0 is the batch in tdsl: set batch_first: true",
        ),
        (
            ("{op: flatten}", "{name: a, op: multihead_attention, num_heads: 2}"),
            "layer 'a' (multihead_attention) needs a [batch, steps, features] input, got [B, 48]",
            "declare the input's per-sample shape as [steps, features]",
        ),
        (
            ("{op: lstm, hidden_size: 4}", "{op: item, index: 1}", "{op: item, index: 0}"),
            "layer 'item2' (item) is a model output with the batch at dimension 1: [1, B, 4]",
            "dimension 0 is the batch; first select, transpose or reduce dimension 0 of the "
            "recurrent layer's hidden state",
        ),
        (
            ("{op: gru, hidden_size: 4}", "{op: item, index: 1}", "{name: l, op: relu}"),
            "layer 'l' (relu) needs the batch at dimension 0, but it stays at 1: [1, B, 4] -> "
            "[1, B, 4]",
            "dimension 0 is the batch; first select, transpose or reduce dimension 0 of the "
            "recurrent layer's hidden state",
        ),
    ],
)
def test_batch_mixing_and_misplaced_batches_are_refused(layers, message, hint):
    text = spec_text([3, 16], *layers)
    if "item2" in message:  # the hidden state is the model's output: no final linear
        text = text.replace("    - {op: linear, out_features: 1}\n", "")
    (error,) = tdsl.validate(text).errors
    assert (error.message, error.hint) == (message, hint)
    assert error.path[:2] == ("model", "layers") and error.location is not None


@pytest.mark.parametrize(
    "layers",
    [
        ("{op: lstm, hidden_size: 4, num_layers: 2}", "{op: item, index: 1}")
        + ("{op: item, index: 0}", "{op: select, dim: 0, index: -1}"),
        ("{op: gru, hidden_size: 4, num_layers: 2}", "{op: item, index: 1}")
        + ("{op: transpose, dim0: 0, dim1: 1}", "{op: flatten}"),
        ("{op: lstm, hidden_size: 4, num_layers: 3}", "{op: item, index: 1}")
        + ("{op: item, index: 1}", "{op: mean, dim: 0}"),
        ("{op: rnn, hidden_size: 4}", "{op: item, index: 1}", "{op: permute, dims: [1, 2, 0]}")
        + ("{op: flatten}",),
        ("{op: transpose, dim0: 1, dim1: 2}", "{op: select, dim: -1, index: 0}"),
    ],
)
def test_hidden_states_brought_to_dimension_0_are_valid(layers):
    report = tdsl.validate(spec_text([5, 3], *layers))
    assert report.ok, report.format()
    assert list(report.output_shapes.values()) == [(None, 1)]


def test_a_per_sample_size_equal_to_the_stand_in_is_told_from_the_batch():
    moved = tdsl.validate(spec_text([BATCH, 2], "{name: t, op: transpose, dim0: 0, dim1: 1}"))
    assert [e.message for e in moved.errors] == [
        f"layer 't' (transpose) moves the batch dimension: [B, {BATCH}, 2] -> [{BATCH}, B, 2]"
    ]
    kept = spec_text(
        [3], f"{{op: linear, out_features: {BATCH}}}", "{op: mean, dim: 1, keepdim: true}"
    )
    assert tdsl.validate(kept).ok


# --- how ops declare the batch ----------------------------------------------------------


class Table(nn.Module):
    """A learned [1, steps, features] table, read off its input's shape."""

    def __init__(self, steps: int, features: int, batched: bool = False):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(1, steps, features))
        self.batched = batched

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.table if self.batched else self.table


class SwapBatch(nn.Module):
    """Moves the batch to dimension 1 on purpose (start_dim 0: merges it too)."""

    def __init__(self, merge: bool = False):
        super().__init__()
        self.merge = merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(0, 1) if self.merge else x.transpose(0, 1)


def _register(monkeypatch, name: str, build, arguments: dict, batch: str) -> None:
    op = OpDef(name, build, arguments, batch=batch)
    monkeypatch.setitem(ops._REGISTRY, name, op)


def dag(shape: tuple[int, ...], *nodes: tuple[str, str, dict, tuple[str, ...]]) -> Graph:
    made = [Node(*node, ("model", "layers", index)) for index, node in enumerate(nodes)]
    return Graph((S.Input(shape=shape),), tuple(made), (nodes[-1][0],))


def built(graph: Graph) -> tuple[Any, list[str], dict]:
    diags = Diagnostics()
    module, values = build_graph(graph, diags)
    return module, [d.message for d in diags.items], values


def test_broadcast_ops_and_the_layers_they_feed(monkeypatch):
    def table(args, inputs):
        return Table(inputs[0].shape[1], inputs[0].shape[2], **args)

    _register(monkeypatch, "table", table, {"batched": False}, "broadcast")
    graph = dag(
        (5, 3),
        ("pos", "table", {}, ("x",)),
        ("mixed", "linear", {"out_features": 3}, ("pos",)),  # [1, 5, 3]: no batch either
        ("out", "add", {}, ("x", "mixed")),
    )
    module, errors, values = built(graph)
    assert module is not None and not errors
    assert tuple(values["mixed"].shape) == (1, 5, 3)
    real = materialize(graph, values, "cpu")
    assert tuple(real(torch.zeros(2, 5, 3)).shape) == (2, 5, 3)

    graph = dag((5, 3), ("pos", "table", {"batched": True}, ("x",)))
    assert built(graph)[1] == [
        "layer 'pos' (table) is a broadcast op, but its output carries the batch: "
        "[B, 5, 3] -> [B, 5, 3]"
    ]


def test_ops_owning_the_batch_are_tracked_but_may_not_merge_it(monkeypatch):
    _register(monkeypatch, "swap", lambda args, inputs: SwapBatch(**args), {"merge": False}, "own")
    back = ("back", "transpose", {"dim0": 0, "dim1": 1}, ("swapped",))
    module, errors, values = built(dag((5, 3), ("swapped", "swap", {}, ("x",)), back))
    assert module is not None and not errors
    assert tuple(values["back"].shape) == (BATCH, 5, 3)

    _, errors, _ = built(dag((5, 3), ("swapped", "swap", {}, ("x",))))
    assert errors == [
        "layer 'swapped' (swap) is a model output with the batch at dimension 1: [5, B, 3]"
    ]
    _, errors, _ = built(dag((5, 3), ("merged", "swap", {"merge": True}, ("x",))))
    assert errors == [
        "layer 'merged' (swap) merges the batch dimension with another: [B, 5, 3] -> [B*5, 3]"
    ]


def test_an_unknown_batch_setting_is_refused():
    with pytest.raises(ValueError, match="batch"):
        OpDef("x", lambda args, inputs: nn.Identity(), {}, batch="sideways")


def test_layouts_follow_tuple_outputs():
    rnn = nn.LSTM(3, 4, num_layers=2, batch_first=True, device="meta")
    x = torch.empty(BATCH, 5, 3, device="meta")
    out = rnn(x)
    op = ops.lookup("lstm")
    layout = batch_rule.output_layout(op, rnn, [x], [0], out, lambda xs: rnn(*xs))
    assert layout == (0, (1, 1))
