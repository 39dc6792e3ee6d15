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

Run: python bench/instructions.py [--only linreg rings] [--eval train] [--runs 1]
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
VARIANTS = ("tdsl", "tuned", "tuned_loss")

# Run inside valgrind: warm every variant, say so, wait to be instrumented, run the variant.
CHILD = """
import os, sys, time
sys.path.insert(0, {bench!r})
import torch
torch.set_num_threads(1)
import workloads as W, tdsl
spec = W.for_eval(W.workloads()[{name!r}], {how!r})
data = tdsl.load_data(spec)
fns = {{"tdsl": W.tdsl_run, "tuned": W.tuned_run, "tuned_loss": W.tuned_loss_run}}
for fn in fns.values():
    fn(spec, data)
with open({flag!r}, "w") as flag:
    flag.write("ready")
while os.path.exists({flag!r}):
    time.sleep(0.05)
for _ in range({runs}):
    fns[{variant!r}](spec, data)
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
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("bench/instructions.py needs valgrind (callgrind_control) installed")
    jobs = [(n, h, v) for n in args.only for h in args.eval for v in VARIANTS]
    with ThreadPoolExecutor(args.parallel) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: count(*job, args.runs), jobs), strict=True))
    print(
        "| workload (validation batches) | tuned loop (instructions) | tdsl "
        "| tuned loop without metrics |"
    )
    print("| --- | ---: | ---: | ---: |")
    for name in args.only:
        for how in args.eval:
            tuned = counts[(name, how, "tuned")]
            print(
                f"| {name} ({how}) | {tuned:,} | {counts[(name, how, 'tdsl')] / tuned:.4f}x "
                f"| {counts[(name, how, 'tuned_loss')] / tuned:.4f}x |"
            )


if __name__ == "__main__":
    main()
