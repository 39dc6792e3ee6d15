"""Start-up costs, each in a fresh process: `import torch`, `import tdsl`, and
`tdsl validate` of the gallery specs (`specs/*.yaml`), as the best of several runs
(start-up time is noisy and the best run is the one least disturbed by the rest of the
machine). Exits 1 if validating a spec takes more than `--limit` seconds (0.4) over
`import torch`.

Run: python bench/startup.py [--runs 7] [--limit 0.4] [ring_dnn tabular ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p.stem for p in (ROOT / "specs").glob("*.yaml"))


def _env() -> dict[str, str]:
    # Users' Pythons cache bytecode; some sandboxes turn that off, which would add the
    # compilation of every module to each start.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "OMP_NUM_THREADS": "1"}


def _clock(cpu: bool) -> float:
    if not cpu:
        return time.perf_counter()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)  # of the children waited for
    return used.ru_utime + used.ru_stime


def best_of(command: list[str], runs: int, cpu: bool = False) -> float:
    subprocess.run(command, env=_env(), cwd=ROOT, capture_output=True, check=True)  # warm
    times = []
    for _ in range(runs):
        started = _clock(cpu)
        subprocess.run(command, env=_env(), cwd=ROOT, capture_output=True, check=True)
        times.append(_clock(cpu) - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--limit", type=float, default=0.4, help="seconds over import torch")
    parser.add_argument("specs", nargs="*", default=SPECS, help="names in specs/ (default: all)")
    parser.add_argument(
        "--cpu", action="store_true", help="CPU seconds, not wall-clock (on a busy machine)"
    )
    args = parser.parse_args()
    python = sys.executable

    def best(command: list[str]) -> float:
        return best_of(command, args.runs, args.cpu)

    torch_s = best([python, "-c", "import torch"])
    rows = [("python -c 'import torch'", torch_s)]
    rows.append(("python -c 'import tdsl'", best([python, "-c", "import tdsl"])))
    # torch imports its compiler stack on the first meta-device elementwise op or optimizer
    # step; validation does both, so this is part of any validation's floor.
    rows.append(("python -c 'import torch._dynamo'", best([python, "-c", "import torch._dynamo"])))
    validations = []
    for name in args.specs:
        command = [python, "-m", "tdsl", "validate", f"specs/{name}.yaml"]
        validations.append((f"tdsl validate specs/{name}.yaml", best(command)))
    rows += validations
    print(
        f"Best of {args.runs} runs, {'CPU' if args.cpu else 'wall-clock'} seconds, "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores\n"
    )
    print("| command | seconds | over `import torch` |")
    print("| --- | --- | --- |")
    for label, seconds in rows:
        print(f"| `{label}` | {seconds:.2f} | {seconds - torch_s:+.2f} |")
    over = [label for label, seconds in validations if seconds - torch_s > args.limit]
    if over:
        print(f"\nover the {args.limit:g} s budget: " + ", ".join(over))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
