"""What a layer refuses, said in tdsl's words before torch says it in its own.

torch words a bad input to a convolution or pooling layer as "Expected 3D (unbatched) or 4D
(batched) input to conv2d, but got input of size: [7919, 2]" or "Kernel size can't be greater
than actual input size"; `check_window_input` states the same rule with the layer's settings
and the input's sizes. Whatever torch still refuses passes through `torch_reason`, which keeps
its wording only when it reads as a rule rather than as Python's internals.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tdsl.registry.ops import BATCH, OpError, shape_text
from tdsl.wording import plain_reason

_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


def _spatial(n: int, value: Any) -> tuple[int, ...] | None:
    values = tuple(value) if isinstance(value, tuple | list) else (value,) * n
    ok = len(values) == n and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    return values if ok else None


def _sizes(values: Sequence[int]) -> str:
    return " x ".join(str(v) for v in values)


def check_window_input(layer: nn.Module, inputs: Sequence[Any]) -> None:
    """Raise an OpError naming the rule when a convolution or pooling layer cannot slide its
    window over this input: wrong rank, wrong channel count, or a window wider than the
    (padded) input."""
    if not isinstance(layer, (nn.modules.conv._ConvNd, *_POOLS)) or len(inputs) != 1:
        return
    x = inputs[0]
    if not isinstance(x, torch.Tensor):
        return
    conv = isinstance(layer, nn.modules.conv._ConvNd)
    n = len(layer.kernel_size) if conv else int(type(layer).__name__[-2])
    if x.dim() not in ((n + 2,) if conv else (n + 1, n + 2)):
        raise OpError(
            f"slides a {n}-d window, so it needs input [B, channels, {_dims(n)}], "
            f"got {shape_text(x.shape)}",
            hint="reshape the input to [B, channels, ...] first (op unflatten or reshape), "
            "or use the layer of its dimensionality",
        )
    if conv and x.shape[1] != layer.in_channels:
        return  # the declared in_channels differ from the input's: reported where declared
    kernel, padding = _spatial(n, layer.kernel_size), _spatial(n, layer.padding)
    dilation = _spatial(n, getattr(layer, "dilation", 1))
    if kernel is None or padding is None or dilation is None:
        return  # "same"/"valid" padding or an unusual value: torch's own checks follow
    if not conv and any(2 * p > k for p, k in zip(padding, kernel, strict=True)):
        raise OpError(
            f"has padding {_sizes(padding)}, more than half its kernel {_sizes(kernel)}",
            key="padding",
            hint="pooling pads at most half a window: lower padding or widen kernel_size",
        )
    sizes = tuple(int(s) for s in x.shape[-n:])
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
    padded = tuple(s + 2 * p for s, p in zip(sizes, padding, strict=True))
    if any(w > s for w, s in zip(span, padded, strict=True)):
        dilated = "" if set(dilation) == {1} else f" (kernel {_sizes(kernel)} dilated)"
        padded_text = "" if set(padding) == {0} else f" ({_sizes(sizes)} padded)"
        raise OpError(
            f"has a window of {_sizes(span)}{dilated}, larger than its input's "
            f"{_sizes(padded)}{padded_text} from {shape_text(x.shape)}",
            key="kernel_size",
            hint="use a smaller kernel_size, add padding, or pool less before this layer",
        )


def _dims(n: int) -> str:
    return ", ".join(("length",) if n == 1 else ("height", "width") if n == 2 else ("D", "H", "W"))


# torch's common refusals, restated as the rule with the numbers (its wording of them would
# otherwise be dropped as internal: "expected ... but got").
_RESTATED = [
    (
        r"Dimension out of range \(expected to be in range of \[(-?\d+), (-?\d+)\], "
        r"but got (-?\d+)\)",
        r"dimension \3 is outside [\1, \2] for this input",
    ),
    (
        r"mat1 and mat2 shapes cannot be multiplied \((\w+)x(\d+) and (\d+)x(\d+)\)",
        r"the input's last dimension is \2, the layer's weights expect \3",
    ),
    (
        r"Given groups=\d+, weight of size \[[\d, ]+\], expected input\[[\w, ]+\] to have "
        r"(\d+) channels, but got (\d+) channels instead",
        r"the layer expects \1 input channels, the input has \2",
    ),
    (
        r"pad should be at most half of effective kernel size, but got pad=(\d+), "
        r"kernel_size=(\d+) and dilation=(\d+)",
        r"padding \1 is more than half of the kernel \2 (dilation \3)",
    ),
    (
        r"Padding size should be less than the corresponding input dimension, but got: "
        r"padding \(([\d, ]+)\) at dimension (\d+) of input .*",
        r"padding (\1) must be smaller than the input's size in dimension \2",
    ),
]


def torch_reason(exc: BaseException) -> str | None:
    """torch's first line with the inference batch shown as B, when it states a rule in plain
    words (some restated by `_RESTATED`); None when it reads as Python's or torch's
    internals."""
    lines = str(exc).strip().splitlines()
    first = lines[0].strip() if lines else ""
    for pattern, rule in _RESTATED:
        first, done = re.subn(pattern, rule, first)
        if done:
            break
    first = re.sub(r"torch\.Size\((\[[^\]]*\])\)", r"\1", first)
    # An internal kernel's or argument's name before the rule: "permute(sparse_coo): ",
    # "adaptive_avg_pool2d: ", "Argument #4: ".
    first = re.sub(r"^(?:\w+\(\w+\)|[a-z][a-z0-9_]*|Argument #\d+):\s+", "", first)
    # A count over the whole batch would show the inference batch size: B times the rest.
    first = re.sub(r"\b(\d+)\b", lambda m: _per_sample(int(m.group(1))), first)
    return plain_reason(RuntimeError(first)) if first else None


def _per_sample(number: int) -> str:
    if number == BATCH:
        return "B"
    if number and number % BATCH == 0:
        return f"B x {number // BATCH}"
    return str(number)


def refusal_hint(exc: BaseException) -> str | None:
    """A hint carrying torch's reason in its own words, cleaned; None when it has none."""
    reason = torch_reason(exc)
    return None if reason is None else f"torch's reason: {reason}"
