"""The attention ops and their companions against hand-written PyTorch: same weights, same
outputs, same gradients; their shape rules against running them; their located messages."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tdsl
from tdsl.errors import Diagnostics
from tdsl.model.build import build_graph, materialize
from tdsl.model.resolve import resolve
from tdsl.registry import ops
from tdsl.registry import shape_rules as shapes
from tdsl.registry.einsum_op import einsum_shape
from tdsl.registry.tensor_ops import matmul_shape
from tdsl.train.program import compile

ROOT = Path(__file__).resolve().parents[1]
L = tdsl.Layer


def build(op: str, inputs: list[torch.Tensor], **args) -> nn.Module:
    """The op's module, built as tdsl builds it (on the inputs it will take)."""
    return ops.lookup(op).build(args, inputs)


def module_of(model: tdsl.Spec) -> nn.Module:
    """The model's module on the CPU, however many outputs it has."""
    diags = Diagnostics()
    graph = resolve(model.model, diags)
    _, values = build_graph(graph, diags)
    assert not diags.items, diags.items
    return materialize(graph, values, "cpu")


def spec(layers, inputs, out=(1,), outputs=(), seed=0) -> tdsl.Spec:
    return tdsl.Spec(
        name="attention",
        seed=seed,
        data=tdsl.RandomData(target=tdsl.Target(kind="regression", shape=list(out)), int_high=9),
        model=tdsl.Model(inputs=inputs, layers=layers, outputs=outputs),
        loss=tdsl.Loss("mse"),
    )


# --- self_attention against nanoGPT ---------------------------------------------------------


