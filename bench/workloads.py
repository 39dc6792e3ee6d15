"""tdsl against hand-written PyTorch loops on the seeds' workloads, measured in one run.

For each workload: (a) `tdsl.fit` on the spec (validation each epoch, metrics, progress
lines, history — the defaults), (b) a tuned hand-written loop that reports what tdsl
reports each epoch — training and validation loss and the spec's metric — the cheap way
(one permutation per epoch, batched index_select, losses summed and outputs kept on the
device, one host sync per epoch and pass), (b') the same loop computing losses only, as
issue 23 measured it, (c) a tutorial-style loop (DataLoader over a TensorDataset,
per-step `.item()` of the loss and metric), and (d) tdsl with `train.compile: true`
(torch.compile of the whole step; its compile time is reported on its own). Variants run
interleaved in a rotating order (a garbage collection before each), several repetitions;
the table reports medians of per-step time and of per-repetition ratios to (b), and tdsl
against (b') in the last column.

(b) walks tdsl's own batch order and starts from tdsl's initial weights, so its last
epoch's losses and metrics must equal tdsl's (up to float summation order): the benchmark
stops if they do not, since then the two would not be doing the same work. A compiled
run that does not reach the eager tdsl run's final validation loss and metric stops it
too: its speed would mean nothing.

Two ways of measuring, both reported (`--eval`, default both):
- `train`: validation in batches of the training batch size everywhere, and setup
  included: tdsl's `compile` and `init` against the hand loops building their
  `nn.Sequential` (the same initial weights: checked);
- `large`: tdsl validates in its default large evaluation batches, the hand loops in one
  batch, and setup is left out.
Each row also gives tdsl with the other setup choice, so the setup's share is visible.

Run: python bench/workloads.py [--repeats 5] [--only rings ...] [--out bench/results.md]
"""

from __future__ import annotations

import argparse
import gc
import io
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tdsl
from tdsl.registry.metrics import lookup_metric
from tdsl.train.callbacks import ProgressPrinter

ROOT = Path(__file__).resolve().parent.parent

# Seconds as measured: wall-clock by default; `--clock cpu` (process CPU time) on a shared
# machine, where with one thread it is far less disturbed by other jobs than wall time.
clock = time.perf_counter


def _spec(
    name: str,
    data,
    inputs: list[int],
    layers: list,
    loss: str,
    lr: float,
    metric: str,
    epochs: int,
    batch_size: int,
) -> tdsl.Spec:
    # Defined here rather than read from specs/, so the measured workloads stay fixed while
    # the seed specs evolve.
    return tdsl.Spec(
        name=name,
        data=data,
        model=tdsl.Model(inputs=[tdsl.Input(shape=inputs)], layers=layers),
        loss=tdsl.Loss(loss),
        optimizer=tdsl.Optimizer("adam", lr=lr),
        metrics=[tdsl.Metric(metric)],
        train=tdsl.Train(epochs=epochs, batch_size=batch_size),
    )


def workloads() -> dict[str, tdsl.Spec]:
    split = tdsl.Split(train=0.7, val=0.3)
    rings = _spec(
        "rings",
        tdsl.Rings(n_positive=2000, n_negative=2000, split=split),
        [2],
        [
            tdsl.Layer("linear", out_features=4),
            tdsl.Layer("relu"),
            tdsl.Layer("linear", out_features=8),
            tdsl.Layer("relu"),
            tdsl.Layer("linear", out_features=1),
        ],
        "bce_with_logits",
        0.01,
        "accuracy",
        20,
        100,
    )
    linreg = _spec(
        "linreg",
        tdsl.LinearRegression(n=400, weights=[2.0, -3.0], bias=10.0, noise=2.0, split=split),
        [2],
        [tdsl.Layer("linear", out_features=1)],
        "mse",
        0.01,
        "mae",
        20,
        10,
    )
    digits = _spec(
        "digits_cnn",
        tdsl.RandomData(n=1797, target=tdsl.Target(kind="class", num_classes=10)),
        [1, 8, 8],
        [
            tdsl.Layer("conv2d", out_channels=16, kernel_size=3, padding=1),
            tdsl.Layer("relu"),
            tdsl.Layer("maxpool2d", kernel_size=2),
            tdsl.Layer("conv2d", out_channels=32, kernel_size=3, padding=1),
            tdsl.Layer("relu"),
            tdsl.Layer("flatten"),
            tdsl.Layer("linear", out_features=10),
        ],
        "cross_entropy",
        1e-3,
        "accuracy",
        10,
        64,
    )
    wide = _spec(
        "mlp_wide",
        tdsl.RandomData(n=62_500, target=tdsl.Target(kind="class", num_classes=10)),
        [64],
        [
            tdsl.Layer("linear", out_features=512),
            tdsl.Layer("relu"),
            tdsl.Layer("linear", out_features=512),
            tdsl.Layer("relu"),
            tdsl.Layer("linear", out_features=10),
        ],
        "cross_entropy",
        1e-3,
        "accuracy",
        3,
        256,
    )
    return {"rings": rings, "linreg": linreg, "digits_cnn": digits, "mlp_wide": wide}


