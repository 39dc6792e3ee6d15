"""Validation of the big model specs in specs/models/ (ResNet-50, GPT-2 small, BERT-base):
time and peak memory, each in a fresh process so one's imports and caches do not help the
next. Nothing is allocated: the point is that a 124M-parameter spec checks in seconds.

Then the whole command `tdsl summary SPEC --cost` (memory and FLOPs of a training step,
traced on meta tensors), wall time in a fresh process, imports included, interleaved with
a bare `import torch` for reference. The target: under 3 s for GPT-2 small.

Run: python bench/big_specs.py [--repeats N]   (median and range of N runs per spec)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ["resnet50", "gpt2_small", "bert_base"]

# Runs in a child: import, validate, report wall time and the peak resident set.
CHILD = """
import json, resource, sys, time
started = time.perf_counter()
import tdsl
import tdsl.check.pipeline  # `import tdsl` is lazy: load what validate needs before timing
imported = time.perf_counter()
report = tdsl.validate(sys.argv[1])
done = time.perf_counter()
print(json.dumps({
    "ok": report.ok, "params": report.param_count,
    "import_s": imported - started, "validate_s": done - imported,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def measure(spec: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(spec)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| spec | parameters | validate s (median, range) | peak RSS MB (median) |")
    print("| --- | --- | --- | --- |")
    for name in SPECS:
        # Interleaved would be fairer for comparisons; these are absolute figures per spec.
        runs = [measure(ROOT / "specs" / "models" / f"{name}.yaml") for _ in range(args.repeats)]
        if not all(r["ok"] for r in runs):
            sys.exit(f"{name}: the spec does not validate")
        seconds = [r["validate_s"] for r in runs]
        print(
            f"| {name} | {runs[0]['params']:,} | {statistics.median(seconds):.2f} "
            f"({min(seconds):.2f}-{max(seconds):.2f}) | "
            f"{statistics.median(r['peak_mb'] for r in runs):.0f} |"
        )
    cost_rows(args.repeats)


def wall_seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - started


def cost_rows(repeats: int) -> None:
    print("\n| command | wall s (median, range) | `import torch` s (median) |")
    print("| --- | --- | --- |")
    for name in SPECS:
        spec = f"specs/models/{name}.yaml"
        command = [sys.executable, "-m", "tdsl", "summary", spec, "--cost"]
        pairs = [
            (wall_seconds(command), wall_seconds([sys.executable, "-c", "import torch"]))
            for _ in range(repeats)
        ]
        seconds = [whole for whole, _ in pairs]
        print(
            f"| `tdsl summary {spec} --cost` | {statistics.median(seconds):.2f} "
            f"({min(seconds):.2f}-{max(seconds):.2f}) | "
            f"{statistics.median(torch for _, torch in pairs):.2f} |"
        )


if __name__ == "__main__":
    main()
