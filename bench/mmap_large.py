"""Training on a memory-mapped data set larger than it would be comfortable to hold: resident
memory while `tdsl.fit` reads a ~2 GB float32 `.npy` folder batch by batch.

Writes `x.npy` (float32 rows of `--features` values, `--size-gb` GiB in all) and a small
`y.npy` (0/1 labels of a fixed linear rule) into a fresh temporary folder, without mapping
them in this process, and evicts the file from the page cache so training starts cold. Then
loads a spec with `data: {kind: tensors, file: data}` (a folder of NAME.npy files: memory-
mapped, read per batch by DataLoader workers), compiles a small model and runs one epoch of
`tdsl.fit`, while a thread samples /proc every `--interval` seconds for this process and its
DataLoader workers: VmRSS, RssAnon, RssFile, PSS (from smaps_rollup), and the resident pages
of the data file's own mappings (from smaps). Prints the peaks next to the data set's size,
then deletes the folder.

Run: python bench/mmap_large.py [--size-gb 2] [--dir /tmp] [--workers 2] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import tdsl
from tdsl.train.callbacks import ProgressPrinter

MIB = 2**20
GIB = 2**30


# --- memory of this process and its children, from /proc ---------------------------------


def children(pid: int) -> list[int]:
    """Direct children of `pid` (the DataLoader workers), by their parent id in /proc."""
    found = []
    tasks = Path(f"/proc/{pid}/task")
    try:
        for task in tasks.iterdir():
            text = (task / "children").read_text()
            found += [int(c) for c in text.split()]
        return found
    except OSError:  # no /proc/PID/task/TID/children on this kernel: scan every process
        pass
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _kib_fields(path: str, names: tuple[str, ...]) -> dict[str, int]:
    values = dict.fromkeys(names, 0)
    with open(path) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0])
    return values


def mapped_kib(pid: int, file: str) -> int:
    """Resident KiB of `pid`'s mappings of `file`."""
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(maxsplit=1)[0]
            if "-" in first and not first.endswith(":"):  # a mapping's header line
                inside = line.rstrip("\n").endswith(file)
            elif inside and first == "Rss:":
                total += int(line.split()[1])
    return total


def sample(pid: int, file: str) -> dict[str, int]:
    """KiB summed over `pid` and its children."""
    totals = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "RssShmem": 0, "Pss": 0, "mapped": 0}
    pids = [pid, *children(pid)]
    for p in pids:
        try:
            status = _kib_fields(f"/proc/{p}/status", ("VmRSS", "RssAnon", "RssFile", "RssShmem"))
            pss = _kib_fields(f"/proc/{p}/smaps_rollup", ("Pss",))
            mapped = mapped_kib(p, file)
        except (OSError, ValueError):  # a worker that just exited
            continue
        for key, value in {**status, **pss, "mapped": mapped}.items():
            totals[key] += value
    totals["processes"] = len(pids)
    return totals


class Sampler(threading.Thread):
    """Samples memory every `interval` seconds and keeps the peak of each figure per phase."""

    def __init__(self, file: Path, interval: float):
        super().__init__(daemon=True)
        self.file, self.interval = str(file), interval
        self.phase = "start"
        self.peaks: dict[str, dict[str, int]] = {}
        self.count = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.take()
            self.stopping.wait(self.interval)
        self.take()

    def take(self) -> None:
        values = sample(os.getpid(), self.file)
        peak = self.peaks.setdefault(self.phase, dict(values))
        for key, value in values.items():
            peak[key] = max(peak[key], value)
        self.count += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join()


# --- the data set and the spec ---------------------------------------------------------------


def write_data(folder: Path, rows: int, features: int, seed: int = 0) -> float:
    """x.npy and y.npy written chunk by chunk through plain file writes (nothing mapped
    here), synced and evicted from the page cache; returns the seconds it took."""
    started = time.perf_counter()
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rule = rng.standard_normal(features).astype(np.float32)
    chunk = max(1, (64 * MIB) // (4 * features))
    labels = np.empty(rows, dtype=np.float32)
    path = folder / "x.npy"
    with open(path, "wb") as f:
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
            "fortran_order": False,
            "shape": (rows, features),
        }
        np.lib.format.write_array_header_2_0(f, header)
        for start in range(0, rows, chunk):
            block = rng.standard_normal((min(chunk, rows - start), features), dtype=np.float32)
            labels[start : start + len(block)] = block @ rule > 0
            block.tofile(f)
        f.flush()
        os.fsync(f.fileno())
        if hasattr(os, "posix_fadvise"):  # start cold: drop this file's cached pages
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    np.save(folder / "y.npy", labels)
    return time.perf_counter() - started


