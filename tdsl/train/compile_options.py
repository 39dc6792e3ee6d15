"""How tdsl's compiled steps are handed to torch.compile: inductor's options (the mode's,
no size asserts, and a pass that keeps `alpha` in additions) and a code object per compiled
method, so each program gets dynamo's full budget of compiled variants."""

from __future__ import annotations

import functools
import types
from typing import Any

import torch


@functools.cache
def _alpha_kept() -> Any:
    """An inductor pass that rewrites each `aten.add(x, y, alpha=a)` as `add(x, mul(y, a))`.

    Inductor's post-grad pattern that fuses `add(x, mm(a, b))` into `addmm(x, a, b)` drops
    `alpha` (torch 2.13), and a linear layer's raw weight gradient is such an `mm`: SGD's
    `param.add_(grad, alpha=-lr)` compiled to `param + grad` (uphill, 1/lr times too far),
    and weight decay, dampening and Nesterov lost their factors too. Inductor computes an
    add's alpha as that same multiply, so the rewrite leaves every other kernel as it was.
    Built on first use: importing inductor takes a second."""
    from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

    class AlphaKept(CustomGraphPass):
        def __call__(self, graph: torch.fx.Graph) -> None:
            for node in list(graph.nodes):
                alpha = node.kwargs.get("alpha", 1)
                if node.target is not torch.ops.aten.add.Tensor or alpha == 1:
                    continue
                x, y = node.args
                scaled = _scaled(graph, node, y, alpha)
                if scaled is not None:
                    node.kwargs = {k: v for k, v in node.kwargs.items() if k != "alpha"}
                    node.args = (x, scaled)

        def uuid(self) -> Any:  # what inductor's compile cache knows the pass by
            return get_hash_for_files((__file__,))

    return AlphaKept()


def _scaled(graph: torch.fx.Graph, before: torch.fx.Node, value: Any, alpha: Any) -> Any:
    """`value * alpha`: a number for a number, a node inserted before `before` for a tensor
    node, None (left alone) for anything else."""
    if isinstance(value, int | float):
        return value * alpha
    fake = value.meta.get("val") if isinstance(value, torch.fx.Node) else None
    if not isinstance(fake, torch.Tensor):
        return None
    with graph.inserting_before(before):
        scaled = graph.call_function(torch.ops.aten.mul.Tensor, (value, alpha))
    # Later passes read each node's fake value: compute it as the graph's others were.
    fake_alpha = alpha.meta["val"] if isinstance(alpha, torch.fx.Node) else alpha
    with fake.fake_mode:
        scaled.meta["val"] = torch.ops.aten.mul.Tensor(fake, fake_alpha)
    return scaled


def own_code(method: Any) -> Any:
    """`method` (bound) with a code object of its own. Dynamo keeps compiled variants per
    code object and after 8 of them runs the rest eagerly, silently; every compiled step
    is a method of this class, so without this the ninth program a process compiles (a
    sweep, a benchmark, tests) would train eagerly."""
    fn = method.__func__
    code = fn.__code__.replace()
    own = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    return types.MethodType(own, method.__self__)


def inductor_options(mode: str) -> dict[str, Any]:
    """Inductor options: the mode's (torch.compile takes a mode or options, not both), the
    pass that keeps `alpha`, and no size asserts: the generated code would check each
    input's sizes and strides again after dynamo's guards (or `SteadyCalls`) did, a
    sixth of a small model's step."""
    options: dict[str, Any] = {"post_grad_custom_pre_pass": _alpha_kept(), "size_asserts": False}
    if mode != "default":
        from torch._inductor import list_mode_options

        options.update(list_mode_options(mode))
    return options
