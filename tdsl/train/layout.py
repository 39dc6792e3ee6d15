"""`train.channels_last`: image batches and 2-d convolution weights in NHWC memory order,
which GPU convolution kernels (tensor cores, bf16) run fastest on. Values are unchanged."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def nhwc(tensor: torch.Tensor) -> torch.Tensor:
    """A 4-d tensor in channels-last memory order; anything else as it is."""
    if tensor.dim() == 4:
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def nhwc_all(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return tuple(nhwc(t) for t in tensors)