class NanoGPTAttention(nn.Module):
    """GPT-2's attention as nanoGPT writes it, without the fused kernel. Masked scores get a
    large finite negative number, as Hugging Face's GPT-2 does, so that a padding query with
    nothing to attend to has finite gradients (tdsl lets it attend to every key instead)."""

    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.n_head = n_head

    def forward(self, x, keep=None, causal=True):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        allowed = torch.ones(T, T, dtype=torch.bool)
        if causal:
            allowed = allowed.tril()
        if keep is not None:
            allowed = allowed & keep[:, None, None, :]
        att = F.softmax(att.masked_fill(~allowed, -1e30), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


KEEP = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
LEFT_PADDED = KEEP.flip(1)  # causal: the padding queries at the front may attend to nothing


@pytest.mark.parametrize(
    "causal, keep",
    [(True, None), (True, KEEP), (False, KEEP), (False, None), (True, LEFT_PADDED)],
    ids=["causal", "causal-padded", "bert-padded", "bidirectional", "causal-left-padded"],
)
def test_self_attention_matches_nanogpt(causal, keep):
    torch.manual_seed(0)
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    inputs = [x] if keep is None else [x, keep.long()]  # 0/1 integers work as well as bools
    ours = build("self_attention", inputs, heads=4, causal=causal).double()
    ref = NanoGPTAttention(16, 4).double()
    with torch.no_grad():
        for mine, theirs in ((ours.qkv, ref.c_attn), (ours.proj, ref.c_proj)):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = ours(x1, *inputs[1:])
    expected = ref(x2, keep, causal)
    assert torch.isfinite(out).all()  # padding queries included
    real = torch.ones(3, 6, dtype=torch.bool) if keep is None else keep
    torch.testing.assert_close(out[real], expected[real], rtol=1e-10, atol=1e-10)
    weights = torch.randn(3, 6, 16, dtype=torch.float64) * real[..., None]
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    for mine, theirs in ((ours.qkv, ref.c_attn), (ours.proj, ref.c_proj)):
        torch.testing.assert_close(mine.weight.grad, theirs.weight.grad, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(mine.bias.grad, theirs.bias.grad, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-9, atol=1e-10)


def test_self_attention_has_gpt2_parameters():
    model = spec(
        [L("self_attention", name="attn", heads=12, causal=True)],
        [tdsl.Input(shape=[8, 768])],
        out=(8, 768),
    )
    report = tdsl.validate(model)
    assert report.ok, report.format()
    assert report.param_count == 2_362_368  # GPT-2's c_attn + c_proj
    layer = build("self_attention", [torch.zeros(1, 2, 8)], heads=2, bias=False)
    assert [n for n, _ in layer.named_parameters()] == ["qkv.weight", "proj.weight"]


def test_self_attention_dropout_only_in_training():
    x = torch.randn(2, 5, 8)
    layer = build("self_attention", [x], heads=2, dropout=0.5)
    torch.manual_seed(1)
    assert not torch.equal(layer(x), layer(x))
    layer.eval()
    assert torch.equal(layer(x), layer(x))


# --- the parameter-free core, softmax, padding masks -----------------------------------------


def manual_attention(q, k, v, allowed, scale):
    scores = (q @ k.transpose(-2, -1)) * scale
    return F.softmax(scores.masked_fill(~allowed, float("-inf")), -1) @ v


def test_attention_core_splits_heads_and_masks():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 12)
    keep = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    layer = build("attention", [q, k, v, keep], heads=2, causal=True, scale=0.3)
    heads = [t.view(2, t.shape[1], 2, -1).transpose(1, 2) for t in (q, k, v)]
    allowed = keep[:, None, None, :] & torch.ones(3, 5, dtype=torch.bool).tril()
    expected = manual_attention(*heads, allowed, 0.3).transpose(1, 2).reshape(2, 3, 12)
    torch.testing.assert_close(layer(q, k, v, keep), expected)
    assert shapes.output_of(layer, [t.to("meta") for t in (q, k, v, keep)]).shape == (2, 3, 12)
    # without heads the inputs are [B, H, T, D] already, and the default scale is 1/sqrt(D)
    layer = build("attention", heads)
    full = torch.ones(3, 5, dtype=torch.bool)
    torch.testing.assert_close(layer(*heads), manual_attention(*heads, full, 8**-0.5 * 2**0.5))


def test_softmax_with_mask_zeroes_masked_positions_and_fully_masked_rows():
    scores = torch.randn(2, 3, 4, requires_grad=True)
    keep = torch.tensor([[1, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=torch.bool).expand(
        2, 3, 4
    )
    layer = build("softmax", [scores, keep], dim=-1)
    out = layer(scores, keep)
    assert torch.equal(out[:, 1], torch.zeros(2, 4))  # masked everywhere: zeros, not NaN
    expected = F.softmax(scores.masked_fill(~keep, float("-inf")), -1)
    torch.testing.assert_close(out[:, [0, 2]], expected[:, [0, 2]])
    assert torch.equal(out[~keep], torch.zeros(int((~keep).sum())))
    (out * torch.randn(2, 3, 4)).sum().backward()
    assert torch.isfinite(scores.grad).all() and torch.equal(scores.grad[:, 1], torch.zeros(2, 4))
    # a [B, N] padding mask applies along dim of a higher-rank input
    scores = torch.randn(2, 2, 3, 4)
    padding = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0]])
    full = padding.bool()[:, None, None, :].expand(2, 2, 3, 4)
    torch.testing.assert_close(
        build("softmax", [scores, padding])(scores, padding),
        build("softmax", [scores, full])(scores, full),
    )
    assert isinstance(build("softmax", [scores]), nn.Softmax)  # one input: torch's own


def test_padding_mask_positions_and_embedding_add_up():
    model = spec(
        [
            L("embedding", name="tok", num_embeddings=9, embedding_dim=4),
            L("positions", name="pos", inputs=["ids"], offset=1),
            L("embedding", name="wpe", num_embeddings=8, embedding_dim=4),
            L("add", name="x", inputs=["tok", "wpe"]),
            L("padding_mask", name="mask", inputs=["ids"], pad_id=0),
        ],
        [tdsl.Input(name="ids", shape=[5], dtype="int64")],
        outputs=["x", "mask"],  # `pos` has no batch: no model output (tests/test_batch_dim.py)
    )
    module = module_of(model)
    ids = torch.tensor([[3, 1, 4, 0, 0], [2, 7, 1, 8, 2]])
    x, mask = module(ids)
    pos = module.pos(ids)
    assert pos.dtype == torch.int64 and torch.equal(pos, torch.arange(1, 6)[None])
    torch.testing.assert_close(x, module.tok.weight[ids] + module.wpe.weight[1:6][None])
    assert torch.equal(mask, ids != 0)
    report = tdsl.validate(model)
    assert report.output_shapes == {"x": (None, 5, 4), "mask": (None, 5)}


