"""Tables at scale: validating and training on a ~1 GB CSV file (and the same rows as Parquet),
with the peak resident memory and the ingest rate.

Writes a CSV of `--features` number columns (six decimals), a category column of five
texts and a class target, about `--size-gb` GB in all, into a fresh temporary folder (with
`--parquet`, also the same rows as a Parquet file). Then, each in a fresh process so the
peaks do not mix: `tdsl.validate` on the spec, and `validate` + `compile` + `load_data` + one
epoch of `tdsl.fit`. Each child reports its wall time and its peak resident memory (VmHWM
from /proc/self/status, which counts every page the process ever held at once); the ingest
rate is the file's size over the time `validate` took.

With `--stream LIMIT` (e.g. `--stream 200M`), only the Parquet file is trained on, in
memory and then streamed by row groups under `TDSL_MEMORY_LIMIT=LIMIT`; the streamed row
also gives the peak of the largest DataLoader worker (`workers` in the row) and the
training rows per second of the epoch.

Run: python bench/tables.py [--size-gb 1] [--dir /tmp] [--parquet] [--stream 200M] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 10**6


def cpu_seconds() -> float:
    """User and system CPU time of this process (all its threads) so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def worker_peak() -> int:
    """The peak resident memory of the largest child process (DataLoader workers) so far."""
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def write_csv(path: Path, size: int, features: int, seed: int = 0) -> int:
    """Rows until the file holds `size` bytes; returns the number of rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    colors = np.array(["red", "green", "blue", "cyan", "magenta"])
    rows, chunk = 0, 200_000
    with pacsv.CSVWriter(path, _schema(features)) as writer:
        while path.stat().st_size < size if path.exists() else True:
            x = np.round(rng.standard_normal((chunk, features)), 6)
            color = rng.integers(0, 5, chunk)
            label = ((x[:, 0] + x[:, 1] > 0).astype(np.int64) * 2 + (color % 2)).astype(np.int64)
            columns = [pa.array(x[:, i]) for i in range(features)]
            columns += [pa.array(colors[color]), pa.array(label)]
            writer.write_table(pa.Table.from_arrays(columns, schema=_schema(features)))
            rows += chunk
            if path.stat().st_size >= size:
                break
    return rows


def _schema(features: int):
    import pyarrow as pa

    fields = [pa.field(f"x{i}", pa.float64()) for i in range(features)]
    return pa.schema([*fields, pa.field("color", pa.string()), pa.field("label", pa.int64())])


def write_parquet(csv_path: Path, path: Path) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    with pacsv.open_csv(csv_path) as reader, pq.ParquetWriter(path, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch, row_group_size=256_000)


def spec_yaml(data: str, features: int, kind: str) -> str:
    columns = "".join(f"    - {{name: x{i}, transform: standardize}}\n" for i in range(features))
    return f"""\
name: tables
seed: 0
data:
  kind: {kind}
  file: {data}
  columns:
{columns}    - {{name: color, transform: onehot}}
  target: label
  target_kind: class
  split: {{train: 0.9, val: 0.1}}
model:
  inputs: [{{shape: [{features + 5}]}}]
  layers:
    - {{op: linear, out_features: 32}}
    - relu
    - {{op: linear, out_features: 4}}
