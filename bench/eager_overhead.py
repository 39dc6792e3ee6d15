"""The eager loop's own overhead, in deterministic and CPU-time measures (issue 23).

Wall-clock ratios on a shared machine are noise-dominated, so this reports what a loaded
machine cannot blur much:
- setup: `tdsl.compile(spec)` + `program.init()` against building the same nn.Sequential
  and Adam by hand, in-process after warm-up: medians of `--setups` runs, CPU time
  (`time.process_time_ns`) and wall-clock;
- per step: Python function calls (counted with `sys.setprofile`) of one `fit` epoch and
  one tuned hand-loop epoch (`bench/workloads.py`), and CPU microseconds per step (medians
  of `--repeats` interleaved whole fits).

Run: python bench/eager_overhead.py [--only linreg rings] [--parts setup calls cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as W  # noqa: E402

import tdsl  # noqa: E402
from tdsl.train.callbacks import ProgressPrinter  # noqa: E402


def _tdsl_setup(spec: tdsl.Spec) -> None:
    tdsl.compile(spec).init()


def _cold_setup(spec: tdsl.Spec) -> None:
    try:  # validation again, as a process's first compile of the spec does
        from tdsl.train.checked_specs import forget
    except ImportError:  # a version that validates every time
        pass
    else:
        forget()
    tdsl.compile(spec).init()


def _hand_setup(spec: tdsl.Spec) -> None:
    net = W.hand_module(spec)
    torch.optim.Adam(net.parameters(), lr=spec.optimizer.lr)


def setup_times(spec: tdsl.Spec, runs: int) -> dict[str, tuple[float, float]]:
    """Per variant: median (CPU ms, wall ms) of `runs` interleaved setups after a warm-up."""
    variants: dict[str, Callable[[tdsl.Spec], None]] = {
        "tdsl": _tdsl_setup,
        "tdsl_cold": _cold_setup,
        "hand": _hand_setup,
    }
    for fn in variants.values():
        fn(spec)
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(runs):
        for name, fn in variants.items():
            c, w = time.process_time_ns(), time.perf_counter_ns()
            fn(spec)
            cpu[name].append((time.process_time_ns() - c) / 1e6)
            wall[name].append((time.perf_counter_ns() - w) / 1e6)
    return {v: (statistics.median(cpu[v]), statistics.median(wall[v])) for v in variants}


def _tdsl_fit(spec: tdsl.Spec, data, program=None) -> None:
    program = program or tdsl.compile(spec)
    tdsl.fit(program, program.init(), data, callbacks=[ProgressPrinter(io.StringIO())])


def _tuned_fit(spec: tdsl.Spec, data) -> None:
    W.tuned_run(spec, data)


def count_calls(fn: Callable[[], None]) -> int:
    """Python function calls (and C functions called from Python) while `fn` runs."""
    calls = 0

    def profiler(frame, event, arg):
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profiler)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def calls_per_step(spec: tdsl.Spec, data) -> dict[str, tuple[float, float]]:
    """Per variant: (calls per step, calls per epoch outside the steps), from the difference
    between 2-epoch and 1-epoch runs (which cancels setup) and the steps per epoch."""
    import attrs

    steps = data.train.num_batches(spec.train.batch_size)
    result = {}
    for name, fn in (("tdsl", _tdsl_fit), ("tuned", _tuned_fit)):
        per_epoch = []
        for epochs in (1, 2):
            run = attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=epochs))
            fn(run, data)  # warm
            per_epoch.append(count_calls(lambda run=run, fn=fn: fn(run, data)))
        epoch = per_epoch[1] - per_epoch[0]
        result[name] = (epoch / steps, epoch, per_epoch[0] - epoch)
    return result


def cpu_per_step(spec: tdsl.Spec, data, repeats: int) -> dict[str, float]:
    """Per variant: median CPU microseconds per step of whole fits (setup included)."""
    steps = spec.train.epochs * data.train.num_batches(spec.train.batch_size)
    times: dict[str, list[float]] = {"tdsl": [], "tuned": []}
    fns = {"tdsl": _tdsl_fit, "tuned": _tuned_fit}
    for fn in fns.values():
        fn(spec, data)
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.process_time_ns()
            fn(spec, data)
            times[name].append((time.process_time_ns() - started) / 1e3 / steps)
    return {n: statistics.median(t) for n, t in times.items()}


def epoch_cpu(spec: tdsl.Spec, data, runs: int) -> dict[str, tuple[float, float]]:
    """Per variant: (lower decile, median) CPU microseconds per step of one epoch and its
    validation pass, setup left out, over `runs` interleaved epochs. The lower decile is
    the figure a busy machine disturbs least."""
    program = tdsl.compile(spec)
    net = W.hand_module(spec)
    opt = torch.optim.Adam(net.parameters(), lr=spec.optimizer.lr)
    loss_fn = W._loss_fn(spec)
    x, y = data.train.features[0], W._target(spec, data.train.target)
    vx, vy = data.val.features[0], W._target(spec, data.val.target)
    size = spec.train.batch_size
    steps = data.train.num_batches(size)

    def ours() -> None:
        tdsl.fit(
            program, program.init(), data, epochs=1, callbacks=[ProgressPrinter(io.StringIO())]
        )

    def tuned() -> None:
        net.train()
        W.tuned_epoch(net, opt, loss_fn, x, y, size)
        net.eval()
        W.tuned_validation(net, loss_fn, vx, vy, spec.train.eval_batch_size)

    times: dict[str, list[float]] = {"tdsl": [], "tuned": []}
    for _ in range(runs):
        for name, fn in (("tdsl", ours), ("tuned", tuned)):
            started = time.process_time_ns()
            fn()
            times[name].append((time.process_time_ns() - started) / 1e3 / steps)
    return {n: (statistics.quantiles(t, n=10)[0], statistics.median(t)) for n, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=["linreg", "rings"])
    parser.add_argument("--setups", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    # One thread by default: with two on a busy machine, every op torch runs in parallel
    # (log_sigmoid, log_softmax, even on two rows) spins for milliseconds of CPU time
    # waiting for the other thread to be scheduled, in tdsl and the hand loop alike.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parts", nargs="*", default=["setup", "calls", "epoch", "cpu"])
    parser.add_argument("--epochs", type=int, default=100, help="single epochs for `epoch`")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, base in W.workloads().items():
        if name not in args.only:
            continue
        spec = W.for_eval(base, "train")
        data = tdsl.load_data(spec)
        if "setup" in args.parts:
            setup = setup_times(spec, args.setups)
            shown = ", ".join(f"{v} {c:.2f}/{w:.2f}" for v, (c, w) in setup.items())
            print(f"{name} setup CPU/wall ms (medians of {args.setups}): {shown}", flush=True)
        if "calls" in args.parts:
            calls = calls_per_step(spec, data)
            shown = ", ".join(
                f"{v} {s:.1f}/step, {e}/epoch, {f} outside epochs" for v, (s, e, f) in calls.items()
            )
            print(f"{name} Python calls: {shown}", flush=True)
        if "epoch" in args.parts:
            cpu = epoch_cpu(spec, data, args.epochs)
            (low, mid), (tlow, tmid) = cpu["tdsl"], cpu["tuned"]
            print(
                f"{name} CPU us/step of one epoch + validation (lower decile / median of "
                f"{args.epochs}): tdsl {low:.1f}/{mid:.1f}, tuned {tlow:.1f}/{tmid:.1f} "
                f"({low / tlow:.3f}x / {mid / tmid:.3f}x)",
                flush=True,
            )
        if "cpu" in args.parts:
            cpu = cpu_per_step(spec, data, args.repeats)
            print(
                f"{name} CPU us/step (setup in, medians of {args.repeats}): tdsl "
                f"{cpu['tdsl']:.1f}, tuned {cpu['tuned']:.1f} ({cpu['tdsl'] / cpu['tuned']:.3f}x)",
                flush=True,
            )


if __name__ == "__main__":
    main()