# --- parameters, constants, broadcasting the batch -------------------------------------------


def test_parameter_is_initialized_from_the_seed():
    layers = [
        L("parameter", name="cls", shape=[1, 1, 6]),
        L("parameter", name="table", shape=[1, 3, 6], init="uniform", low=-1, high=2),
        L("parameter", name="gate", shape=[1, 1, 6], init="zeros"),
        L("add", inputs=["x", "table", "gate"]),
        L("concat", name="joined", inputs=["cls", "add1"], dim=1),
    ]
    model = spec(layers, [tdsl.Input(name="x", shape=[3, 6])], out=(4, 6), seed=7)
    report = tdsl.validate(model)
    assert report.ok and report.param_count == 6 + 18 + 6
    assert report.output_shapes == {"joined": (None, 4, 6)}
    params = compile(model).init().params
    torch.manual_seed(7)
    assert torch.equal(params["cls.value"], nn.init.normal_(torch.empty(1, 1, 6), 0.0, 0.02))
    assert torch.equal(params["table.value"], nn.init.uniform_(torch.empty(1, 3, 6), -1.0, 2.0))
    assert torch.equal(params["gate.value"], torch.zeros(1, 1, 6))


def test_sources_take_no_implicit_input():
    layers = [
        L("linear", out_features=4),
        L("parameter", name="p", shape=[1, 4]),
        L("relu"),  # consumes p, not linear1
        L("add", inputs=["linear1", "relu1"]),
    ]
    model = spec(layers, [tdsl.Input(shape=[3])], out=(4,))
    report = tdsl.validate(model)
    assert report.ok and not report.diagnostics and report.output_shapes == {"add1": (None, 4)}
    nodes = resolve(model.model, Diagnostics()).nodes
    assert [n.inputs for n in nodes] == [("x",), (), ("p",), ("linear1", "relu1")]
    wrong = spec([L("parameter", shape=[1, 4], inputs=["x"])], [tdsl.Input(name="x", shape=[4])])
    assert "op 'parameter' takes 0 inputs, got 1" in tdsl.validate(wrong).format()
    # where the graph does not resolve, the arguments are still checked, sources without input
    broken = spec([L("parameter", shape=[1, 4]), L("add", inputs=["p"])], [tdsl.Input(shape=[4])])
    errors = [d.message for d in tdsl.validate(broken).errors]
    assert errors == ["unknown input 'p'"]


def test_constant_is_a_buffer_and_stack_broadcasts_the_batch():
    c = [[1.0, 2.0], [3.0, 4.0]]
    layers = [
        L("constant", name="c", value=c, dtype="float64"),
        L("cast", name="x64", inputs=["x"], dtype="float64"),
        L("mul", name="scaled", inputs=["x64", "c"]),
        L("constant", name="rows", value=[[[0.5, -0.5], [1, 2]]]),
        L("cast", dtype="float64"),
        L("stack", name="stacked", inputs=["cast1", "scaled"], dim=1),
    ]
    model = spec(layers, [tdsl.Input(name="x", shape=[2, 2])], outputs=["scaled", "stacked"])
    module = module_of(model)
    assert dict(module.named_buffers())["c.value"].dtype == torch.float64
    assert "rows.value" in module.state_dict()  # saved with the weights
    x = torch.randn(3, 2, 2)
    scaled, stacked = module(x)
    assert torch.equal(scaled, x.double() * torch.tensor(c, dtype=torch.float64))
    rows = torch.tensor([[0.5, -0.5], [1, 2]], dtype=torch.float64).expand(3, 2, 2)
    assert torch.equal(stacked, torch.stack([rows, scaled], 1))
    shapes_ = tdsl.validate(model).output_shapes
    assert shapes_ == {"scaled": (None, 2, 2), "stacked": (None, 2, 2, 2)}


def test_concat_expands_a_class_token_with_gradients():
    token = nn.Parameter(torch.randn(1, 1, 4))
    patches = torch.randn(3, 5, 4)
    layer = build("concat", [token, patches], dim=1)
    out = layer(token, patches)
    assert torch.equal(out, torch.cat([token.expand(3, 1, 4), patches], 1))
    out.sum().backward()
    assert torch.equal(token.grad, torch.full((1, 1, 4), 3.0))


