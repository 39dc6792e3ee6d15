"""Data-parallel training on the CPU: one process against two (gloo), on mlp_wide.

The mlp_wide workload of bench/workloads.py (64-512-512-10 MLP, RandomData 62,500 rows,
batch 256, Adam 1e-3, 3 epochs; `--rows` and `--epochs` shrink it) in three variants, each
run as a user runs it, `tdsl run SPEC` in a fresh process:
(a) one process, one thread (OMP_NUM_THREADS=1);
(b) one process, two threads;
(c) two processes of one thread each, `tdsl run SPEC --nproc 2` (`strategy: ddp`, gloo),
    with the same global batch of 256 (128 rows per process).
Variants run interleaved, in a rotating order, `--repeats` times. The table gives medians
(and ranges) of the training time (the sum of the history's per-epoch `seconds`: the
training and validation passes, without process start, data loading or compilation), of
the whole command's wall and CPU time, training rows per second, and the scaling
efficiency throughput(c) / (2 x throughput(a)); (c) against (b) compares two processes
with one process using the same two cores.

Results check: (c) must do the work of one process (tdsl/train/distributed.py: every
process draws the same shuffle, takes half of each global batch, and one all_reduce gives
every process the global batch's mean gradient). Its float sums, though, are those of two
128-row halves, not of one 256-row batch, and training amplifies that rounding epoch by
epoch (ReLU units switching, Adam normalizing small gradients). So (c) is held, every
epoch's logs and every final weight, to (d): one process that sums the same halves
(`train.accumulate: 2`; run once, untimed), and to (a) only in the first epoch's training
loss and accuracy; how far the final weights of (b), (c) and (d) drift from (a) is
reported. The benchmark exits with status 1 when a run differs by more than the
tolerances below.

`--smoke` is the least run whose results check means something (512 rows, one epoch, no
(b)), its variants run at the same time, so its times are no measurement: five fresh
processes, mostly their start, some 15 s on 2 cores (tests/test_bench_ddp.py runs it).

Run: python bench/ddp.py [--quick | --smoke] [--repeats 3] [--epochs 3] [--rows 62500]
[--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import torch
from workloads import workloads  # bench/ is the script's folder

import tdsl
from tdsl.data import load_data

ROOT = Path(__file__).resolve().parent.parent

# name: (processes, threads per process, train.accumulate)
VARIANTS = {
    "(a) 1 process, 1 thread": (1, 1, 1),
    "(b) 1 process, 2 threads": (1, 2, 1),
    "(c) 2 processes x 1 thread": (2, 1, 1),
}
# Not timed, run once: one process computing the global batch's gradient from the same two
# halves of 128 rows that (c)'s processes take (train.accumulate: 2).
HALVES = "(d) 1 process, 1 thread, accumulate 2"
SHAPES = {**VARIANTS, HALVES: (1, 1, 2)}
# (c) against (d): the same sums in the same order, except the last batch of each epoch at
# the default size (80 rows: 40-row means, and 1/40 is not exact in binary) and validation
# totals merged from two shares, so they agree to rounding (with full batches the weights
# are equal bit for bit).
RTOL, ATOL = 1e-5, 1e-6  # on every epoch's logs (losses, metrics, lr)
WEIGHT_RTOL, WEIGHT_ATOL = 1e-5, 1e-6  # on every final weight
# (c) against (a), one mean over 256 rows: the first epoch's training logs within RTOL; later
# the rounding differences grow with training (reported, and (d) drifts as far from (a)).
FIRST_EPOCH = ("loss", "accuracy")


@attrs.frozen
class Run:
    variant: str
    wall: float  # the whole command, process start included
    seconds: float  # the epochs' own time, summed
    cpu: float  # CPU seconds of the command and the processes it started
    history: list[dict]
    weights: dict[str, torch.Tensor]


def spec_for(variant: str, epochs: int, rows: int) -> tdsl.Spec:
    processes, _, accumulate = SHAPES[variant]
    spec = workloads()["mlp_wide"]
    strategy = "ddp" if processes > 1 else "single"
    return attrs.evolve(
        spec,
        data=attrs.evolve(spec.data, n=rows),
        train=attrs.evolve(spec.train, epochs=epochs, accumulate=accumulate),
        device=tdsl.Device("cpu", strategy=strategy),
    )


def run_once(variant: str, spec_file: Path, out: Path) -> Run:
    processes, threads, _ = SHAPES[variant]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    path = [str(ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    env.update(OMP_NUM_THREADS=str(threads), PYTHONPATH=os.pathsep.join(path))
    command = [sys.executable, "-m", "tdsl", "run", str(spec_file), "--out", str(out)]
    if processes > 1:
        command += ["--nproc", str(processes)]
    with (out.parent / f"{out.name}.log").open("w+") as log:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, cwd=out.parent, stdout=log, stderr=log)
        # Its own CPU time with its waited-for descendants' (torchrun's workers are waited
        # for by the launcher), whatever else runs beside it.
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if child.returncode != 0:
            log.seek(0)
            raise SystemExit(f"{variant} failed:\n{log.read()}")
    cpu = usage.ru_utime + usage.ru_stime
    lines = (out / "history.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    checkpoint = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    seconds = sum(row["seconds"] for row in history)
    return Run(variant, wall, seconds, cpu, history, checkpoint["model"])


@attrs.define
class Check:
    """Differences beyond the tolerances, and the largest ones seen."""

    problems: list[str] = attrs.Factory(list)
    log: float = 0.0  # largest relative difference of a logged value
    weight: float = 0.0  # largest absolute difference of a weight

    def logs(self, run: Run, reference: Run, keys: tuple[str, ...] | None = None) -> None:
        """Every epoch's logs (or, with `keys`, only those of the first epoch)."""
        pairs = list(zip(run.history, reference.history, strict=False))
        if keys is None and len(run.history) != len(reference.history):
            self.problems.append(f"{run.variant}: {len(run.history)} epochs, not {len(pairs)}")
        for row, expected in pairs[:1] if keys else pairs:
            for key in keys or [k for k in expected if k != "seconds"]:
                got, value = row.get(key), expected[key]
                if got is None or abs(got - value) > ATOL + RTOL * abs(value):
                    where = f"epoch {expected['epoch']} {key}"
                    self.problems.append(f"{run.variant}: {where} {got}, not {value}")
                elif value:
                    self.log = max(self.log, abs(got - value) / abs(value))

    def weights(self, run: Run, reference: Run) -> None:
        if run.weights.keys() != reference.weights.keys():
            self.problems.append(f"{run.variant}: weights {sorted(run.weights)}")
            return
        for name, expected in reference.weights.items():
            gap = (run.weights[name] - expected).abs()
            if not torch.all(gap <= WEIGHT_ATOL + WEIGHT_RTOL * expected.abs()):
                self.problems.append(f"{run.variant}: {name} differs by up to {gap.max():.3g}")
            self.weight = max(self.weight, gap.max().item())


