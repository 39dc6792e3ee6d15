"""tdsl against a tuned hand-written loop on one GPU: steps/s, ratio, peak memory.

Four workloads — the digits CNN, mlp-wide (64-512-512-10), a ResNet-18 (specs/models/
resnet18.yaml) on random 3x32x32 images and a small GPT (bench/gpt_small.yaml) — each in
fp32, bf16 autocast, bf16 with `train.channels_last` (the CNNs), and `train.compile` (the
hand loop then runs `torch.compile(model)`); `--settings cudagraphs` adds `train.compile:
{mode: reduce-overhead}`. Both runners start from the same weights, see the same batches in
the same order (tdsl's per-epoch permutation) with the data already on the device, and
the hand loop reads the loss once per epoch. Each (workload, setting) runs once to warm up
(and compile), then `--repeats` interleaved timed runs; the table gives median steps/s,
tdsl's ratio of time per step to the hand loop's, and `torch.cuda.max_memory_allocated`.
A setting whose final training loss differs from the hand loop's (or bf16/compiled from
fp32) by more than the tolerance stops the benchmark: its speed would mean nothing.

Run on a GPU machine (a few minutes):  python bench/gpu.py [--out bench/gpu_results.md]
Check the harness on the CPU (seconds): python bench/gpu.py --device cpu --quick
Without CUDA and without `--device cpu` it prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F

import tdsl
from tdsl.data import Splits
from tdsl.data.tensors import epoch_order
from tdsl.registry.optimizer_args import as_torch
from tdsl.registry.optimizers import lookup_optimizer
from tdsl.spec.load_dump import read_spec
from tdsl.spec.overrides import apply_overrides
from tdsl.train.loops import _order_seed

ROOT = Path(__file__).resolve().parent.parent
# bf16_nhwc: bf16 with `train.channels_last` (the CNNs only); cudagraphs: `train.compile:
# {mode: reduce-overhead}` (not run by default: another compile of every model).
SETTINGS = ("fp32", "bf16", "bf16_nhwc", "compile", "cudagraphs")
DEFAULT_SETTINGS = ("fp32", "bf16", "bf16_nhwc", "compile")
CNNS = ("digits_cnn", "resnet18")
# Allowed difference in the final training loss: relative + absolute.
TOLERANCE = {"same_setting": (0.02, 0.01), "across_settings": (0.05, 0.05)}


def _from_file(path: Path, assignments: Sequence[str]) -> tdsl.Spec:
    spec, problems = read_spec(path, lambda data: apply_overrides(data, assignments))
    if spec is None:
        raise SystemExit("\n".join(str(p) for p in problems))
    return spec


def _classifier(name: str, shape: list[int], layers: list, n: int, epochs: int, batch: int):
    return tdsl.Spec(
        name=name,
        data=tdsl.RandomData(
            n=n,
            target=tdsl.Target(kind="class", num_classes=10),
            split=tdsl.Split(train=1.0, val=0.0),
        ),
        model=tdsl.Model(inputs=[tdsl.Input(shape=shape)], layers=layers),
        loss=tdsl.Loss("cross_entropy"),
        optimizer=tdsl.Optimizer("adam", lr=1e-3),
        train=tdsl.Train(epochs=epochs, batch_size=batch),
    )


def workloads(quick: bool) -> dict[str, tdsl.Spec]:
    """The four specs; `quick` shrinks rows, widths and epochs so the CPU runs them in
    seconds (the code paths are the same)."""
    L = tdsl.Layer
    digits = _classifier(
        "digits_cnn",
        [1, 8, 8],
        [
            L("conv2d", out_channels=16, kernel_size=3, padding=1),
            L("relu"),
            L("maxpool2d", kernel_size=2),
            L("conv2d", out_channels=32, kernel_size=3, padding=1),
            L("relu"),
            L("flatten"),
            L("linear", out_features=10),
        ],
        n=128 if quick else 1797,
        epochs=1 if quick else 10,
        batch=64,
    )
    width = 32 if quick else 512
    wide = _classifier(
        "mlp_wide",
        [64],
        [
            L("linear", out_features=width),
            L("relu"),
            L("linear", out_features=width),
            L("relu"),
            L("linear", out_features=10),
        ],
        n=512 if quick else 62_500,
        epochs=1 if quick else 3,
        batch=256,
    )
    resnet = _from_file(
        ROOT / "specs" / "models" / "resnet18.yaml",
        [
            f"data={{kind: random, n: {16 if quick else 10_000}, "
            "target: {kind: class, num_classes: 1000}, split: {train: 1.0, val: 0.0}}",
            "model.inputs[0].shape=[3, 32, 32]",
            f"train={{epochs: {1 if quick else 2}, batch_size: {8 if quick else 256}}}",
        ],
    )
    gpt_quick = [
        "data.block_size=16",
        "model.inputs[0].shape=[16]",
        "model.blocks.block.params.width=32",
        "model.layers[2].num_embeddings=16",  # wpe: one row per position
        "model.layers[0].embedding_dim=32",
        "model.layers[2].embedding_dim=32",
        "model.layers[4].repeat=1",
        "data.stride=64",
        "train.epochs=1",
        "train.batch_size=16",
    ]
    gpt = _from_file(ROOT / "bench" / "gpt_small.yaml", gpt_quick if quick else [])
    return {"digits_cnn": digits, "mlp_wide": wide, "resnet18": resnet, "gpt_small": gpt}


def for_setting(spec: tdsl.Spec, setting: str, device: str) -> tdsl.Spec:
    precision = "bf16" if setting.startswith("bf16") else "fp32"
    compiled: bool | tdsl.Compile = setting == "compile"
    if setting == "cudagraphs":
        compiled = tdsl.Compile(mode="reduce-overhead")
    return attrs.evolve(
        spec,
        device=tdsl.Device(name=device, precision=precision),
        train=attrs.evolve(spec.train, compile=compiled, channels_last=setting == "bf16_nhwc"),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tdsl_runner(spec: tdsl.Spec, data: Splits) -> tuple[Callable[[], float], torch.device]:
    """A run of `tdsl.fit` as a user calls it (one program, reused: compiled once)."""
    program = tdsl.compile(spec)

    def run() -> float:
        result = tdsl.fit(program, program.init(), data)
        return result.history[-1]["loss"]

    return run, program.device


def hand_runner(spec: tdsl.Spec, data: Splits) -> tuple[Callable[[], float], torch.device]:
    """The tuned loop: same module and initial weights, same batch order, index_select
    batches from device-resident data, the loss summed on the device, one sync an epoch."""
    program = tdsl.compile(attrs.evolve(spec, train=attrs.evolve(spec.train, compile=False)))
    device = program.device
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if spec.device.precision == "bf16"
        else contextlib.nullcontext
    )
    x, y = data.train.features[0], data.train.target.long()
    n, batch = len(y), spec.train.batch_size
    optimizer_kind = lookup_optimizer(spec.optimizer.kind).cls
    compiled: dict[str, Any] = {}

    nhwc = spec.train.channels_last
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last)
    mode = spec.train.compile.mode if isinstance(spec.train.compile, tdsl.Compile) else None

    def run() -> float:
        module = program.module_for(program.init())
        if nhwc:
            module = module.to(memory_format=torch.channels_last)
        model = module
        if spec.train.compile:  # compiled once, reused by every run, as tdsl's step is
            model = compiled.setdefault("model", torch.compile(module, mode=mode))
            model.load_state_dict(module.state_dict())
            module = model
        opt = optimizer_kind(
            module.parameters(), lr=spec.optimizer.lr, **as_torch(spec.optimizer.args)
        )
        module.train()
        loss_sum = torch.zeros((), device=device)
        for epoch in range(spec.train.epochs):
            loss_sum = torch.zeros((), device=device)
            order = epoch_order(n, _order_seed(spec.seed, epoch)).to(device)
            for start in range(0, n, batch):
                index = order[start : start + batch]
                with autocast():
                    out = model(x.index_select(0, index))
                    target = y.index_select(0, index).reshape(-1)
                    loss = F.cross_entropy(out.float().reshape(target.numel(), -1), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach() * len(index)
            float(loss_sum)  # the one host sync of an epoch (a real loop logs it)
        return float(loss_sum) / n

    return run, device


RUNNERS = {"tdsl": tdsl_runner, "hand": hand_runner}


@attrs.frozen
class Row:
    workload: str
    setting: str
    steps_per_s: dict[str, float]  # by runner
    peak_mb: dict[str, float | None]
    loss: dict[str, float]

    @property
    def ratio(self) -> float:
        """tdsl's time per step over the hand loop's (1.0: the same; lower: faster)."""
        return self.steps_per_s["hand"] / self.steps_per_s["tdsl"]


def _on_device(data: Splits, device: torch.device) -> Splits:
    return attrs.evolve(data, train=data.train.to(device), val=None, test=None)


def measure(name: str, spec: tdsl.Spec, setting: str, device: str, repeats: int) -> Row:
    spec = for_setting(spec, setting, device)
    data = tdsl.load_data(spec)
    runs, speeds, peaks, losses = {}, {}, {}, {}
    for runner, make in RUNNERS.items():
        run, torch_device = make(spec, data)
        data = _on_device(data, torch_device)
        runs[runner] = run
        run()  # warm-up: compiles, allocates, fills caches
    steps = spec.train.epochs * math.ceil(len(data.train) / spec.train.batch_size)
    times: dict[str, list[float]] = {r: [] for r in RUNNERS}
    for _ in range(repeats):
        for runner, run in runs.items():  # interleaved
            if torch_device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(torch_device)
            _sync(torch_device)
            started = time.perf_counter()
            losses[runner] = run()
            _sync(torch_device)
            times[runner].append(time.perf_counter() - started)
            if torch_device.type == "cuda":
                peaks[runner] = torch.cuda.max_memory_allocated(torch_device) / 2**20
            else:
                peaks[runner] = None
    for runner, spent in times.items():
        speeds[runner] = steps / statistics.median(spent)
    row = Row(name, setting, speeds, peaks, losses)
    _check(row, "same_setting", row.loss["tdsl"], row.loss["hand"], "the hand loop's")
    return row


def _check(row: Row, kind: str, got: float, want: float, what: str) -> None:
    relative, absolute = TOLERANCE[kind]
    if not math.isfinite(got) or abs(got - want) > relative * abs(want) + absolute:
        raise SystemExit(
            f"{row.workload} {row.setting}: tdsl's final training loss {got:.4g} is not "
            f"{what} {want:.4g} (allowed {relative:.0%} + {absolute})"
        )


def check_settings(rows: list[Row]) -> None:
    """bf16 and compiled runs must reach about the fp32 run's loss."""
    fp32 = {r.workload: r.loss["tdsl"] for r in rows if r.setting == "fp32"}
    for row in rows:
        if row.setting != "fp32" and row.workload in fp32:
            want = fp32[row.workload]
            _check(row, "across_settings", row.loss["tdsl"], want, "the fp32 run's")


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| workload | setting | hand loop (steps/s) | tdsl (steps/s) | tdsl time/step vs hand "
        "| peak MB hand / tdsl | final loss hand / tdsl |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.workload} | {r.setting} | {r.steps_per_s['hand']:,.1f} "
            f"| {r.steps_per_s['tdsl']:,.1f} | {r.ratio:.2f}x "
            f"| {_mb(r.peak_mb['hand'])} / {_mb(r.peak_mb['tdsl'])} "
            f"| {r.loss['hand']:.4f} / {r.loss['tdsl']:.4f} |"
        )
    return "\n".join(lines)


