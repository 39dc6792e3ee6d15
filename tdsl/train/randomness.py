"""Whether a training step draws random numbers (then its state carries the RNG)."""

from __future__ import annotations

import torch

_RANDOM_LAYERS = (
    torch.nn.Dropout,
    torch.nn.Dropout1d,
    torch.nn.Dropout2d,
    torch.nn.Dropout3d,
    torch.nn.AlphaDropout,
    torch.nn.FeatureAlphaDropout,
    torch.nn.RReLU,
)


def uses_randomness(module: torch.nn.Module) -> bool:
    """Whether a training forward pass may draw random numbers."""
    for layer in module.modules():
        if not type(layer).__module__.startswith(("torch.nn.", "tdsl.")):
            return True  # user code: assume it does
        if isinstance(layer, _RANDOM_LAYERS):
            return True
        dropout = getattr(layer, "dropout", 0.0)  # RNNs and attention drop out internally
        if isinstance(dropout, float | int) and dropout > 0:
            return True
    return False


def seed_for(device: torch.device, seed: int) -> None:
    """Seed what building layers on `device` draws from. On the CPU only the CPU generator:
    `torch.manual_seed` would also queue a seed for every accelerator, which recording the
    caller's stack makes cost milliseconds (a tenth of a small spec's `compile`)."""
    if device.type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)