def drift(run: Run, reference: Run) -> float:
    """The largest relative difference of a weight tensor (in norm) from the reference's."""
    return max(
        ((run.weights[name] - w).norm() / w.norm()).item() for name, w in reference.weights.items()
    )


def spread(values: list[float], digits: int = 2) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,560 rows, 2 epochs, 1 repeat")
    parser.add_argument("--smoke", action="store_true", help="512 rows, 1 epoch, without (b)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=62_500)
    parser.add_argument("--out", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.epochs, args.repeats = 2560, 2, 1
    names = list(VARIANTS)
    if args.smoke:  # two batches, the last of two uneven halves; (b) only times threads
        args.rows, args.epochs, args.repeats = 512, 1, 1
        names.remove("(b) 1 process, 2 threads")
    load_before = os.getloadavg()
    runs: dict[str, list[Run]] = {name: [] for name in [*names, HALVES]}
    with tempfile.TemporaryDirectory(prefix="tdsl-ddp-bench-") as folder:
        work = Path(folder)
        files = {name: work / f"{number}.yaml" for number, name in enumerate(runs)}
        for name, file in files.items():
            file.write_text(tdsl.dump(spec_for(name, args.epochs, args.rows)))
        for repeat in range(args.repeats):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            order += [HALVES] if repeat == 0 else []
            outs = [work / f"{files[name].stem}_{repeat}" for name in order]
            with ThreadPoolExecutor(len(order) if args.smoke else 1) as pool:
                done = pool.map(run_once, order, [files[name] for name in order], outs)
                for name, run in zip(order, list(done), strict=True):
                    runs[name].append(run)
    load_after = os.getloadavg()

    a, c, (halves,) = runs[names[0]], runs[names[-1]], runs[HALVES]
    b = runs.get("(b) 1 process, 2 threads")
    train_rows = len(load_data(spec_for(names[0], args.epochs, args.rows)).train)
    samples = train_rows * args.epochs
    speed = {name: statistics.median(samples / r.seconds for r in runs[name]) for name in names}
    efficiency = speed[names[-1]] / (2 * speed[names[0]])
    cores = os.cpu_count()
    lines = [
        f"mlp_wide, {args.rows} rows ({train_rows} training), {args.epochs} epoch(s), global "
        f"batch 256; medians (ranges) of {args.repeats} interleaved repetition(s); "
        f"{platform.machine()}, torch {torch.__version__}. This machine has {cores} cores "
        f"shared with other jobs: load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after (1 min)."
        + (
            " Smoke run: the variants ran at the same time, the times are no measurement."
            if args.smoke
            else ""
        ),
        "",
        "| variant | training (s) | whole command (s) | its CPU (s) | training rows/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        lines.append(
            f"| {name} | {spread([r.seconds for r in runs[name]])} | "
            f"{spread([r.wall for r in runs[name]])} | {spread([r.cpu for r in runs[name]])} | "
            f"{speed[name]:,.0f} |"
        )
    vs_b = "" if b is None else f"; (c) against (b): {speed[names[-1]] / speed[names[1]]:.2f}x"
    lines += ["", f"Scaling efficiency (c) / (2 x (a)): {efficiency:.2f}{vs_b}."]
    exact, first = Check(), Check()
    for run in [*a[1:], *c]:  # (a) again: deterministic; (c): the sums of (d)
        exact.logs(run, a[0] if run in a else halves)
        exact.weights(run, a[0] if run in a else halves)
    for run in [halves, *c]:
        first.logs(run, a[0], FIRST_EPOCH)
    failed = exact.problems + first.problems
    lines += [
        f"Results check {'PASS' if not failed else 'FAIL'}: (c) against (d), one process "
        f"summing the same two 128-row halves (train.accumulate: 2), every epoch's logs within "
        f"rtol {RTOL:g} (largest relative difference {exact.log:.1g}) and every weight within rtol "
        f"{WEIGHT_RTOL:g} + atol {WEIGHT_ATOL:g} (largest absolute difference {exact.weight:.1g}); "
        f"against (a), one mean over 256 rows, epoch 1's training loss and accuracy within "
        f"rtol {RTOL:g} (largest {first.log:.1g}). Later the rounding differences grow with "
        f"training: final weights (c) vs (a) differ by up to "
        f"{max(drift(r, a[0]) for r in c):.1g} in norm, (d) vs (a) by "
        f"{drift(halves, a[0]):.1g}"
        + ("" if b is None else f", (b) vs (a) by {max(drift(r, a[0]) for r in b):.1g}")
        + ".",
    ]
    text = "\n".join(lines)
    print(text)
    for problem in failed:
        print(f"  differs: {problem}", file=sys.stderr)
    if args.out:
        with args.out.open("a") as handle:
            handle.write(f"\n## {time.strftime('%Y-%m-%d')}: bench/ddp.py\n\n{text}\n")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
