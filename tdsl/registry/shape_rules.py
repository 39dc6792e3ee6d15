"""Layer outputs computed from the layers' settings, for inference on the meta device.

Running a layer on meta tensors makes torch 2.13 import its compiler stack (about a second
of start-up, more than the rest of `tdsl validate`) on the first op, and costs a Python
loop per step for recurrent layers. For the common layers the output's shape and dtype
follow from a formula, so inference reads them off here. A rule answers None whenever the
input is anything but the plain valid case; the layer then runs on meta as before and torch
words any error. Where meta kernels take what real devices refuse (a softmax dim out of
range), the rule refuses it with an `OpError`. tests/test_shapes.py checks every rule
against running the layer on meta and on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from tdsl.registry.ops import OpError, shape_text

Rule = Callable[[Any, torch.Tensor], Any]


def meta(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype, device="meta")


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """torch's broadcasting rule on plain shapes. `torch.broadcast_shapes` does the same
    but imports sympy on its first call (about half a second of validation); like it, this
    raises RuntimeError when the shapes do not broadcast."""
    out: list[int] = []
    for shape in shapes:
        shape = tuple(shape)
        width = max(len(out), len(shape))
        left = [1] * (width - len(out)) + out
        right = (1,) * (width - len(shape)) + shape
        out = []
        for a, b in zip(left, right, strict=True):
            if a != b and 1 not in (a, b):
                raise RuntimeError(f"shapes {list(left)} and {list(right)} do not broadcast")
            out.append(b if a == 1 else a)
    return tuple(out)


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


def valid_dim(dim: int, rank: int) -> bool:
    """Whether torch accepts `dim` for a tensor of `rank` (a 0-d tensor takes 0 and -1)."""
    return -max(rank, 1) <= dim < max(rank, 1)


def _same(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return meta(x.shape, x.dtype)


def _feature_dim(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Layers that keep the shape but check the size of dim 1 (channels or features)."""
    wanted = getattr(layer, "num_features", None) or getattr(layer, "num_channels", None)
    ranks = _NORM_RANKS.get(type(layer), (2, 3, 4, 5))
    if x.dim() not in ranks or x.shape[1] != wanted or not _matches_params(layer, x):
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


def _matches_params(layer: nn.Module, x: torch.Tensor) -> bool:
    """Whether the layer's floating-point weights and statistics have the input's dtype."""
    tensors = [*layer.parameters(recurse=False), *layer.buffers(recurse=False)]
    return all(t.dtype == x.dtype for t in tensors if t.is_floating_point())


def _softmax(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    dim = layer.dim
    if dim is None:
        return None  # torch picks (and warns about) an implicit dim
    if not valid_dim(dim, x.dim()):  # meta tensors take any dim: refused here, as CPU does
        rank = max(x.dim(), 1)
        raise _refused(
            f"dim {dim} is out of range for its {x.dim()}-d input {shape_text(x.shape)} "
            f"(expected {-rank} to {rank - 1})",
            "dim",
        )
    return _same(layer, x)


def _refused(message: str, key: str) -> OpError:
    return OpError(message, key)


def _prelu(layer: nn.PReLU, x: torch.Tensor) -> torch.Tensor | None:
    count = layer.num_parameters
    if count != 1 and (x.dim() < 2 or x.shape[1] != count):
        return None
    return _same(layer, x) if _matches_params(layer, x) else None


def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor | None:
    if x.dim() < 1 or x.shape[-1] != layer.in_features or not _matches_params(layer, x):
        return None
    return meta((*x.shape[:-1], layer.out_features), x.dtype)


def _layer_norm(layer: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor | None:
    wanted = tuple(layer.normalized_shape)
    if x.dim() < len(wanted) or tuple(x.shape[x.dim() - len(wanted) :]) != wanted:
        return None
    return _same(layer, x) if _matches_params(layer, x) else None


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


def _conv(layer: nn.modules.conv._ConvNd, x: torch.Tensor) -> torch.Tensor | None:
    n = len(layer.kernel_size)
    if x.dim() != n + 2 or x.shape[1] != layer.in_channels or not _matches_params(layer, x):
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


def _conv_transpose(layer: nn.modules.conv._ConvTransposeNd, x: torch.Tensor) -> Any:
    n = len(layer.kernel_size)
    if x.dim() != n + 2 or x.shape[1] != layer.in_channels or not _matches_params(layer, x):
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
            raise _refused(
                f"output_padding {list(layer.output_padding)} must be smaller than the stride "
                f"{list(layer.stride)} or the dilation {list(layer.dilation)}",
                "output_padding",
            )
        if length <= 0:
            return None
        out.append(length)
    return meta((x.shape[0], layer.out_channels, *out), x.dtype)


def _pool(n: int) -> Rule:
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


def _adaptive(n: int) -> Rule:
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


def _recurrent(layer: nn.RNNBase, x: torch.Tensor) -> Any:
    """An RNN's outputs from its settings: running it on meta tensors costs a Python loop
    per step and layer, which for long sequences takes as long as real work. (A 2-d input
    is refused by build.py before this is asked.)"""
    if x.dim() != 3 or x.shape[-1] != layer.input_size or not _matches_params(layer, x):
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
    **{cls: _conv for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d)},
    **{
        cls: _conv_transpose for cls in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    },
    **{cls: _pool(n) for n, cls in enumerate((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d), 1)},
    **{cls: _pool(n) for n, cls in enumerate((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), 1)},
    **{
        cls: _adaptive(n)
        for n, cls in enumerate(
            (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d), 1
        )
    },
    **{
        cls: _adaptive(n)
        for n, cls in enumerate(
            (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d), 1
        )
    },
}


class SkipMetaInit(TorchFunctionMode):
    """Layer construction on the meta device without running initializers: they have no
    data to fill there, and some (`normal_`) would import torch's compiler stack."""

    FILLS = frozenset({"fill_", "zero_", "normal_", "uniform_"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")
        initializer = getattr(func, "__module__", None) == "torch.nn.init"
        if (initializer or getattr(func, "__name__", "") in self.FILLS) and _is_meta(target):
            return target
        return func(*args, **kwargs)


def _is_meta(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_meta