def spec_yaml(features: int, workers: int, batch_size: int, epochs: int) -> str:
    return f"""\
name: mmap_large
seed: 0
data:
  kind: tensors
  file: data
  features: [x]
  target: y
  target_kind: binary
  workers: {workers}
  split: {{train: 0.98, val: 0.02}}
model:
  inputs: [{{shape: [{features}]}}]
  layers:
    - {{op: linear, out_features: 16}}
    - relu
    - {{op: linear, out_features: 1}}
loss: {{kind: bce_with_logits}}
optimizer: {{kind: adam, lr: 0.001}}
metrics: [accuracy]
train: {{epochs: {epochs}, batch_size: {batch_size}}}
device: cpu
"""


# --- the run ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=2.0, help="size of x.npy in GiB")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--features", type=int, default=256, help="float32 values per row")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (main process)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = int(args.size_gb * GIB) // (4 * args.features)
    size = rows * args.features * 4
    free = shutil.disk_usage(args.dir).free
    needed = size + rows * 4 + 256 * MIB  # features, labels, some room
    if free < needed:
        print(
            f"not enough free disk in {args.dir}: {free / GIB:.1f} GiB free, {needed / GIB:.1f} "
            "GiB needed; use --dir or a smaller --size-gb"
        )
        return 1
    print(
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}; {free / GIB:.0f} GiB free in {args.dir}",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix="tdsl-mmap-", dir=args.dir))
    try:
        seconds = write_data(root / "data", rows, args.features)
        print(
            f"wrote {root / 'data'}: x.npy {size / GIB:.2f} GiB ({rows:,} x {args.features} "
            f"float32), y.npy {rows * 4 / MIB:.0f} MiB in {seconds:.0f}s",
            flush=True,
        )
        spec_path = root / "spec.yaml"
        spec_path.write_text(spec_yaml(args.features, args.workers, args.batch_size, args.epochs))
        return run(args, spec_path, root / "data" / "x.npy", size)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, spec_path: Path, data_file: Path, size: int) -> int:
    sampler = Sampler(data_file, args.interval)
    sampler.phase = "before loading"
    sampler.start()
    started = time.perf_counter()
    spec = tdsl.load(spec_path)
    report = tdsl.validate(spec)
    if not report.ok:
        print(report.format())
        sampler.stop()
        return 1
    program = tdsl.compile(spec)
    data = tdsl.load_data(spec)
    sampler.phase = "loading"
    sampler.take()
    prepared = time.perf_counter() - started
    sampler.phase = "training"
    progress = io.StringIO()
    started = time.perf_counter()
    result = tdsl.fit(program, program.init(), data, callbacks=[ProgressPrinter(progress)])
    trained = time.perf_counter() - started
    sampler.stop()

    steps = args.epochs * data.train.num_batches(args.batch_size)
    last = result.history[-1]
    read = args.epochs * (len(data.train) + len(data.val)) * args.features * 4
    print(
        f"validate + compile + load_data: {prepared:.1f}s; fit: {args.epochs} epoch(s), "
        f"{steps:,} steps of {args.batch_size} rows in {trained:.1f}s "
        f"({trained / steps * 1e3:.2f} ms/step, {read / trained / MIB:.0f} MiB/s of rows); "
        f"loss {last['loss']:.4f}, val_accuracy {last['val_accuracy']:.3f}; "
        f"{sampler.count} memory samples",
        flush=True,
    )
    base = sampler.peaks["before loading"]
    peak = sampler.peaks["training"]
    rows = [
        ("RSS (sum of VmRSS)", "VmRSS"),
        ("PSS (shared pages split among processes)", "Pss"),
        ("anonymous RSS (RssAnon)", "RssAnon"),
        ("file-backed RSS (RssFile)", "RssFile"),
        ("x.npy pages mapped (sum over processes)", "mapped"),
    ]
    print(
        f"\nPeak memory of the main process and its DataLoader workers "
        f"({peak['processes']} processes at most; workers: {args.workers}) during training, "
        f"against the {size / GIB:.2f} GiB data set:\n"
    )
    print("| measure | before loading (MiB) | peak in training (MiB) | peak / data set size |")
    print("| --- | ---: | ---: | ---: |")
    for label, key in rows:
        print(
            f"| {label} | {base[key] / 1024:,.0f} | {peak[key] / 1024:,.0f} | "
            f"{peak[key] * 1024 / size:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
