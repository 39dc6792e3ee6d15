"""Optimizer arguments checked without building an optimizer (tdsl/optim_args.py), and
schedules tried on the stand-in optimizer: whatever the rules accept, torch must accept."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tdsl
from tdsl.errors import Diagnostics
from tdsl.registry import optimizer_args as optim_args
from tdsl.registry.optimizers import lookup_optimizer, lookup_schedule

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZERS = ["sgd", "adam", "adamw", "adagrad", "rmsprop"]
# Values YAML can give, valid and not.
VALUES = st.sampled_from(
    [-1, -0.5, 0, 1e-3, 0.5, 0.9, 1, 2, True, False, "x", None, float("nan"), float("inf")]
    + [[0.9, 0.999], [0.9], [2, 3], [0.5, -1], [0, 0.99], [], ["a", "b"]]
)


def _arguments(kind: str, group: bool = False) -> st.SearchStrategy[dict]:
    """Arguments for the optimizer (`lr` is a field of its own there) or a param group."""
    cls = lookup_optimizer(kind).cls
    names = set(optim_args.signature_defaults(cls)) & optim_args._CHECKED
    names = sorted(names if group else names - {"lr"})
    return st.dictionaries(st.sampled_from(names), VALUES, max_size=4)


def _torch_accepts(kind: str, lr: float, args: dict, groups: list[dict]) -> bool:
    cls = lookup_optimizer(kind).cls
    # As tdsl passes them to torch (see compile.make_optimizer).
    params = [
        {"params": [torch.nn.Parameter(torch.zeros(2))], **optim_args.as_torch(g)} for g in groups
    ]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            args = optim_args.as_torch(args)
            optimizer = cls(params or [torch.nn.Parameter(torch.zeros(2))], lr=lr, **args)
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = torch.ones_like(param)
            optimizer.step()
    except Exception:
        return False
    return True


def _rules_accept(kind: str, lr: float, args: dict, groups: list[dict]) -> tuple[bool, list]:
    diags = Diagnostics()
    cls = lookup_optimizer(kind).cls
    ok = optim_args.check_arguments(cls, f"optimizer {kind!r}", lr, args, groups, diags)
    assert ok == (not diags.items)
    return ok, diags.items


@pytest.mark.parametrize("kind", OPTIMIZERS)
@settings(deadline=None, max_examples=150)
@given(data=st.data())
def test_what_the_rules_accept_torch_accepts(kind, data):
    args = data.draw(_arguments(kind))
    groups = data.draw(st.lists(_arguments(kind, group=True), max_size=2))
    assert optim_args.checkable(lookup_optimizer(kind).cls, args, groups)
    accepted, problems = _rules_accept(kind, 0.01, args, groups)
    if accepted:
        assert _torch_accepts(kind, 0.01, args, groups), (args, groups)


@pytest.mark.parametrize(
    "kind, args",
    [
        ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}),
        ("sgd", {"momentum": 0.5, "dampening": 0.1, "maximize": True}),
        ("adam", {"betas": [0.5, 0.9], "eps": 1e-6, "amsgrad": True}),
        ("adamw", {"weight_decay": 0.1, "betas": (0, 0.99)}),
        ("adagrad", {"lr_decay": 0.01, "initial_accumulator_value": 0.1}),
        ("rmsprop", {"alpha": 0.9, "momentum": 0.5, "centered": True}),
    ],
)
def test_the_rules_accept_what_torch_accepts(kind, args):
    assert _torch_accepts(kind, 0.01, args, [])
    assert _rules_accept(kind, 0.01, args, [])[0]


@pytest.mark.parametrize(
    "kind, args, groups, path, message",
    [
        ("adam", {"betas": [2, 3]}, [], ("optimizer", "betas"), "betas must be two numbers"),
        ("adam", {"eps": -1}, [], ("optimizer", "eps"), "eps must be a number >= 0 (got -1)"),
        ("sgd", {"nesterov": "yes"}, [], ("optimizer", "nesterov"), "must be true or false"),
        ("sgd", {"dampening": "x"}, [], ("optimizer", "dampening"), "must be a number"),
        ("adam", {}, [{}, {"lr": -1}], ("optimizer", "groups", 1, "lr"), "lr must be a number"),
        (
            "sgd",
            {"nesterov": True},
            [{"momentum": 0.9}, {}],
            ("optimizer", "nesterov"),
            "nesterov needs a momentum above 0 and dampening 0 (got momentum 0, dampening 0)",
        ),
    ],
)
def test_refusals_are_located_at_the_argument(kind, args, groups, path, message):
    accepted, problems = _rules_accept(kind, 0.01, args, groups)
    (problem,) = problems
    assert problem.path == path and message in problem.message, problem


def test_options_the_rules_do_not_cover_are_tried_on_torch():
    assert not optim_args.checkable(torch.optim.Adam, {"fused": True}, [])
    assert not optim_args.checkable(torch.optim.NAdam, {}, [])
    ring = tdsl.load(ROOT / "specs" / "ring_dnn.yaml")
    spec = attrs.evolve(ring, optimizer=tdsl.Optimizer("nadam", momentum_decay=-1))
    report = tdsl.validate(spec)
    (error,) = report.errors
    assert "refuses its arguments {momentum_decay: -1}" in error.message
    assert error.hint == "torch's reason: Invalid momentum_decay value: -1"


SCHEDULES = [
    ("cosine", {"T_max": 5}),
    ("step", {"step_size": 2, "gamma": 0.5}),
    ("one_cycle", {"max_lr": 0.1, "total_steps": 10}),
    ("cosine_warmup", {"T_max": 10, "warmup": 3}),
    ("cycliclr", {"base_lr": 0.001, "max_lr": 0.1, "step_size_up": 2}),
    ("linear_warmup", {"start_factor": 0.1, "total_iters": 4}),
]


@pytest.mark.parametrize("kind, args", SCHEDULES)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_schedules_on_the_stand_in_follow_the_real_optimizer(kind, args, optimizer):
    cls = lookup_optimizer(optimizer).cls
    opt_args = {"momentum": 0.9} if optimizer == "sgd" else {}
    groups = [{"lr": 0.05}, {}]
    real = cls(
        [{"params": [torch.nn.Parameter(torch.zeros(1))], **g} for g in groups], lr=0.01, **opt_args
    )
    stand_in = optim_args.StandInOptimizer(cls, 0.01, opt_args, groups)
    schedule = lookup_schedule(kind).cls
    rates = []
    for target in (real, stand_in):
        scheduler = schedule(target, **args)
        seen = []
        for _ in range(6):
            target.step()
            scheduler.step()
            seen.append([(g["lr"], g.get("momentum"), g.get("betas")) for g in target.param_groups])
        rates.append(seen)
    assert rates[0] == rates[1]


def test_validating_the_specs_imports_no_compiler_stack():
    """torch imports torch._dynamo (a second or more) on any meta op or optimizer build;
    validating the shipped specs needs neither."""
    code = (
        "import sys, glob, tdsl\n"
        "for path in sorted(glob.glob('specs/*.yaml')):\n"
        "    assert tdsl.validate(path).ok, path\n"
        "    assert 'torch._dynamo' not in sys.modules, path\n"
        "print('clean')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "clean" in done.stdout, done.stderr[-2000:]