loss: {{kind: cross_entropy}}
optimizer: {{kind: adam, lr: 0.001}}
metrics: [accuracy]
train: {{epochs: 1, batch_size: 4096}}
device: cpu
"""


def child(phase: str, spec_path: str) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    import io

    import tdsl
    import tdsl.check.pipeline  # noqa: F401  (imported before the clock starts)
    from tdsl.train.callbacks import ProgressPrinter

    base, cpu = peak_rss(), cpu_seconds()
    started = time.perf_counter()
    report = tdsl.validate(spec_path)
    validated = time.perf_counter() - started
    out = {"phase": phase, "base": base, "validate_s": validated, "ok": report.ok}
    out["validate_cpu_s"] = cpu_seconds() - cpu
    if not report.ok:
        out["report"] = report.format()
    elif phase == "train":
        spec = tdsl.load(spec_path)
        program = tdsl.compile(spec)
        data = tdsl.load_data(spec)
        out["load_s"] = time.perf_counter() - started
        begun = time.perf_counter()
        result = tdsl.fit(program, program.init(), data, callbacks=[ProgressPrinter(io.StringIO())])
        out["fit_s"] = time.perf_counter() - begun
        out["rows"] = len(data.train) + len(data.val)
        out["rows_per_s"] = len(data.train) / result.history[-1]["seconds"]
        out["val_accuracy"] = result.history[-1]["val_accuracy"]
        out["kind"] = type(data.train).__name__
        out["worker_peak"] = worker_peak()
    out["total_s"] = time.perf_counter() - started
    out["peak"] = peak_rss()
    print(json.dumps(out), flush=True)


def measure(phase: str, spec_path: Path, limit: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("TDSL_MEMORY_LIMIT", None)
    if limit:
        env["TDSL_MEMORY_LIMIT"] = limit
    done = subprocess.run(
        [sys.executable, __file__, "--child", phase, str(spec_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        return {"phase": phase, "error": (done.stderr or done.stdout)[-2000:]}
    return json.loads(lines[-1])


def row(label: str, size: int, found: dict) -> str:
    if "error" in found:
        return f"| {label} | failed: {found['error'].splitlines()[-1]} |"
    if not found.get("ok"):
        return f"| {label} | invalid: {found.get('report', '')[:200]} |"
    rate = size / MB / found["validate_s"]
    cpu_rate = size / MB / found["validate_cpu_s"]
    train = f"{found['load_s']:.1f} s + fit {found['fit_s']:.1f} s" if "fit_s" in found else "—"
    if "rows_per_s" in found:
        train += f", {found['rows_per_s']:,.0f} rows/s"
    return (
        f"| {label} | {found['validate_s']:.1f} s ({found['validate_cpu_s']:.1f} s CPU) | "
        f"{rate:.0f} MB/s ({cpu_rate:.0f} per CPU-s) | {train} | "
        f"{found['peak'] / MB:,.0f} MB | {found['peak'] / size:.2f}x |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="size of the CSV in GB")
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--parquet", action="store_true", help="also the rows as Parquet")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--stream", metavar="LIMIT", help="train on Parquet streamed under LIMIT")
    parser.add_argument("--data", type=Path, help="a folder a --keep run left: reuse its files")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    size = int(args.size_gb * 10**9)
    print(
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        flush=True,
    )
    root = args.data or Path(tempfile.mkdtemp(prefix="tdsl-tables-", dir=args.dir))
    try:
        started = time.perf_counter()
        if args.data is None:
            rows = write_csv(root / "t.csv", size, args.features)
        else:
            rows = sum(1 for _ in (root / "t.csv").open("rb")) - 1
        size = (root / "t.csv").stat().st_size
        print(
            f"wrote t.csv: {size / MB:,.0f} MB, {rows:,} rows in "
            f"{time.perf_counter() - started:.0f}s",
            flush=True,
        )
        cases = [("CSV", root / "csv.yaml", "t.csv", "csv", size)]
        (root / "csv.yaml").write_text(spec_yaml("t.csv", args.features, "csv"))
        if args.parquet or args.stream:
            if not (root / "t.parquet").exists():
                write_parquet(root / "t.csv", root / "t.parquet")
            (root / "pq.yaml").write_text(spec_yaml("t.parquet", args.features, "parquet"))
            psize = (root / "t.parquet").stat().st_size
            cases.append(("Parquet", root / "pq.yaml", "t.parquet", "parquet", psize))
        print("\n| file | validate | ingest | load + one epoch | peak RSS | peak / file |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        if args.stream:
            return streamed(cases[-1], args.stream)
        for label, spec_path, _, _, file_size in cases:
            for phase in ("validate", "train"):
                found = measure(phase, spec_path)
                name = f"{label} {file_size / MB:,.0f} MB, {phase}"
                print(row(name, size if label == "CSV" else file_size, found), flush=True)
                if "base" in found:
                    print(f"  (after imports: {found['base'] / MB:,.0f} MB)", flush=True)
    finally:
        if args.keep or args.data:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def streamed(case: tuple, limit: str) -> int:
    """The Parquet file trained on in memory, then streamed under `limit`."""
    import pyarrow.parquet as pq

    label, spec_path, data, _, file_size = case
    meta = pq.ParquetFile(spec_path.parent / data).metadata
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    print(f"{meta.num_rows:,} rows in {len(groups)} row groups of up to {max(groups):,} rows")
    for name, cap in ((f"{label} in memory", None), (f"{label} streamed, limit {limit}", limit)):
        found = measure("train", spec_path, cap)
        print(row(f"{name}, {file_size / MB:,.0f} MB", file_size, found), flush=True)
        if "kind" in found:
            print(
                f"  ({found['kind']}; after imports {found['base'] / MB:,.0f} MB; largest "
                f"worker peak {found['worker_peak'] / MB:,.0f} MB; "
                f"val_accuracy {found['val_accuracy']:.3f})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
