"""The cost estimate traces on meta tensors without importing torch._dynamo (1.2 s), and
leaves nothing behind: torch.compile later in the same process works as usual."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tdsl.registry.meta_tensors import broadcast_shapes

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_cost_of_an_attention_model_does_not_import_dynamo_and_compile_still_works():
    out = _python(
        """
        import sys, torch
        from tdsl.check.cost import estimate
        from tdsl.check.summary import inferred
        spec, inference = inferred("specs/gpt_adder.yaml", ())
        cost = estimate(spec, inference)
        print("dynamo" if "torch._dynamo" in sys.modules else "no dynamo", cost.train_flops > 0)
        print("sympy" if "sympy" in sys.modules else "no sympy")
        # symbolic shapes need the real sympy and symbolic_shapes modules afterwards
        step = torch.compile(lambda x: torch.sin(x) * 2, backend="eager", dynamic=True)
        for n in (3, 5):
            print(bool(torch.allclose(step(torch.ones(n)), torch.sin(torch.ones(n)) * 2)))
        import torch._dynamo
        import torch.fx.experimental.symbolic_shapes as shapes
        print(type(torch._dynamo.disable).__name__, type(shapes.ShapeEnv).__name__)
        print(type(sys.modules["sympy"]).__name__, sys.modules["sympy"].Basic.__module__)
        """
    )
    assert out.split() == [
        "no", "dynamo", "True", "no", "sympy", "True", "True", "function", "type",
        "module", "sympy.core.basic",
    ]  # fmt: skip


def test_a_symbolic_value_or_another_name_hands_over_the_real_modules():
    out = _python(
        """
        import sys, torch
        from tdsl.check.deferred_symbolic_shapes import symbolic_shapes_deferred
        with symbolic_shapes_deferred():
            from torch.fx.experimental.symbolic_shapes import expect_true, sym_eq
            print(expect_true(True), sym_eq([1, 2], (1, 2)), type(sys.modules["sympy"]).__name__)
            import sympy
            print(sympy.Basic.__module__, sympy.Integer(3) + 1)
            from torch.fx.experimental.symbolic_shapes import ShapeEnv
            print(ShapeEnv.__name__, type(sys.modules["sympy"]).__name__)
        """
    )
    assert out.split() == [
        "True", "True", "_SympyStandIn", "tdsl.check.deferred_symbolic_shapes", "4",
        "ShapeEnv", "module",
    ]  # fmt: skip


def test_a_stand_in_used_for_anything_but_disable_hands_over_the_real_module():
    out = _python(
        """
        import sys
        from tdsl.check.deferred_dynamo import dynamo_import_deferred
        with dynamo_import_deferred():
            import torch._dynamo
            print(callable(torch._dynamo.reset))
        print(type(sys.modules["torch._dynamo"]).__name__)
        """
    )
    assert out.split() == ["True", "module"]


def test_broadcast_shapes_is_torchs_rule():
    draw = random.Random(0)
    for _ in range(2000):
        shapes = [
            tuple(draw.choice([0, 1, 2, 3]) for _ in range(draw.randint(0, 4)))
            for _ in range(draw.randint(1, 3))
        ]
        try:
            expected = tuple(torch.broadcast_shapes(*shapes))
        except RuntimeError:
            with pytest.raises(RuntimeError):
                broadcast_shapes(*shapes)
        else:
            assert broadcast_shapes(*shapes) == expected, shapes
