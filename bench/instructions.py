"""Instructions, not seconds: tdsl's `fit` against the hand loops of `bench/workloads.py`,
counted by valgrind (callgrind), so the comparison does not depend on the machine's load.

A shared machine's wall-clock and even CPU-time ratios move by several percent from run to
run; the number of instructions a run executes does not (the count is reproducible to a
fraction of a per mille with a fixed hash seed). It is not time — cache misses and branch
mispredictions cost differently — but it shows whether tdsl does more work than the loop a
good engineer writes, and how much.

For each workload and variant, a fresh process under `valgrind --tool=callgrind
--instr-atstart=no` loads the data and runs every variant once (warm-up, uncounted), then
signals; instrumentation is switched on (`callgrind_control -i on`) and the process runs
`--runs` more fits of the variant, which are what is counted. Each process takes a few
minutes (valgrind runs Python ~50x slower), so variants run `--parallel` at a time.

Run: python bench/instructions.py [--only linreg rings] [--eval train] [--runs 1] [--variants ...]
Needs valgrind (`callgrind_control`) on the PATH.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = ("tdsl", "tdsl_compiled", "tuned", "tuned_loss")

# Run inside valgrind: warm every variant, say so, wait to be instrumented, run the variant.
# It leaves with os._exit: the interpreter's shutdown (module teardown, a last garbage
# collection, torch's operator registry coming down) runs hundreds of millions of
# instructions, as many as the fits themselves, and would be counted with them.
CHILD = """
import os, sys, time
sys.path.insert(0, {bench!r})
import torch
torch.set_num_threads(1)
# valgrind cannot run AVX-512 instructions: the compiled variant's kernels are built for
# AVX2, as torch's own kernels pick AVX2 under valgrind.
import torch._inductor.config
torch._inductor.config.cpp.march = "x86-64-v3"
import workloads as W, tdsl
spec = W.for_eval(W.workloads()[{name!r}], {how!r})
data = tdsl.load_data(spec)
fns = {{
    "tdsl": W.tdsl_run,
    "tdsl_compiled": W.tdsl_compiled_run,
    "tuned": W.tuned_run,
    "tuned_loss": W.tuned_loss_run,
}}
for name, fn in fns.items():
    if name != "tdsl_compiled" or {variant!r} == name:  # compiling takes minutes here
        fn(spec, data)
with open({flag!r}, "w") as flag:
    flag.write("ready")
while os.path.exists({flag!r}):
    time.sleep(0.05)
for _ in range({runs}):
    fns[{variant!r}](spec, data)
sys.stdout.flush()
os._exit(0)
"""


def count(name: str, how: str, variant: str, runs: int) -> int:
    """Instructions of `runs` fits of `variant` on workload `name` (evaluation `how`)."""
    with tempfile.TemporaryDirectory() as folder:
        flag = os.path.join(folder, "ready")
        code = CHILD.format(
            bench=str(HERE), name=name, how=how, flag=flag, runs=runs, variant=variant
        )
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={folder}/callgrind.out",
            sys.executable,
            "-c",
            code,
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        while not (os.path.exists(flag) and os.path.getsize(flag)):
            if process.poll() is not None:
                raise SystemExit(f"{name}/{variant}: {process.stdout.read().decode()[-2000:]}")
            time.sleep(0.5)
        subprocess.run(["callgrind_control", "-i", "on", str(process.pid)], capture_output=True)
        os.remove(flag)
        output = process.communicate()[0].decode()
        found = re.search(r"Collected : (\d+)", output)
        if process.returncode or found is None:
            raise SystemExit(f"{name}/{variant} failed:\n{output[-2000:]}")
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=["linreg", "rings"])
    parser.add_argument("--eval", nargs="*", default=["train"], choices=["train", "large"])
    parser.add_argument("--runs", type=int, default=1, help="counted fits per process")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("bench/instructions.py needs valgrind (callgrind_control) installed")
    jobs = [(n, h, v) for n in args.only for h in args.eval for v in args.variants]
    with ThreadPoolExecutor(args.parallel) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: count(*job, args.runs), jobs), strict=True))
    print(table(counts, args.only, args.eval))


def table(counts: dict[tuple[str, str, str], int], names: list[str], evals: list[str]) -> str:
    """Markdown: the tuned loop's count and each other variant's as a ratio to it."""
    others = [v for v in VARIANTS if v != "tuned"]
    lines = [
        "| workload (validation batches) | tuned loop (instructions) | "
        + " | ".join(others)
        + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in others) + " |",
    ]
    for name in names:
        for how in evals:
            tuned = counts.get((name, how, "tuned"))
            cells = [
                "—"
                if (name, how, v) not in counts
                else f"{counts[(name, how, v)]:,}"
                if tuned is None
                else f"{counts[(name, how, v)] / tuned:.4f}x"
                for v in others
            ]
            shown = "—" if tuned is None else f"{tuned:,}"
            lines.append(f"| {name} ({how}) | {shown} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
