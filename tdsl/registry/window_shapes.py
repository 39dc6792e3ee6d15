"""Shape rules for sliding-window layers: convolutions, transposed convolutions, pooling
and adaptive pooling, with torch's own output-size arithmetic.

Like every rule in `tdsl.registry.shape_rules`, each answers None unless the input is the
plain valid case, and refuses with an `OpError` only what meta kernels take but real
devices refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tdsl.registry.meta_tensors import Rule, matches_params, meta
from tdsl.registry.ops import OpError


def _spatial(n: int, value: Any) -> tuple[int, ...] | None:
    """A kernel/stride/padding argument as n integers (None if it is anything else)."""
    values = tuple(value) if isinstance(value, tuple | list) else (value,) * n
    if len(values) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    return values


def _window_sizes(
    sizes: Sequence[int], kernel, stride, padding, dilation, ceil_mode: bool = False
) -> tuple[int, ...] | None:
    """Output sizes of a sliding window (convolution or pooling), as torch computes them."""
    out = []
    for size, k, s, p, d in zip(sizes, kernel, stride, padding, dilation, strict=True):
        if k <= 0 or s <= 0 or p < 0 or d <= 0:
            return None
        span = size + 2 * p - d * (k - 1) - 1
        steps = -(-span // s) if ceil_mode else span // s
        length = steps + 1
        if ceil_mode and (length - 1) * s >= size + p:
            length -= 1  # the last window must start inside the input or left padding
        if span < 0 or length <= 0:
            return None
        out.append(length)
    return tuple(out)


def conv(layer: nn.modules.conv._ConvNd, x: torch.Tensor) -> torch.Tensor | None:
    n = len(layer.kernel_size)
    if x.dim() != n + 2 or x.shape[1] != layer.in_channels or not matches_params(layer, x):
        return None
    if layer.padding_mode != "zeros":
        return None  # other modes pad with F.pad, which has limits of its own
    sizes = tuple(x.shape[2:])
    if layer.padding == "same":
        out: tuple[int, ...] | None = sizes
    else:
        padding = (0,) * n if layer.padding == "valid" else _spatial(n, layer.padding)
        if padding is None:
            return None
        out = _window_sizes(sizes, layer.kernel_size, layer.stride, padding, layer.dilation)
    if out is None:
        return None
    return meta((x.shape[0], layer.out_channels, *out), x.dtype)


def conv_transpose(layer: nn.modules.conv._ConvTransposeNd, x: torch.Tensor) -> Any:
    n = len(layer.kernel_size)
    if x.dim() != n + 2 or x.shape[1] != layer.in_channels or not matches_params(layer, x):
        return None
    out = []
    for size, k, s, p, d, extra in zip(
        x.shape[2:],
        layer.kernel_size,
        layer.stride,
        layer.padding,
        layer.dilation,
        layer.output_padding,
        strict=True,
    ):
        length = (size - 1) * s - 2 * p + d * (k - 1) + extra + 1
        if extra >= max(s, d):  # meta tensors take it; every real device refuses it
            raise OpError(
                f"output_padding {list(layer.output_padding)} must be smaller than the stride "
                f"{list(layer.stride)} or the dilation {list(layer.dilation)}",
                "output_padding",
            )
        if length <= 0:
            return None
        out.append(length)
    return meta((x.shape[0], layer.out_channels, *out), x.dtype)


def pool(n: int) -> Rule:
    def rule(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
        if x.dim() not in (n + 1, n + 2) or getattr(layer, "return_indices", False):
            return None
        kernel = _spatial(n, layer.kernel_size)
        stride = _spatial(n, layer.kernel_size if layer.stride is None else layer.stride)
        padding = _spatial(n, layer.padding)
        dilation = _spatial(n, getattr(layer, "dilation", 1))
        if None in (kernel, stride, padding, dilation):
            return None
        if any(p * 2 > k for p, k in zip(padding, kernel, strict=True)):
            return None  # torch refuses padding over half the kernel
        sizes = tuple(x.shape[-n:])
        if isinstance(layer, nn.AvgPool3d) and any(
            s < k for s, k in zip(sizes, kernel, strict=True)
        ):
            return None  # avg_pool3d wants the input, padding aside, to cover the kernel
        out = _window_sizes(sizes, kernel, stride, padding, dilation, layer.ceil_mode)
        return None if out is None else meta((*x.shape[:-n], *out), x.dtype)

    return rule


def adaptive(n: int) -> Rule:
    def rule(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
        if x.dim() not in (n + 1, n + 2) or getattr(layer, "return_indices", False):
            return None
        if any(size == 0 for size in x.shape[-n:]):
            return None
        wanted = layer.output_size
        wanted = tuple(wanted) if isinstance(wanted, tuple | list) else (wanted,) * n
        if len(wanted) != n or (None in wanted and (n == 1 or layer.output_size is None)):
            return None  # None keeps an input size, but not as the whole size or in 1-d
        out = [size if w is None else w for w, size in zip(wanted, x.shape[-n:], strict=True)]
        if not all(isinstance(v, int) and v >= 0 for v in out):
            return None
        return meta((*x.shape[:-n], *out), x.dtype)

    return rule
