"""`TrainState`: everything a training step depends on, explicitly.

States are values: a step returns a new one and leaves its input untouched. A caller may
instead *donate* a state (hand its tensors over to be updated in place, for speed); a
donated state is marked spent and using it again raises.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from tdsl.errors import TdslError


class DonatedStateError(TdslError):
    """A state handed to a step with donate=True was used again."""


@attrs.define
class _Lease:
    spent: bool = False


@attrs.frozen
class TrainState:
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    # Parameter name -> that parameter's optimizer state (momentum buffers, Adam moments...).
    optimizer: dict[str, dict[str, Any]]
    # Each param group's hyperparameters (lr, betas, momentum...) as schedules leave them.
    hyper: tuple[dict[str, Any], ...]
    schedule: dict[str, Any] | None
    step: int
    epoch: int
    # RNG state(s) for dropout and friends: the CPU generator, then each CUDA device's.
    rng: tuple[torch.Tensor, ...]
    # fp16 loss-scaler state (scale, growth tracker); None unless precision is fp16.
    scaler: dict[str, Any] | None = None
    lease: _Lease = attrs.field(factory=_Lease, eq=False, repr=False)

    @property
    def lrs(self) -> tuple[float, ...]:
        return tuple(group["lr"] for group in self.hyper)

    def check_usable(self) -> None:
        if self.lease.spent:
            raise DonatedStateError(
                "this TrainState was donated to a step and its tensors now belong to the state "
                "that step returned; use the returned state"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain containers of tensors and numbers: loadable with torch.load(weights_only=True)."""
        self.check_usable()
        return {
            "params": self.params,
            "buffers": self.buffers,
            "optimizer": self.optimizer,
            "hyper": [dict(h) for h in self.hyper],
            "schedule": self.schedule,
            "step": self.step,
            "epoch": self.epoch,
            "rng": list(self.rng),
            "scaler": self.scaler,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], device: torch.device | str = "cpu") -> TrainState:
        move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return cls(
            params={k: move(v) for k, v in data["params"].items()},
            buffers={k: move(v) for k, v in data["buffers"].items()},
            optimizer={k: {n: move(v) for n, v in s.items()} for k, s in data["optimizer"].items()},
            hyper=tuple(dict(h) for h in data["hyper"]),
            schedule=data["schedule"],
            step=int(data["step"]),
            epoch=int(data["epoch"]),
            rng=tuple(data["rng"]),
            scaler=data.get("scaler"),
        )

    def model_state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers under their module names, for `load_state_dict`."""
        return {**self.params, **self.buffers}
