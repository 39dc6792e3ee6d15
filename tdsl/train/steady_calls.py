"""Calling a `torch.compile`d step without re-evaluating dynamo's guards on every call.

Before each call of compiled code, dynamo checks its guards: every fact the traced code
relied on (the module's structure, each tensor's shape and strides, the optimizer's state
dicts, torch's global settings). For a small model that check is a fifth of the step
(about 80,000 instructions on a one-layer regression: callgrind). In a training loop almost
none of it can change between two steps: the step updates its tensors in place, so only
the batch and a few settings are new. `SteadyCalls` checks exactly those, cheaply, and
when none changed since a guarded call with the same batch layout the call is steady: it
runs the code dynamo compiled for that guarded call directly, as a plain function, without
entering dynamo (found by asking each of dynamo's compiled variants whether its guards
accept the guarded call's arguments, as dynamo itself does); if there is no such code it
runs under torch's `skip_guard_eval_unsafe` stance instead. Anything else goes through the
full guards.

What a steady call checks (anything else a guard could see changes only through one of
these): the `generation` of the module's slots (`Slots` counts every time it puts other
tensors into the module or optimizer), the `signature` the caller gives (its batch's
layout and the branch its code takes), torch's global state (grad mode, autocast, default
dtype, deterministic algorithms, threads: dynamo's own `GlobalStateGuard`), and that no
torch function mode, functorch transform or saved-tensor hook is active. After
`torch._dynamo.reset()` the compiled code is not run directly any more; should dynamo then
find no compiled code for a steady call under the stance, the call runs again with the
guards. The stance is process-wide while such a call runs: compiled code that another
thread calls at that moment skips its guards too.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch._C._dynamo.guards import GlobalStateGuard
from torch._dynamo.eval_frame import DynamoStance, _set_stance

try:  # internals of torch 2.13; without them steady calls use the stance alone
    from torch._C._dynamo.eval_frame import _debug_get_cache_entry_list
    from torch._dynamo.convert_frame import output_codes
except ImportError:  # pragma: no cover - another torch
    _debug_get_cache_entry_list = output_codes = None

_NO_GUARDS = "skip_guard_eval_unsafe"
_UNKNOWN = object()
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


def _compiled_code(traced: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """The code dynamo runs for `traced(*args)`: its compiled variant whose guards accept
    these arguments, as a function of the same arguments, with the id of that code (None if
    there is none)."""
    if _debug_get_cache_entry_list is None or output_codes is None:
        return None
    fn = getattr(traced, "__func__", traced)
    code = fn.__code__
    bound = (traced.__self__,) if fn is not traced else ()
    arguments = (*bound, *args)
    if code.co_argcount != len(arguments) or code.co_kwonlyargcount or code.co_flags & 0x0C:
        return None  # keyword, *args or **kwargs parameters: not worth binding here
    frame_locals = dict(zip(code.co_varnames, arguments, strict=False))
    for entry in _debug_get_cache_entry_list(code):
        if entry.guard_manager.check(frame_locals):
            direct = types.FunctionType(
                entry.code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
            )
            function = types.MethodType(direct, traced.__self__) if bound else direct
            return function, id(entry.code)
    return None


class SteadyCalls:
    """`compiled(*args)`, with dynamo's guards evaluated only when something they check may
    have changed since the last guarded call (see the module's docstring)."""

    def __init__(
        self,
        compiled: Callable[..., Any],
        generation: Callable[[], int],
        traced: Callable[..., Any] | None = None,
    ):
        """`traced` is what `compiled` was made from (`torch.compile(traced)`): given, a
        steady call runs the code dynamo compiled from it directly, without entering dynamo
        at all."""
        self.compiled, self.generation, self.traced = compiled, generation, traced
        # The signatures a guarded call accepted, each with the code dynamo compiled for it
        # and that code's id among the codes dynamo made (None where it was not found).
        self.known: dict[Hashable, tuple[Callable[..., Any], int] | None] = {}
        self.at: int | None = None  # the slots' generation those calls saw
        self.ambient: GlobalStateGuard | None = None
        self.steady_calls = 0  # how many calls skipped the guards (for tests)

    def __call__(self, signature: Hashable, *args: Any) -> Any:
        generation = self.generation()
        if generation == self.at and self.ambient is not None:
            direct = self.known.get(signature, _UNKNOWN)
            if direct is not _UNKNOWN and self.ambient.check() and _quiet():
                if direct is not None and direct[1] in output_codes.seen_ids:  # no reset
                    self.steady_calls += 1
                    return direct[0](*args)
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
            self.known, self.at = {}, generation
        if _quiet():
            self.ambient = GlobalStateGuard()
            found = _compiled_code(self.traced, args) if self.traced is not None else None
            self.known[signature] = found
        return result
