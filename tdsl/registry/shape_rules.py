"""Layer outputs computed from the layers' settings, for inference on the meta device.

Running a layer on meta tensors makes torch 2.13 import its compiler stack (about a second
of start-up, more than the rest of `tdsl validate`) on the first op, and costs a Python
loop per step for recurrent layers. For the common layers the output's shape and dtype
follow from a formula, so inference reads them off here. A rule answers None whenever the
input is anything but the plain valid case; the layer then runs on meta as before and torch
words any error. Where meta kernels take what real devices refuse (a softmax dim out of
range), the rule refuses it with an `OpError`. tests/test_shapes.py checks every rule
against running the layer on meta and on the CPU. This module holds the table of rules and
the rules for the layers that keep or reshape their input; the sliding-window rules are in
`tdsl.registry.window_shapes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tdsl.registry.meta_tensors import Rule, matches_params, meta, valid_dim
from tdsl.registry.ops import OpError, shape_text
from tdsl.registry.window_shapes import adaptive, conv, conv_transpose, pool


def output_of(layer: nn.Module, inputs: Sequence[Any]) -> Any:
    """The layer's output on these meta inputs, or None when no rule applies."""
    if any(isinstance(x, torch.Tensor) and x.numel() == 0 for x in inputs):
        return None  # torch refuses empty inputs to many layers, each in its own way
    own = getattr(layer, "meta_output", None)  # tdsl's graph ops carry their own rule
    if own is not None:
        # Most rules are written for floating-point inputs; one that reads masks or ids
        # (`meta_any_dtype`) answers for any, or says None itself.
        tensors = all(isinstance(x, torch.Tensor) for x in inputs)
        floating = tensors and all(x.is_floating_point() for x in inputs)
        if floating or (tensors and getattr(layer, "meta_any_dtype", False)):
            return own(*inputs)
        return None
    rule = _RULES.get(type(layer))
    if rule is None or len(inputs) != 1 or not isinstance(inputs[0], torch.Tensor):
        return None
    x = inputs[0]
    if not x.is_floating_point() and not isinstance(layer, nn.Embedding):
        return None
    return rule(layer, x)