# --- small gaps: depthwise convolutions, gelu, transformer masks -----------------------------


@pytest.mark.parametrize("how", [{"depthwise": True}, {"groups": "in_channels"}])
def test_depthwise_convolution(how):
    conv = L("conv2d", out_channels=32, kernel_size=3, padding=1, bias=False, **how)
    report = tdsl.validate(spec([conv], [tdsl.Input(shape=[32, 8, 8])], out=(32, 8, 8)))
    assert report.ok and report.param_count == 288  # MobileNet's 3x3 depthwise on 32 channels
    layer = build("conv2d", [torch.zeros(1, 32, 8, 8)], out_channels=32, kernel_size=3, **how)
    assert layer.groups == 32


def test_gelu_takes_approximate():
    x = torch.randn(5, 7)
    torch.testing.assert_close(build("gelu", [x], approximate="tanh")(x), nn.GELU("tanh")(x))
    with pytest.raises(ops.OpError, match="takes approximate 'none' or 'tanh', got 'tan'") as e:
        build("gelu", [x], approximate="tan")
    assert e.value.key == "approximate" and e.value.hint == "did you mean 'tanh'?"


@pytest.mark.parametrize("op", ["transformer_encoder", "transformer_encoder_layer"])
def test_transformer_ops_take_causal_and_a_padding_mask(op):
    torch.manual_seed(0)
    x, keep = torch.randn(3, 6, 8), KEEP
    ours = build(op, [x, keep], nhead=2, dim_feedforward=16, dropout=0.0, causal=True)
    torch_mask = {"src_key_padding_mask": ~keep, "is_causal": True}
    future = nn.Transformer.generate_square_subsequent_mask(6) < 0
    if op == "transformer_encoder":
        plain = nn.TransformerEncoder(ours.layers[0], 1, enable_nested_tensor=False)
        expected = plain(x, mask=future, **torch_mask)
    else:
        plain = nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True)
        plain.load_state_dict(ours.state_dict())
        expected = plain(x, src_mask=future, **torch_mask)
    torch.testing.assert_close(ours(x, keep)[keep], expected[keep])
    assert shapes.output_of(ours, [x.to("meta"), keep.to("meta")]).shape == (3, 6, 8)


# --- shape rules -------------------------------------------------------------------------------

MATMULS = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((5, 2, 3), (3, 4)), ((3,), (5, 3, 4)),
           ((5, 1, 2, 3), (4, 3, 2)), ((2, 2, 3, 4), (2, 2, 4, 3)), ((2, 3), (4, 2)),
           ((5, 2, 3), (4, 3, 2)), ((), (3,))]  # fmt: skip


@pytest.mark.parametrize("a, b", MATMULS)
def test_matmul_shape_matches_torch(a, b):
    try:
        expected = torch.matmul(torch.zeros(a), torch.zeros(b)).shape
    except RuntimeError:
        with pytest.raises(ops.OpError, match="cannot multiply"):
            matmul_shape(a, b)
        return
    assert matmul_shape(a, b) == expected


