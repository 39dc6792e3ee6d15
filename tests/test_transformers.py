"""Transformers written with blocks (issue 16): GPT-2 and BERT-base parameter counts, and a
small GPT against a hand-written nanoGPT-style model (same names up to the documented
mapping, same outputs and gradients for the same weights, causal)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import tdsl

MODELS = Path(__file__).resolve().parent.parent / "specs" / "models"

VOCAB, BLOCK, WIDTH, HEADS, DEPTH = 50, 16, 32, 4, 2


# --- nanoGPT's model, written out (karpathy/nanoGPT model.py, without dropout) ----------------


class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(WIDTH, 3 * WIDTH)
        self.c_proj = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(WIDTH, dim=2)
        q, k, v = (z.view(b, t, HEADS, c // HEADS).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(c // HEADS)
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
        att = F.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(WIDTH)
        self.attn = CausalSelfAttention()
        self.ln_2 = nn.LayerNorm(WIDTH)
        self.c_fc = nn.Linear(WIDTH, 4 * WIDTH)
        self.c_proj = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, WIDTH)
        self.wpe = nn.Embedding(BLOCK, WIDTH)
        self.h = nn.ModuleList(Block() for _ in range(DEPTH))
        self.ln_f = nn.LayerNorm(WIDTH)
        self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)
        self.wte.weight = self.lm_head.weight  # nanoGPT's weight tying

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x)[:, -1])


def tdsl_name(nanogpt_name: str) -> str:
    """The documented mapping: nanoGPT's fused projections `attn.c_attn` and `attn.c_proj`
    are tdsl's `self_attention` parameters `attn.qkv` and `attn.proj`; the MLP's layers are
    the block's own `c_fc`/`c_proj`; copies of the repeated block are `h.N`."""
    return nanogpt_name.replace("attn.c_attn.", "attn.qkv.").replace("attn.c_proj.", "attn.proj.")


def small_gpt() -> tdsl.Spec:
    text = (MODELS / "gpt2_small.yaml").read_text()
    for big, small in (
        ("50257", str(VOCAB)),
        ("shape: [1024]", f"shape: [{BLOCK}]"),
        ("num_embeddings: 1024", f"num_embeddings: {BLOCK}"),
        ("embedding_dim: 768", f"embedding_dim: {WIDTH}"),
        ("width: 768, heads: 12, dropout: 0.1", f"width: {WIDTH}, heads: {HEADS}, dropout: 0.0"),
        ("repeat: 12", f"repeat: {DEPTH}"),
        ("p: 0.1", "p: 0.0"),
    ):
        assert big in text, big
        text = text.replace(big, small)
    return tdsl.load(text)


@pytest.mark.parametrize(
    ("name", "count"), [("gpt2_small", 124_439_808), ("bert_base", 108_891_648)]
)
def test_transformer_specs_validate_with_the_public_parameter_counts(name, count):
    report = tdsl.validate(MODELS / f"{name}.yaml")
    assert report.ok, "\n".join(str(d) for d in report.diagnostics)
    assert report.param_count == count


def test_the_gpt2_spec_is_short():
    assert len((MODELS / "gpt2_small.yaml").read_text().splitlines()) <= 50


def test_a_small_gpt_matches_the_hand_written_one():
    torch.manual_seed(0)
    reference = GPT()
    program = tdsl.compile(small_gpt())
    ours = program.module
    theirs = {tdsl_name(k): v for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.items()
    }
    ours.load_state_dict(theirs)
    assert ours.lm_head.weight is ours.wte.weight
    ids = torch.randint(0, VOCAB, (3, BLOCK))
    expected, got = reference(ids), ours(ids)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    expected.square().sum().backward()
    got.square().sum().backward()
    grads = {tdsl_name(k): p.grad for k, p in reference.named_parameters()}
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_the_small_gpt_is_causal():
    program = tdsl.compile(small_gpt())
    module = program.module.eval()
    ids = torch.randint(0, VOCAB, (2, BLOCK))
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % VOCAB  # only the last token differs
    # The hidden state of every earlier position is the same: the first block's output
    # there cannot see the changed token.
    hidden = {}
    module.h.register_forward_hook(lambda m, args, out: hidden.setdefault(len(hidden), out))
    module(ids)
    module(changed)
    torch.testing.assert_close(hidden[0][:, :-1], hidden[1][:, :-1])
    assert not torch.allclose(hidden[0][:, -1], hidden[1][:, -1])
