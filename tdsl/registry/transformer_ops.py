"""torch's transformer encoder (`transformer_encoder`, `transformer_encoder_layer`) with
`causal: true` and an optional second input: a padding mask in tdsl's convention, True (or
1) = a real token. torch's `src_key_padding_mask` means the opposite (True = padding); the
layers here convert it, so a spec never writes torch's convention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tdsl.registry import op_checks as check
from tdsl.registry.meta_tensors import meta
from tdsl.registry.ops import LAST_DIM, OpDef, OpError, register, shape_text, torch_op


def torch_masks(
    src: torch.Tensor, mask: torch.Tensor | None, causal: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(attention mask, key padding mask) as torch's encoders take them: True = may not."""
    steps = src.shape[-2]
    future = None
    if causal:  # torch's is_causal is only a hint: the mask itself must be given too
        future = torch.ones(steps, steps, dtype=torch.bool, device=src.device).triu(1)
    return future, None if mask is None else ~mask.bool()


def _meta_output(width: int, dtype: torch.dtype, src: torch.Tensor) -> torch.Tensor | None:
    if src.dim() != 3 or src.shape[-1] != width or src.dtype != dtype:
        return None
    return meta(src.shape, src.dtype)


class EncoderLayer(nn.TransformerEncoderLayer):
    """TransformerEncoderLayer(src, mask=None) with tdsl's mask and a `causal` setting."""

    meta_any_dtype = True  # the mask may be bool or integer

    def __init__(self, *args: Any, causal: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.causal = causal

    def forward(self, src: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        future, padding = torch_masks(src, mask, self.causal)
        return super().forward(
            src, src_mask=future, src_key_padding_mask=padding, is_causal=self.causal
        )

    def meta_output(self, src: torch.Tensor, mask: torch.Tensor | None = None) -> Any:
        return _meta_output(self.self_attn.embed_dim, self.linear1.weight.dtype, src)


class Encoder(nn.TransformerEncoder):
    """TransformerEncoder(src, mask=None) with tdsl's mask and a `causal` setting."""

    meta_any_dtype = True

    def __init__(self, layer: nn.TransformerEncoderLayer, num_layers: int, causal: bool = False):
        # enable_nested_tensor only matters for padded inference and warns with norm_first.
        super().__init__(layer, num_layers, enable_nested_tensor=False)
        self.causal = causal

    def forward(self, src: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        future, padding = torch_masks(src, mask, self.causal)
        return super().forward(
            src, mask=future, src_key_padding_mask=padding, is_causal=self.causal
        )

    def meta_output(self, src: torch.Tensor, mask: torch.Tensor | None = None) -> Any:
        first = self.layers[0]
        return _meta_output(first.self_attn.embed_dim, first.linear1.weight.dtype, src)


_PLAIN_LAYER = torch_op(
    "transformer_encoder_layer",
    nn.TransformerEncoderLayer,
    {"d_model": LAST_DIM},
    {"batch_first": True},
)
_LAYER = torch_op(
    "transformer_encoder_layer", EncoderLayer, {"d_model": LAST_DIM}, {"batch_first": True}
)


def _causal_and_mask(args: dict[str, Any], inputs: Sequence[Any]) -> bool:
    """Pop and check `causal`; check the mask input against the sequence."""
    causal = check.flag(args, "causal")
    args.pop("causal", None)
    src, *mask = check.tensors(inputs)
    if (causal or mask) and args.get("batch_first", True) is not True:
        raise OpError("takes causal and a mask only with batch_first: true", key="batch_first")
    if mask:
        if src.dim() != 3:
            raise OpError(
                f"takes a mask with a [batch, steps, features] input, got {shape_text(src.shape)}"
            )
        check.padding_mask(mask[0], src.shape[0], src.shape[1], src)
    return causal


def _encoder_layer(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
    args = dict(args)
    causal = _causal_and_mask(args, inputs)
    return _LAYER.build({**args, "causal": causal}, inputs)


def _encoder(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
    args = dict(args)
    causal = _causal_and_mask(args, inputs)
    num_layers = args.pop("num_layers", 1)
    return Encoder(_PLAIN_LAYER.build(args, inputs), num_layers, causal)


_ARGUMENTS = {**_PLAIN_LAYER.arguments, "causal": False}
_MASK_DOC = "; causal: true for a causal mask; optional 2nd input: padding mask (True = token)"
register(
    OpDef(
        "transformer_encoder_layer",
        _encoder_layer,
        _ARGUMENTS,
        ("d_model",),
        max_inputs=2,
        doc="torch.nn.TransformerEncoderLayer" + _MASK_DOC,
        input_kind="masked",
    )
)
register(
    OpDef(
        "transformer_encoder",
        _encoder,
        {**_ARGUMENTS, "num_layers": False},
        ("d_model",),
        max_inputs=2,
        doc="a stack of num_layers TransformerEncoderLayer" + _MASK_DOC,
        input_kind="masked",
    )
)
