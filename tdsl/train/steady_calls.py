"""Calling a `torch.compile`d step without re-evaluating dynamo's guards on every call.

Before each call of compiled code, dynamo checks its guards: every fact the traced code
relied on (the module's structure, each tensor's shape and strides, the optimizer's state
dicts, torch's global settings). For a small model that check is a fifth of the step
(about 80,000 instructions on a one-layer regression: callgrind). In a training loop almost
none of it can change between two steps: the step updates its tensors in place, so only
the batch and a few settings are new. `SteadyCalls` checks exactly those, cheaply, and
when none changed since a guarded call with the same batch layout it runs the call under
torch's `skip_guard_eval_unsafe` stance; anything else goes through the full guards.

What a steady call checks (anything else a guard could see changes only through one of
these): the `generation` of the module's slots (`Slots` counts every time it puts other
tensors into the module or optimizer), the `signature` the caller gives (its batch's
layout and the branch its code takes), torch's global state (grad mode, autocast, default
dtype, deterministic algorithms, threads: dynamo's own `GlobalStateGuard`), and that no
torch function mode, functorch transform or saved-tensor hook is active. Should dynamo
still find no compiled code for a steady call (its cache was reset), the call runs again
with the guards. The stance is process-wide while a steady call runs: compiled code that
another thread calls at that moment skips its guards too.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch._C._dynamo.guards import GlobalStateGuard
from torch._dynamo.eval_frame import DynamoStance, _set_stance

_NO_GUARDS = "skip_guard_eval_unsafe"
# What `torch.compiler.set_stance("default", skip_guard_eval_unsafe=True)` sets, set and
# reset directly: the public context manager costs three stance changes and an object.
_STEADY = DynamoStance("default", skip_guard_eval_unsafe=True)


def layout(tensors: Sequence[torch.Tensor]) -> tuple[Hashable, ...]:
    """What dynamo's tensor guards read of each tensor: its kind, shape, strides, dtype,
    device, whether it requires grad and whether it is an inference tensor."""
    return tuple(
        (
            type(t),
            t.shape,
            t.stride(),
            t.dtype,
            t.device,
            t.requires_grad,
            t.is_inference(),
        )
        for t in tensors
    )


def _quiet() -> bool:
    """No torch function mode, functorch transform or saved-tensor hook is active: the
    ambient state dynamo's root guards check besides `GlobalStateGuard`."""
    return (
        not torch.compiler.is_compiling()  # the stance cannot change inside a compiled region
        and torch._C._len_torch_function_stack() == 0
        and torch._C._functorch.peek_interpreter_stack() is None
        and torch._C._autograd._top_saved_tensors_default_hooks(True) is None
    )


class SteadyCalls:
    """`compiled(*args)`, with dynamo's guards evaluated only when something they check may
    have changed since the last guarded call (see the module's docstring)."""

    def __init__(self, compiled: Callable[..., Any], generation: Callable[[], int]):
        self.compiled, self.generation = compiled, generation
        self.known: set[Hashable] = set()  # signatures a guarded call accepted
        self.at: int | None = None  # the slots' generation those calls saw
        self.ambient: GlobalStateGuard | None = None
        self.steady_calls = 0  # how many calls skipped the guards (for tests)

    def __call__(self, signature: Hashable, *args: Any) -> Any:
        generation = self.generation()
        if (
            generation == self.at
            and signature in self.known
            and self.ambient is not None
            and self.ambient.check()
            and _quiet()
        ):
            prior = _set_stance(_STEADY)
            try:
                result = self.compiled(*args)
            except RuntimeError as exc:  # no compiled code fits after all: nothing ran
                if _NO_GUARDS not in str(exc):
                    raise
            else:
                self.steady_calls += 1
                return result
            finally:
                _set_stance(prior)
        result = self.compiled(*args)
        if generation != self.at or not (self.ambient is not None and self.ambient.check()):
            self.known, self.at = set(), generation
        if _quiet():
            self.known.add(signature)
            self.ambient = GlobalStateGuard()
        return result
