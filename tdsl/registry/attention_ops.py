"""Attention as transformers use it: GPT-2/BERT self-attention, the parameter-free core, and
padding masks made from token ids.

Both attention ops run `torch.nn.functional.scaled_dot_product_attention` (the fused
kernels). Masks follow tdsl's convention: True (or 1) = a real token that may be attended
to. A query that may attend to nothing (a padding token under a causal mask, or a sample of
padding only) attends to every key instead, so every kernel gives finite values; real
tokens never attend to padding, so their outputs are unaffected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tdsl.registry import op_checks as check
from tdsl.registry.meta_tensors import meta
from tdsl.registry.ops import LAST_DIM, OpDef, OpError, register, shape_text


def attention_mask(
    keys: torch.Tensor | None, causal: bool, queries: int, length: int
) -> torch.Tensor | None:
    """sdpa's boolean attn_mask [B, 1, queries, length] for a key mask [B, length] (None
    without one: then causal attention uses sdpa's is_causal, which refuses an attn_mask)."""
    if keys is None:
        return None
    allowed = keys.bool()[:, None, None, :]
    if causal:  # top-left aligned, as sdpa's is_causal
        lower = torch.ones(queries, length, dtype=torch.bool, device=keys.device).tril()
        allowed = allowed & lower
    return allowed | ~allowed.any(-1, keepdim=True)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, T, E] -> [B, heads, T, E / heads]."""
    batch, steps, width = x.shape
    return x.view(batch, steps, heads, width // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, steps, width = x.shape
    return x.transpose(1, 2).reshape(batch, steps, heads * width)


class SelfAttention(nn.Module):
    """Multi-head self-attention as GPT-2 and BERT write it: one fused `qkv` projection to
    queries, keys and values, sdpa, and an output projection `proj`."""

    meta_any_dtype = True  # the mask input may be bool or integer

    def __init__(
        self, embed_dim: int, heads: int, causal: bool = False, dropout: float = 0.0, bias=True
    ):
        super().__init__()
        self.heads, self.causal, self.dropout = heads, causal, float(dropout)
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.qkv(x).split(x.shape[-1], dim=2)
        allowed = attention_mask(mask, self.causal, x.shape[1], x.shape[1])
        y = F.scaled_dot_product_attention(
            _split_heads(q, self.heads),
            _split_heads(k, self.heads),
            _split_heads(v, self.heads),
            attn_mask=allowed,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and allowed is None,
        )
        return self.proj(_merge_heads(y))

    def meta_output(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> Any:
        if x.dim() != 3 or x.shape[-1] != self.qkv.in_features or x.dtype != self.qkv.weight.dtype:
            return None
        return meta(x.shape, x.dtype)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, causal={self.causal}, dropout={self.dropout}"


def _heads_divide(heads: int, width: int, what: str) -> None:
    if width % heads:
        raise OpError(
            f"has heads {heads}, which does not divide {what} {width}",
            key="heads",
            hint=f"use a number of heads that divides {width}",
        )


def _build_self_attention(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
    x, *mask = check.tensors(inputs)
    if x.dim() != 3:
        raise OpError(f"needs a [batch, steps, features] input, got {shape_text(x.shape)}")
    width = LAST_DIM(x)
    if "embed_dim" in args and args["embed_dim"] != width:
        raise OpError(
            f"declares embed_dim={args['embed_dim']} but its input {shape_text(x.shape)} "
            f"gives {width}",
            key="embed_dim",
        )
    heads = check.integer(args, "heads", least=1)
    _heads_divide(heads, width, "the embedding size")
    if mask:
        check.padding_mask(mask[0], x.shape[0], x.shape[1], x)
    return SelfAttention(
        width,
        heads,
        causal=check.flag(args, "causal"),
        dropout=args.get("dropout", 0.0),
        bias=check.flag(args, "bias", True),
    )


class Attention(nn.Module):
    """softmax(q kᵀ · scale) v, without parameters: q, k, v [B, T, E] split into `heads`,
    or [B, H, T, D] already split when `heads` is omitted."""

    meta_any_dtype = True

    def __init__(
        self,
        heads: int | None = None,
        causal: bool = False,
        dropout: float = 0.0,
        scale: float | None = None,
    ):
        super().__init__()
        self.heads, self.causal, self.dropout, self.scale = heads, causal, float(dropout), scale

    def forward(self, q, k, v, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.heads is not None:
            q, k, v = (_split_heads(t, self.heads) for t in (q, k, v))
        allowed = attention_mask(mask, self.causal, q.shape[-2], k.shape[-2])
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=allowed,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and allowed is None,
            scale=self.scale,
        )
        return y if self.heads is None else _merge_heads(y)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, causal={self.causal}, dropout={self.dropout}"

    def meta_output(self, q, k, v, mask=None) -> torch.Tensor:
        return meta((*q.shape[:-1], v.shape[-1]), q.dtype)  # build() checked the rest


def _build_attention(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
    q, k, v, *mask = check.tensors(inputs)
    heads = None if args.get("heads") is None else check.integer(args, "heads", least=1)
    rank = 3 if heads else 4
    layout = "[batch, steps, features]" if heads else "[batch, heads, steps, features]"
    shapes = ", ".join(shape_text(t.shape) for t in (q, k, v))
    if any(t.dim() != rank for t in (q, k, v)):
        hint = None if heads else "give heads to split [batch, steps, features] inputs"
        raise OpError(f"needs q, k, v shaped {layout}, got {shapes}", hint=hint)
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise OpError(f"needs q, k, v with the same leading dimensions, got {shapes}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise OpError(f"needs q and k of one width and k and v of one length, got {shapes}")
    if not (q.is_floating_point() and q.dtype == k.dtype == v.dtype):
        kinds = ", ".join(str(t.dtype).removeprefix("torch.") for t in (q, k, v))
        raise OpError(f"needs floating-point q, k, v of one dtype, got {kinds}")
    if heads:
        _heads_divide(heads, q.shape[-1], "the query width")
        _heads_divide(heads, v.shape[-1], "the value width")
    if mask:
        check.padding_mask(mask[0], k.shape[0], k.shape[-2], k)
    return Attention(
        heads,
        causal=check.flag(args, "causal"),
        dropout=args.get("dropout", 0.0),
        scale=check.number(args, "scale", None),
    )


class PaddingMask(nn.Module):
    """True where a token id is not `pad_id`: the mask attention ops take."""

    meta_any_dtype = True

    def __init__(self, pad_id: int):
        super().__init__()
        self.pad_id = pad_id

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return ids != self.pad_id

    def meta_output(self, ids: torch.Tensor) -> torch.Tensor:
        return meta(ids.shape, torch.bool)

    def extra_repr(self) -> str:
        return f"pad_id={self.pad_id}"


def _build_padding_mask(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
    (ids,) = check.tensors(inputs)
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise OpError(f"takes integer token ids, got {str(ids.dtype).removeprefix('torch.')}")
    return PaddingMask(check.integer(args, "pad_id", least=None))


register(
    OpDef(
        "self_attention",
        _build_self_attention,
        {"heads": True, "causal": False, "dropout": False, "bias": False, "embed_dim": False},
        ("embed_dim",),
        min_inputs=1,
        max_inputs=2,
        doc="GPT-2/BERT multi-head self-attention (qkv, proj); optional 2nd input: padding mask",
        input_kind="masked",
    )
)
register(
    OpDef(
        "attention",
        _build_attention,
        {"heads": False, "causal": False, "dropout": False, "scale": False},
        min_inputs=3,
        max_inputs=4,
        doc="scaled dot-product attention of q, k, v (no parameters); optional 4th input: mask",
    )
)
register(
    OpDef(
        "padding_mask",
        _build_padding_mask,
        {"pad_id": True},
        doc="bool mask of token ids, True where id != pad_id",
        input_kind="int",
    )
)