NO_CUDA = (
    "bench/gpu.py: no CUDA device here (torch.cuda.is_available() is False); run it on a "
    "GPU machine, or check the harness with --device cpu --quick"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --quick)")
    parser.add_argument("--only", nargs="*", choices=list(workloads(True)), help="workloads")
    parser.add_argument(
        "--settings",
        nargs="*",
        choices=SETTINGS,
        help="default all but cudagraphs (fp32, bf16 and bf16_nhwc with --quick: compiling "
        "takes minutes on a CPU)",
    )
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    repeats = args.repeats or (1 if args.quick else 3)
    quick = ["fp32", "bf16", "bf16_nhwc"]
    settings = args.settings or (quick if args.quick else list(DEFAULT_SETTINGS))
    rows = []
    for name, spec in workloads(args.quick).items():
        if args.only and name not in args.only:
            continue
        for setting in settings:
            if setting == "bf16_nhwc" and name not in CNNS:
                continue
            row = measure(name, spec, setting, args.device, repeats)
            print(f"{name} {setting}: {row.ratio:.2f}x of the hand loop", flush=True)
            rows.append(row)
    check_settings(rows)
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    header = (
        f"Measured {time.strftime('%Y-%m-%d')} on {where} ({platform.machine()}, torch "
        f"{torch.__version__}{', quick sizes' if args.quick else ''}); medians of {repeats} "
        "interleaved runs.\n\n"
    )
    text = header + table(rows) + "\n"
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
