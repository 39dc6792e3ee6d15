"""Short names for the common torch.nn layers, with their input sizes inferred.

Arguments keep torch's own keyword names; the ones listed under `infer` may be omitted.
Recurrent and attention layers default to `batch_first=True` (tensors are batch-major
everywhere in tdsl).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tdsl.registry.op_checks import flag, tensors
from tdsl.registry.ops import CHANNEL_DIM, LAST_DIM, OpDef, OpError, register, torch_op
from tdsl.wording import did_you_mean, show

register(torch_op("linear", nn.Linear, {"in_features": LAST_DIM}))
register(torch_op("bilinear", nn.Bilinear, {"in1_features": LAST_DIM}))


def _conv(rank: int) -> OpDef:
    """conv1d/2d/3d; `groups: in_channels` or `depthwise: true` sets groups to the input's
    channels (MobileNet's depthwise convolution; out_channels a multiple of them)."""
    plain = torch_op(f"conv{rank}d", getattr(nn, f"Conv{rank}d"), {"in_channels": CHANNEL_DIM})

    def build(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
        args = dict(args)
        depthwise = flag(args, "depthwise")
        args.pop("depthwise", None)
        groups = args.get("groups")
        if depthwise and groups not in (None, "in_channels"):
            raise OpError(
                f"is depthwise, which sets groups to the input channels; drop groups: "
                f"{show(groups)}",
                key="groups",
            )
        if isinstance(groups, str) and groups != "in_channels":
            hint = did_you_mean(groups, ["in_channels"])
            raise OpError(
                f"takes groups an integer or in_channels, got {show(groups)}", "groups", hint
            )
        if depthwise or groups == "in_channels":
            channels = CHANNEL_DIM(tensors(inputs)[0])
            out = args.get("out_channels")
            if isinstance(out, int) and out % channels:
                raise OpError(
                    f"is depthwise over {channels} input channels, so out_channels must be a "
                    f"multiple of {channels}, got {out}",
                    key="out_channels",
                )
            args["groups"] = channels
        return plain.build(args, inputs)

    return OpDef(
        plain.name, build, {**plain.arguments, "depthwise": False}, plain.inferred, doc=plain.doc
    )


for rank in (1, 2, 3):
    register(_conv(rank))
    register(
        torch_op(
            f"conv_transpose{rank}d",
            getattr(nn, f"ConvTranspose{rank}d"),
            {"in_channels": CHANNEL_DIM},
        ),
        f"convtranspose{rank}d",
    )
    register(torch_op(f"maxpool{rank}d", getattr(nn, f"MaxPool{rank}d")), f"max_pool{rank}d")
    register(torch_op(f"avgpool{rank}d", getattr(nn, f"AvgPool{rank}d")), f"avg_pool{rank}d")
    register(
        torch_op(f"adaptive_maxpool{rank}d", getattr(nn, f"AdaptiveMaxPool{rank}d")),
        f"adaptivemaxpool{rank}d",
    )
    register(
        torch_op(f"adaptive_avgpool{rank}d", getattr(nn, f"AdaptiveAvgPool{rank}d")),
        f"adaptiveavgpool{rank}d",
    )
    register(
        torch_op(
            f"batchnorm{rank}d", getattr(nn, f"BatchNorm{rank}d"), {"num_features": CHANNEL_DIM}
        ),
        f"batch_norm{rank}d",
    )
    register(
        torch_op(
            f"instancenorm{rank}d",
            getattr(nn, f"InstanceNorm{rank}d"),
            {"num_features": CHANNEL_DIM},
        )
    )
    register(torch_op(f"dropout{rank}d", getattr(nn, f"Dropout{rank}d")))

register(torch_op("dropout", nn.Dropout))
register(torch_op("layernorm", nn.LayerNorm, {"normalized_shape": LAST_DIM}), "layer_norm")
register(torch_op("groupnorm", nn.GroupNorm, {"num_channels": CHANNEL_DIM}), "group_norm")
register(torch_op("embedding", nn.Embedding, input_kind="int"))
register(torch_op("embedding_bag", nn.EmbeddingBag, input_kind="int"), "embeddingbag")
for rnn in (nn.LSTM, nn.GRU, nn.RNN):
    register(torch_op(rnn.__name__.lower(), rnn, {"input_size": LAST_DIM}, {"batch_first": True}))
register(torch_op("flatten", nn.Flatten))
register(torch_op("unflatten", nn.Unflatten))
register(torch_op("log_softmax", nn.LogSoftmax, defaults={"dim": -1}), "logsoftmax")
register(torch_op("leaky_relu", nn.LeakyReLU))
register(torch_op("prelu", nn.PReLU))


def _batchnorm(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
    x = inputs[0]
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3, 4, 5):
        shape = list(x.shape) if isinstance(x, torch.Tensor) else "a tuple"
        raise OpError(f"needs a 2- to 5-dimensional input, got {shape}")
    rank = {2: 1, 3: 1, 4: 2, 5: 3}[x.dim()]
    return _BATCHNORMS[rank].build(args, inputs)


_BATCHNORMS = {
    r: torch_op(f"batchnorm{r}d", getattr(nn, f"BatchNorm{r}d"), {"num_features": CHANNEL_DIM})
    for r in (1, 2, 3)
}
register(
    OpDef(
        "batchnorm",
        _batchnorm,
        _BATCHNORMS[1].arguments,
        ("num_features",),
        doc="BatchNorm1d/2d/3d chosen by input rank",
    ),
    "batch_norm",
)


class SelfOrCrossAttention(nn.MultiheadAttention):
    """MultiheadAttention that takes one input (self-attention) or query, key, value."""

    def forward(self, query, key=None, value=None, **kwargs):  # type: ignore[override]
        key = query if key is None else key
        value = key if value is None else value
        return super().forward(query, key, value, **kwargs)


_ATTENTION = torch_op(
    "multihead_attention",
    SelfOrCrossAttention,
    {"embed_dim": LAST_DIM},
    {"batch_first": True},
    doc="MultiheadAttention; 1 input = self-attention, 3 = query/key/value; "
    "outputs (values, weights)",
)
register(
    OpDef(
        _ATTENTION.name,
        _ATTENTION.build,
        _ATTENTION.arguments,
        _ATTENTION.inferred,
        min_inputs=1,
        max_inputs=3,
        doc=_ATTENTION.doc,
    )
)