EINSUMS = [("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
           ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
           ("ij,kj", [(2, 3), (4, 1)]), ("...ij,...jk", [(2, 1, 3, 4), (5, 4, 6)]),
           ("ii->i", [(3, 3)]), ("bA,ba", [(3, 4), (3, 2)]), ("i...->", [(3, 2, 2)]),
           ("ij->...ji", [(3, 2)]), ("b i d, b j d -> b i j", [(2, 3, 4), (2, 5, 4)]),
           ("ij,jk->ik", [(2, 3), (4, 5)]), ("ij->ik", [(2, 3)]), ("ii", [(2, 3)]),
           ("ijk", [(2, 3)]), ("ij,jk", [(2, 3)]), ("i2->i", [(2, 3)]),
           ("...i,...i", [(2, 3), (4, 3)]), ("i...,i...", [(2, 3), (2, 4)])]  # fmt: skip


@pytest.mark.parametrize("equation, shapes_", EINSUMS)
def test_einsum_shape_matches_torch(equation, shapes_):
    try:
        expected = torch.einsum(equation, *(torch.zeros(s) for s in shapes_)).shape
    except RuntimeError:
        with pytest.raises(ops.OpError) as error:
            einsum_shape(equation, shapes_)
        assert error.value.key == "equation"
        return
    assert einsum_shape(equation, shapes_) == expected


RULES = {
    "self_attention": ("self_attention", [(2, 5, 8), (2, 5)], {"heads": 2}),
    "attention": ("attention", [(2, 5, 8), (2, 4, 8), (2, 4, 6), (2, 4)], {"heads": 2}),
    "attention-4d": ("attention", [(2, 2, 5, 4), (2, 2, 4, 4), (2, 2, 4, 3)], {}),
    "padding_mask": ("padding_mask", [(2, 5)], {"pad_id": 1}),
    "matmul": ("matmul", [(2, 5, 8), (8, 3)], {}),
    "einsum": ("einsum", [(2, 5, 8), (2, 4, 8)], {"equation": "bqd,bkd->bqk"}),
    "softmax": ("softmax", [(2, 3, 5), (2, 5)], {"dim": 2}),
    "abs": ("abs", [(2, 3)], {}),
    "cast": ("cast", [(2, 3)], {"dtype": "bfloat16"}),
    "positions": ("positions", [(2, 5, 3)], {"dim": 1}),
    "parameter": ("parameter", [], {"shape": [1, 4]}),
    "constant": ("constant", [], {"value": [[1, 2, 3]], "dtype": "int32"}),
    "concat": ("concat", [(1, 1, 4), (2, 3, 4)], {"dim": 1}),
    "stack": ("stack", [(2, 3), (1, 3)], {}),
}


@pytest.mark.parametrize("op, sizes, args", RULES.values(), ids=RULES)
def test_rules_match_running(op, sizes, args):
    masks = {"self_attention": 1, "attention": 3, "softmax": 1}  # the input that is a mask
    ints = {"padding_mask": 0}
    inputs = []
    for index, size in enumerate(sizes):
        if masks.get(op) == index:
            inputs.append(torch.ones(size, dtype=torch.bool))
        elif ints.get(op) == index:
            inputs.append(torch.randint(0, 3, size))
        else:
            inputs.append(torch.randn(size))
    layer = build(op, inputs, **args)
    rule = shapes.output_of(layer, [x.to("meta") for x in inputs])
    ran = layer(*inputs)
    assert rule is not None and (rule.shape, rule.dtype) == (ran.shape, ran.dtype)


def test_validating_the_new_ops_imports_no_compiler():
    code = """
    import sys, tdsl
    L = tdsl.Layer
    layers = [
        L("embedding", name="tok", num_embeddings=9, embedding_dim=8),
        L("positions", inputs=["ids"]), L("embedding", num_embeddings=6, embedding_dim=8),
        L("add", name="x", inputs=["tok", "embedding1"]),
        L("padding_mask", name="mask", inputs=["ids"], pad_id=0),
        L("self_attention", name="sa", inputs=["x", "mask"], heads=2, causal=True),
        L("transformer_encoder", name="enc", inputs=["sa", "mask"], nhead=2, causal=True),
        L("parameter", name="cls", shape=[1, 1, 8]), L("concat", inputs=["cls", "enc"], dim=1),
        L("einsum", name="scores", inputs=["concat1", "concat1"], equation="bqd,bkd->bqk"),
        L("softmax"), L("matmul", inputs=["softmax1", "concat1"]), L("abs"),
        L("cast", dtype="float64"), L("constant", name="c", value=2.0, dtype="float64"),
        L("mul", inputs=["cast1", "c"]), L("cast", dtype="float32"),
        L("conv1d", out_channels=7, kernel_size=3, depthwise=True), L("gelu", approximate="tanh"),
    ]
    spec = tdsl.Spec(
        name="t",
        data=tdsl.RandomData(target=tdsl.Target(kind="regression", shape=[7, 6]), int_high=9),
        model=tdsl.Model(inputs=[tdsl.Input(name="ids", shape=[6], dtype="int64")], layers=layers),
        loss=tdsl.Loss("mse"),
    )
    report = tdsl.validate(spec)
    assert report.ok, report.format()
    print("torch._dynamo" in sys.modules)
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# --- located messages ----------------------------------------------------------------------------

BASE = """\
name: messages
data:
  kind: random
  target: {kind: regression, shape: [6, 16]}
model:
  inputs:
    - {name: x, shape: [6, 16]}
    - {name: other, shape: [5], dtype: int64}
  layers:
%s
loss: {kind: mse}
"""
MESSAGES = {
    "heads": ["    - {name: attn, op: self_attention, inputs: [x], heads: 5}"],
    "mask": [
        "    - {name: mask, op: padding_mask, inputs: [other], pad_id: 0}",
        "    - {name: attn, op: self_attention, inputs: [x, mask], heads: 4}",
    ],
    "einsum": [
        "    - {name: scores, op: einsum, inputs: [x, x], equation: 'bij,bjk,bkl->bil'}",
        "    - {name: pairs, op: einsum, inputs: [x], equation: 'bi->b'}",
        "    - {name: sizes, op: einsum, inputs: [x, x], equation: 'bij,bjk->bik'}",
        "    - {name: twice, op: einsum, inputs: [x], equation: 'bij->bii'}",
    ],
    "cast": ["    - {name: wide, op: cast, inputs: [x], dtype: flaot64}"],
}
EXPECTED = {
    "heads": [
        "<spec>:10:53: error: model.layers[0].heads: layer 'attn' (self_attention) has heads 5, "
        "which does not divide the embedding size 16\n"
        "    hint: use a number of heads that divides 16"
    ],
    "mask": [
        "<spec>:11:40: error: model.layers[1].inputs: layer 'attn' (self_attention) needs its "
        "mask shaped [B, 6] for input [B, 6, 16], got [B, 5]"
    ],
    "einsum": [
        "<spec>:10:50: error: model.layers[0].equation: layer 'scores' (einsum) has equation "
        "'bij,bjk,bkl->bil' with 3 operands but 2 inputs",
        "<spec>:11:46: error: model.layers[1].equation: layer 'pairs' (einsum) has term 'bi' "
        "(2 subscripts) in equation 'bi->b' for input 1 [B, 6, 16] of rank 3",
        "<spec>:12:49: error: model.layers[2].equation: layer 'sizes' (einsum) has 'j' in "
        "equation 'bij,bjk->bik' of size 16 in input 1 and 6 in input 2",
        "<spec>:13:46: error: model.layers[3].equation: layer 'twice' (einsum) has output "
        "subscript 'i' twice in 'bij->bii'",
    ],
    "cast": [
        "<spec>:10:43: error: model.layers[0].dtype: layer 'wide' (cast) has unknown dtype "
        "'flaot64'\n    hint: did you mean 'float64' or 'float16' or 'bfloat16'?"
    ],
}


@pytest.mark.parametrize("case", MESSAGES)
def test_located_messages(case):
    report = tdsl.validate(BASE % "\n".join(MESSAGES[case]))
    assert [d.format() for d in report.errors] == EXPECTED[case]


def f32(*shape):
    return torch.zeros(shape)


def i64(*shape):
    return torch.zeros(shape, dtype=torch.int64)


OP_ERRORS = [
    ("conv2d", [f32(1, 32, 4, 4)], {"out_channels": 48, "kernel_size": 3, "depthwise": True},
     "out_channels", "is depthwise over 32 input channels, so out_channels must be a multiple "
     "of 32, got 48"),
    ("conv2d", [f32(1, 8, 4, 4)], {"out_channels": 8, "kernel_size": 3, "groups": "in_chanels"},
     "groups", "takes groups an integer or in_channels, got 'in_chanels'"),
    ("conv1d", [f32(1, 8, 4)], {"out_channels": 8, "kernel_size": 3, "groups": 2,
     "depthwise": True}, "groups", "is depthwise, which sets groups to the input channels; "
     "drop groups: 2"),
    ("conv1d", [f32(1, 8, 4)], {"out_channels": 8, "kernel_size": 3, "depthwise": "yes"},
     "depthwise", "takes depthwise true or false, got 'yes'"),
    ("self_attention", [f32(2, 5, 8), f32(2, 5)], {"heads": 2}, "inputs",
     "takes a mask of bool or 0/1 integers, got float32"),
    ("self_attention", [f32(2, 8)], {"heads": 2}, None,
     "needs a [batch, steps, features] input, got [2, 8]"),
    ("self_attention", [f32(2, 5, 8)], {"heads": 2, "causal": "yes"}, "causal",
     "takes causal true or false, got 'yes'"),
    ("attention", [f32(2, 5, 8), f32(2, 4, 6), f32(2, 4, 6)], {"heads": 2}, None,
     "needs q and k of one width and k and v of one length, got [2, 5, 8], [2, 4, 6], [2, 4, 6]"),
    ("attention", [f32(2, 5, 8)] * 3, {}, None, "needs q, k, v shaped [batch, heads, steps, "
     "features], got [2, 5, 8], [2, 5, 8], [2, 5, 8]"),
    ("attention", [f32(2, 5, 8)] * 3 + [i64(2, 4)], {"heads": 2}, "inputs",
     "needs its mask shaped [2, 5] for input [2, 5, 8], got [2, 4]"),
    ("transformer_encoder", [f32(2, 5, 8), i64(2, 6)], {"nhead": 2}, "inputs",
     "needs its mask shaped [2, 5] for input [2, 5, 8], got [2, 6]"),
    ("transformer_encoder_layer", [f32(5, 2, 8)], {"nhead": 2, "causal": True,
     "batch_first": False}, "batch_first", "takes causal and a mask only with batch_first: true"),
    ("padding_mask", [i64(2, 5)], {"pad_id": 1.5}, "pad_id", "takes pad_id an integer, got 1.5"),
    ("matmul", [f32(2, 3, 4), f32(2, 3, 4)], {}, None, "cannot multiply [2, 3, 4] by [2, 3, 4]: "
     "the first's last size 4 is not the second's second-to-last size 3"),
    ("matmul", [f32(2, 3), torch.zeros(3, 2, dtype=torch.float64)], {}, None,
     "needs two inputs of one numeric dtype, got float32 and float64"),
    ("softmax", [f32(2, 3, 4), i64(3, 4)], {}, "inputs", "needs a mask of its input's rank that "
     "broadcasts to [2, 3, 4], or [B, 4] along dim 2; got [3, 4]"),
    ("cast", [f32(2)], {"dtype": 32}, "dtype", "has unknown dtype 32"),
    ("positions", [i64(2, 5)], {"dim": 0}, "dim",
     "counts along dim 0, the batch; positions run along dim 1 or later"),
    ("positions", [i64(2, 5)], {"offset": -1}, "offset", "takes offset an integer >= 0, got -1"),
    ("parameter", [], {"shape": [1, 0]}, "shape",
     "takes shape a list of positive sizes, got [1, 0]"),
    ("parameter", [], {"shape": [2], "init": "normall"}, "init", "has unknown init 'normall'"),
    ("parameter", [], {"shape": [2], "init": "uniform", "std": 1}, "std",
     "takes std only with init normal, not uniform"),
    ("parameter", [], {"shape": [2], "init": "uniform", "low": 1, "high": 0}, "low",
     "takes low <= high, got 1 > 0"),
    ("constant", [], {"value": [[1, 2], [3]]}, "value",
     "takes value a number or a nested list of numbers of one shape, got [[1, 2], [3]]"),
    ("constant", [], {"value": 2**70, "dtype": "int64"}, "value",
     "cannot hold value 1180591620717411303424 as int64"),
    ("concat", [f32(1, 2, 4), f32(3, 5, 3)], {"dim": 1}, None,
     "along dim 1 needs the other dimensions to match, got [1, 2, 4], [3, 5, 3]"),
    ("einsum", [f32(2, 3)], {"equation": "i j -> j i k"}, "equation",
     "has output subscript 'k' in no input of 'i j -> j i k'"),
    ("einsum", [f32(2, 3)], {"equation": "i....j"}, "equation",
     "has '.' in equation 'i....j'; subscripts are letters a-z, A-Z and '...'"),
]  # fmt: skip


@pytest.mark.parametrize("op, inputs, args, key, message", OP_ERRORS)
def test_op_errors_name_the_argument(op, inputs, args, key, message):
    with pytest.raises(ops.OpError) as error:
        build(op, inputs, **args)
    assert error.value.message.startswith(message) and error.value.key == key