def _same(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return meta(x.shape, x.dtype)


def _feature_dim(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Layers that keep the shape but check the size of dim 1 (channels or features)."""
    wanted = getattr(layer, "num_features", None) or getattr(layer, "num_channels", None)
    ranks = _NORM_RANKS.get(type(layer), (2, 3, 4, 5))
    if x.dim() not in ranks or x.shape[1] != wanted or not matches_params(layer, x):
        return None
    return _same(layer, x) if _normalizes(layer, x) else None


def _normalizes(layer: nn.Module, x: torch.Tensor) -> bool:
    """Whether torch accepts normalizing x. Wherever a norm uses the input's own statistics
    (group norm always; batch and instance norm in training or without running statistics)
    it refuses a single value per channel (per group, per instance), and batch norm there
    refuses eps <= 0 (eps < 0 anywhere)."""
    spatial = math.prod(x.shape[2:])
    if isinstance(layer, nn.GroupNorm):
        return x.shape[0] * x.shape[1] // layer.num_groups * spatial != 1
    input_statistics = layer.training or not layer.track_running_stats
    if isinstance(layer, nn.modules.instancenorm._InstanceNorm):
        return not input_statistics or spatial != 1
    if layer.eps < 0 or (input_statistics and layer.eps <= 0):
        return False
    return not input_statistics or x.shape[0] * spatial != 1


def _ranked(ranks: tuple[int, ...]) -> Rule:
    def rule(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
        return _same(layer, x) if x.dim() in ranks else None

    return rule


def _softmax(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    dim = layer.dim
    if dim is None:
        return None  # torch picks (and warns about) an implicit dim
    if not valid_dim(dim, x.dim()):  # meta tensors take any dim: refused here, as CPU does
        rank = max(x.dim(), 1)
        raise OpError(
            f"dim {dim} is out of range for its {x.dim()}-d input {shape_text(x.shape)} "
            f"(expected {-rank} to {rank - 1})",
            "dim",
        )
    return _same(layer, x)


def _prelu(layer: nn.PReLU, x: torch.Tensor) -> torch.Tensor | None:
    count = layer.num_parameters
    if count != 1 and (x.dim() < 2 or x.shape[1] != count):
        return None
    return _same(layer, x) if matches_params(layer, x) else None


def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor | None:
    if x.dim() < 1 or x.shape[-1] != layer.in_features or not matches_params(layer, x):
        return None
    return meta((*x.shape[:-1], layer.out_features), x.dtype)


def _layer_norm(layer: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor | None:
    wanted = tuple(layer.normalized_shape)
    if x.dim() < len(wanted) or tuple(x.shape[x.dim() - len(wanted) :]) != wanted:
        return None
    return _same(layer, x) if matches_params(layer, x) else None


def _flatten(layer: nn.Flatten, x: torch.Tensor) -> torch.Tensor | None:
    rank = x.dim()
    if rank == 0 or not (-rank <= layer.start_dim < rank and -rank <= layer.end_dim < rank):
        return None
    start, end = layer.start_dim % rank, layer.end_dim % rank
    if start > end:
        return None
    shape = x.shape
    return meta((*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :]), x.dtype)


def _embedding(layer: nn.Embedding, x: torch.Tensor) -> torch.Tensor | None:
    if x.dtype not in (torch.int64, torch.int32) or layer.max_norm is not None:
        return None
    return meta((*x.shape, layer.embedding_dim), layer.weight.dtype)


def _recurrent(layer: nn.RNNBase, x: torch.Tensor) -> Any:
    """An RNN's outputs from its settings: running it on meta tensors costs a Python loop
    per step and layer, which for long sequences takes as long as real work. (A 2-d input
    is refused by build.py before this is asked.)"""
    if x.dim() != 3 or x.shape[-1] != layer.input_size or not matches_params(layer, x):
        return None
    batch, steps = (x.shape[0], x.shape[1]) if layer.batch_first else (x.shape[1], x.shape[0])
    directions = 2 if layer.bidirectional else 1
    out_size = layer.proj_size or layer.hidden_size
    shape = (batch, steps) if layer.batch_first else (steps, batch)
    output = meta((*shape, directions * out_size), x.dtype)
    h = meta((directions * layer.num_layers, batch, out_size), x.dtype)
    if isinstance(layer, nn.LSTM):
        return output, (h, meta((directions * layer.num_layers, batch, layer.hidden_size), x.dtype))
    return output, h


# Element-wise layers: the output is the input's shape and dtype.
_ELEMENTWISE = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign, nn.Hardtanh, nn.Hardsigmoid,
    nn.Hardswish, nn.LogSigmoid, nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.Threshold,
    nn.Dropout, nn.AlphaDropout, nn.FeatureAlphaDropout,
)  # fmt: skip
_NORM_RANKS = {
    nn.BatchNorm1d: (2, 3),
    nn.BatchNorm2d: (4,),
    nn.BatchNorm3d: (5,),
    nn.InstanceNorm1d: (3,),
    nn.InstanceNorm2d: (4,),
    nn.InstanceNorm3d: (5,),
    nn.GroupNorm: (2, 3, 4, 5),
}
_RULES: dict[type, Rule] = {
    **{cls: _same for cls in _ELEMENTWISE},
    **{cls: _feature_dim for cls in _NORM_RANKS},
    nn.Dropout1d: _ranked((3,)),
    nn.Dropout2d: _ranked((4,)),
    nn.Dropout3d: _ranked((5,)),
    nn.Softmax: _softmax,
    nn.LogSoftmax: _softmax,
    nn.Softmin: _softmax,
    nn.PReLU: _prelu,
    nn.Linear: _linear,
    nn.LayerNorm: _layer_norm,
    nn.Flatten: _flatten,
    nn.Embedding: _embedding,
    nn.LSTM: _recurrent,
    nn.GRU: _recurrent,
    nn.RNN: _recurrent,
    **{cls: conv for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d)},
    **{cls: conv_transpose for cls in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)},
    **{cls: pool(n) for n, cls in enumerate((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d), 1)},
    **{cls: pool(n) for n, cls in enumerate((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), 1)},
    **{
        cls: adaptive(n)
        for n, cls in enumerate(
            (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d), 1
        )
    },
    **{
        cls: adaptive(n)
        for n, cls in enumerate(
            (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d), 1
        )
    },
}