def hand_module(spec: tdsl.Spec) -> nn.Module:
    """The spec's layers as a plain nn.Sequential built the way a user writes one: seeded
    with the spec's seed, layers constructed in order (so tdsl's initial weights)."""
    torch.manual_seed(spec.seed)
    shape = list(spec.model.inputs[0].shape)
    layers = []
    for layer in spec.model.layers:
        args = dict(layer.args)
        if layer.op == "linear":
            layers.append(nn.Linear(shape[-1], args["out_features"]))
            shape[-1] = args["out_features"]
        elif layer.op == "conv2d":
            conv = nn.Conv2d(shape[0], **args)
            layers.append(conv)
            size = [
                (n + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
                for n in shape[1:]
            ]
            shape = [conv.out_channels, *size]
        elif layer.op == "maxpool2d":
            layers.append(nn.MaxPool2d(**args))
            shape = [shape[0], *(n // args["kernel_size"] for n in shape[1:])]
        elif layer.op == "relu":
            layers.append(nn.ReLU())
        elif layer.op == "flatten":
            layers.append(nn.Flatten())
            shape = [math.prod(shape)]
        else:
            raise ValueError(f"no hand-written form of {layer.op}")
    return nn.Sequential(*layers)


def check_same_start(spec: tdsl.Spec) -> None:
    """The hand loops start from tdsl's initial weights (outside the timed runs)."""
    program = tdsl.compile(spec)
    ours = list(program.init().params.values())
    theirs = list(hand_module(spec).parameters())
    if len(ours) != len(theirs) or any(
        not torch.equal(a, b) for a, b in zip(ours, theirs, strict=True)
    ):
        raise SystemExit(f"{spec.name}: the hand-written module does not start as tdsl's")


# Each tdsl variant's last epoch's logs (its final validation loss and metric), by variant.
FINAL: dict[str, dict[str, float]] = {}


@attrs.frozen
class Timed:
    steps: int
    setup: float  # seconds spent building the model and optimizer


def _fit(variant: str, program: tdsl.Program, spec: tdsl.Spec, data, setup: float) -> Timed:
    result = tdsl.fit(program, program.init(), data, callbacks=[ProgressPrinter(io.StringIO())])
    assert len(result.history) == spec.train.epochs
    FINAL[variant] = result.history[-1]
    return Timed(spec.train.epochs * data.train.num_batches(spec.train.batch_size), setup)


def tdsl_run(spec: tdsl.Spec, data) -> Timed:
    started = clock()
    program = tdsl.compile(spec)
    program.init()  # setup includes one init, as the hand loops' construction
    return _fit("tdsl", program, spec, data, clock() - started)


_COMPILED: dict[tuple[str, int | None], tdsl.Program] = {}


def tdsl_compiled_run(spec: tdsl.Spec, data) -> Timed:
    """`train.compile: true`. One program per workload, reused, so torch.compile's work is
    done in the warm-up run (reported separately) and not in every measured run."""
    key = (spec.name, spec.train.eval_batch_size)
    if key not in _COMPILED:
        compiled = attrs.evolve(spec, train=attrs.evolve(spec.train, compile=True))
        _COMPILED[key] = tdsl.compile(compiled)
    return _fit("tdsl_compiled", _COMPILED[key], spec, data, 0.0)


def check_compiled(spec: tdsl.Spec) -> None:
    """Stop unless the last compiled run reached the last eager run's final validation loss
    and metric, within 1% + 0.005: both start from the same state and see the same batches,
    so only float rounding may tell them apart."""
    eager, compiled = FINAL["tdsl"], FINAL["tdsl_compiled"]
    metric = spec.metrics[0].kind
    for key, higher in (
        ("val_loss", False),
        (f"val_{metric}", lookup_metric(metric).higher_is_better),
    ):
        slack = 0.01 * abs(eager[key]) + 0.005
        short = eager[key] - compiled[key] if higher else compiled[key] - eager[key]
        if short > slack:
            raise SystemExit(
                f"{spec.name}: the compiled run did not reach the eager run's {key}: "
                f"{compiled[key]:.4g} against {eager[key]:.4g} (allowed {slack:.3g} short)"
            )


def _loss_fn(spec: tdsl.Spec) -> nn.Module:
    return {
        "mse": nn.MSELoss(),
        "bce_with_logits": nn.BCEWithLogitsLoss(),
        "cross_entropy": nn.CrossEntropyLoss(),
    }[spec.loss.kind]


def _target(spec: tdsl.Spec, y: torch.Tensor) -> torch.Tensor:
    return y.reshape(-1).long() if spec.loss.kind == "cross_entropy" else y


def hand_metric(spec: tdsl.Spec) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The spec's metric over a whole epoch's outputs, as a hand-written loop computes it
    (on the device; read with the epoch's one host sync)."""
    kind = spec.metrics[0].kind
    if kind == "mae":
        return lambda out, y: (out.reshape(y.shape) - y).abs().mean()
    if kind == "accuracy" and spec.loss.kind == "bce_with_logits":  # logit > 0: p > 0.5
        return lambda out, y: ((out > 0).reshape(y.shape) == y).float().mean()
    if kind == "accuracy":
        return lambda out, y: (out.argmax(dim=1) == y).float().mean()
    raise ValueError(f"no hand-written form of the metric {kind}")


def tdsl_order(spec: tdsl.Spec, rows: int, epoch: int) -> torch.Tensor:
    """The permutation tdsl's loop draws for `epoch` (one randperm from a seeded generator),
    so a hand loop given it sees the same batches and can be checked against tdsl's run."""
    generator = torch.Generator().manual_seed(spec.seed * 1_000_003 + epoch)
    return torch.randperm(rows, generator=generator)


def tuned_epoch(
    net,
    opt,
    loss_fn,
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int,
    order: torch.Tensor | None = None,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
):
    """One epoch as a good engineer writes it: one randperm (or the given order), batched
    index_select, the loss summed on the device and read once at the end. With a `metric`,
    also the epoch's metric over the outputs kept on the device: (loss, metric)."""
    total = torch.zeros(())
    order = torch.randperm(len(y)) if order is None else order
    outputs = []
    for start in range(0, len(y), batch):
        index = order[start : start + batch]
        output = net(x.index_select(0, index))
        loss = loss_fn(output, y.index_select(0, index))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach() * len(index)
        if metric is not None:
            outputs.append(output.detach())
    if metric is None:
        return float(total) / len(y)
    value = metric(torch.cat(outputs), y.index_select(0, order))
    return float(total) / len(y), float(value)


def tuned_validation(
    net,
    loss_fn,
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int | None,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
):
    """The validation loss (and with a `metric`, (loss, metric)): in one batch (`batch`
    None), or summed over batches."""
    with torch.no_grad():
        if batch is None:
            output = net(x)
            loss = float(loss_fn(output, y))
            return loss if metric is None else (loss, float(metric(output, y)))
        total = torch.zeros(())
        outputs = []
        for start in range(0, len(y), batch):
            part = y[start : start + batch]
            output = net(x[start : start + batch])
            total += loss_fn(output, part) * len(part)
            if metric is not None:
                outputs.append(output)
        if metric is None:
            return float(total) / len(y)
        return float(total) / len(y), float(metric(torch.cat(outputs), y))


# The tuned loop's last epoch: (loss, metric, val_loss, val_metric).
TUNED_FINAL: dict[str, tuple[float, ...]] = {}


def tuned_run(spec: tdsl.Spec, data) -> Timed:
    """The tuned loop reporting what tdsl reports each epoch (training and validation loss
    and metric), over tdsl's batch order, so its results can be checked against tdsl's."""
    started = clock()
    net = hand_module(spec)
    opt = torch.optim.Adam(net.parameters(), lr=spec.optimizer.lr)
    setup = clock() - started
    loss_fn, metric = _loss_fn(spec), hand_metric(spec)
    x, y = data.train.features[0], _target(spec, data.train.target)
    vx, vy = data.val.features[0], _target(spec, data.val.target)
    history = []
    for epoch in range(spec.train.epochs):
        net.train()
        order = tdsl_order(spec, len(y), epoch)
        train = tuned_epoch(net, opt, loss_fn, x, y, spec.train.batch_size, order, metric)
        net.eval()
        val = tuned_validation(net, loss_fn, vx, vy, spec.train.eval_batch_size, metric)
        history.append((*train, *val))
    TUNED_FINAL[spec.name] = history[-1]
    return Timed(spec.train.epochs * data.train.num_batches(spec.train.batch_size), setup)


def tuned_loss_run(spec: tdsl.Spec, data) -> Timed:
    """The tuned loop as the issue measured it: losses only, no metric."""
    started = clock()
    net = hand_module(spec)
    opt = torch.optim.Adam(net.parameters(), lr=spec.optimizer.lr)
    setup = clock() - started
    loss_fn = _loss_fn(spec)
    x, y = data.train.features[0], _target(spec, data.train.target)
    vx, vy = data.val.features[0], _target(spec, data.val.target)
    for _epoch in range(spec.train.epochs):
        net.train()
        tuned_epoch(net, opt, loss_fn, x, y, spec.train.batch_size)
        net.eval()
        tuned_validation(net, loss_fn, vx, vy, spec.train.eval_batch_size)
    return Timed(spec.train.epochs * data.train.num_batches(spec.train.batch_size), setup)


def check_tuned(spec: tdsl.Spec) -> None:
    """Stop unless the tuned loop ended where tdsl's run did: both start from the same
    weights and see the same batches, so their last epoch's losses and metrics agree up to
    the order of float sums (tdsl accumulates in float64)."""
    ours, theirs = FINAL["tdsl"], TUNED_FINAL[spec.name]
    metric = spec.metrics[0].kind
    keys = ("loss", metric, "val_loss", f"val_{metric}")
    for key, value in zip(keys, theirs, strict=True):
        if abs(ours[key] - value) > 1e-5 * abs(ours[key]) + 1e-6:
            raise SystemExit(
                f"{spec.name}: the tuned loop's last {key} is {value:.8g}, tdsl's "
                f"{ours[key]:.8g}: they do not do the same work"
            )


def tutorial_run(spec: tdsl.Spec, data) -> Timed:
    started = clock()
    net = hand_module(spec)
    opt = torch.optim.Adam(net.parameters(), lr=spec.optimizer.lr)
    setup = clock() - started
    loss_fn, metric = _loss_fn(spec), hand_metric(spec)
    train = DataLoader(
        TensorDataset(data.train.features[0], _target(spec, data.train.target)),
        batch_size=spec.train.batch_size,
        shuffle=True,
    )
    val = DataLoader(
        TensorDataset(data.val.features[0], _target(spec, data.val.target)),
        batch_size=spec.train.eval_batch_size or len(data.val),
    )
    steps = 0
    for _epoch in range(spec.train.epochs):
        net.train()
        losses, scores = [], []
        for x, y in train:  # the tutorials' way: per-step .item() of the loss and metric
            output = net(x)
            loss = loss_fn(output, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            scores.append(metric(output.detach(), y).item())
            steps += 1
        net.eval()
        val_scores = []
        with torch.no_grad():
            for x, y in val:
                output = net(x)
                val_scores.append((loss_fn(output, y).item(), metric(output, y).item()))
        _ = (sum(losses) / len(losses), sum(scores) / len(scores), val_scores)
    return Timed(steps, setup)


VARIANTS: dict[str, Callable] = {
    "tdsl": tdsl_run,
    "tdsl_compiled": tdsl_compiled_run,
    "tuned": tuned_run,
    "tuned_loss": tuned_loss_run,
    "tutorial": tutorial_run,
}


EVALS = ("train", "large")


def for_eval(spec: tdsl.Spec, how: str) -> tdsl.Spec:
    """`train`: validation batches of the training batch size (tdsl's and the hand loops');
    `large`: tdsl's default evaluation batches, the hand loops' one batch."""
    size = spec.train.batch_size if how == "train" else None
    return attrs.evolve(spec, train=attrs.evolve(spec.train, eval_batch_size=size))


def measure(
    repeats: int, only: list[str] | None = None, evals: tuple[str, ...] = EVALS
) -> dict[str, dict[str, float]]:
    """Per (workload, evaluation setting): each variant's median seconds per step with
    setup included (`<variant>`) and left out (`<variant>_nosetup`), and `compile_s`: how
    much longer the compiled variant's first (warm-up) run took than its median run."""
    results: dict[str, dict[str, float]] = {}
    for name, base in workloads().items():
        if only and name not in only:
            continue
        check_same_start(base)
        data = tdsl.load_data(base)
        for how in evals:
            spec = for_eval(base, how)
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            bare: dict[str, list[float]] = {v: [] for v in VARIANTS}
            warmup: dict[str, float] = {}
            for variant, fn in VARIANTS.items():
                started = clock()
                fn(spec, data)
                warmup[variant] = clock() - started
            check_tuned(spec)
            compiled = "tdsl_compiled" in VARIANTS
            if compiled:
                check_compiled(spec)
            names = list(VARIANTS)
            for repetition in range(repeats):
                # Interleaved, in a rotating order, each after a garbage collection: no
                # variant always follows the same one or pays for another's garbage.
                turn = repetition % len(names)
                for variant in names[turn:] + names[:turn]:
                    fn = VARIANTS[variant]
                    gc.collect()
                    started = clock()
                    timed = fn(spec, data)
                    spent = clock() - started
                    times[variant].append(spent / timed.steps)
                    bare[variant].append((spent - timed.setup) / timed.steps)
                check_tuned(spec)
                if compiled:
                    check_compiled(spec)
            row = {v: statistics.median(t) for v, t in times.items()}
            row |= {f"{v}_nosetup": statistics.median(t) for v, t in bare.items()}
            # Ratios per repetition, then their median and range: neighbours in the
            # rotation share the machine's load, so a ratio moves less than either time.
            for suffix, source in (("", times), ("_nosetup", bare)):
                for v in source:
                    for loop in ("tuned", "tuned_loss"):
                        ratios = sorted(a / b for a, b in zip(source[v], source[loop], strict=True))
                        row[f"{v}{suffix}/{loop}"] = statistics.median(ratios)
                        row[f"{v}{suffix}/{loop}_range"] = (ratios[0], ratios[-1])
            if compiled:
                steady = row["tdsl_compiled"] * timed.steps
                row["compile_s"] = warmup["tdsl_compiled"] - steady
            results[f"{name} ({how})"] = row
            shown = {v: f"{t * 1e6:.0f}us" for v, t in row.items() if v in VARIANTS}
            print(name, how, shown, flush=True)
    return results


def _ratio(r: dict, key: str, digits: int = 3) -> str:
    if key not in r:
        return "-"
    low, high = r[key + "_range"]
    return f"{r[key]:.{digits}f}x ({low:.{digits}f}–{high:.{digits}f})"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(results: dict[str, dict[str, float]]) -> str:
    """Median per-repetition ratios to the tuned loop (range in brackets); `(train)` rows
    with setup in, `(large)` rows without (each with tdsl's other setup choice beside it)."""
    lines = [
        "| workload (validation batches) | tuned loop (us/step) | tdsl | tdsl, other setup "
        "| tdsl, train.compile | compile (s) | tutorial-style loop "
        "| tuned loop without metrics (us/step) | tdsl against it |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        setup_in = name.endswith("(train)")
        suffix, other = ("", "_nosetup") if setup_in else ("_nosetup", "")
        lines.append(
            f"| {name}, setup {'in' if setup_in else 'out'} | {r['tuned' + suffix] * 1e6:.0f} "
            f"| {_ratio(r, f'tdsl{suffix}/tuned')} "
            f"| {_ratio(r, f'tdsl{other}/tuned')} "
            f"| {_ratio(r, f'tdsl_compiled{suffix}/tuned', 2)} | {_seconds(r.get('compile_s'))} "
            f"| {_ratio(r, f'tutorial{suffix}/tuned', 2)} "
            f"| {r['tuned_loss' + suffix] * 1e6:.0f} "
            f"| {_ratio(r, f'tdsl{suffix}/tuned_loss')} |"
        )
    return "\n".join(lines)


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    parser.add_argument("--only", nargs="*", choices=list(workloads()), help="these workloads")
    parser.add_argument("--eval", nargs="*", choices=EVALS, default=list(EVALS))
    parser.add_argument("--eager-only", action="store_true", help="leave out train.compile")
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="cpu: process CPU time"
    )
    args = parser.parse_args()
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.eager_only:
        del VARIANTS["tdsl_compiled"]
    torch.set_num_threads(args.threads)
    results = measure(args.repeats, args.only, tuple(args.eval))
    header = (
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} "
        f"({torch.get_num_threads()} threads, torch {torch.__version__}); medians of "
        f"{args.repeats} interleaved repetitions of {args.clock} time, median per-repetition "
        f"ratios to the tuned loop (range); load average {_load()} at the end.\n\n"
    )
    text = header + table(results) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
