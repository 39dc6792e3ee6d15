"""The compiled training step alone: tdsl's `train_step` with `train.compile: true` against
a tuned hand-written eager step (forward, loss, `zero_grad(set_to_none=True)`, backward,
Adam's `step()`), on the same batches, from the same weights, per workload of
`bench/workloads.py` (rings and linreg by default).

`bench/workloads.py` compares whole `fit`s (batching, validation and metrics included);
this isolates the per-step time issue 23 asks the compiled step to halve. Compilation
happens in a warm-up round, reported on its own. Variants run in interleaved blocks of
steps in a rotating order; each ratio is the median over rounds of that round's ratio,
with the range. The check at the end stops the benchmark unless both variants, after the
same steps, hold the same weights (to float tolerance): they must do the same work.

Run: python bench/compiled_step.py [--only rings linreg] [--rounds 30] [--block 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import attrs
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads as W  # noqa: E402  (a sibling script, not a package)

import tdsl  # noqa: E402
from tdsl.data import Batch  # noqa: E402


def measure(name: str, rounds: int, block: int) -> dict[str, float]:
    base = W.workloads()[name]
    W.check_same_start(base)
    spec = attrs.evolve(base, train=attrs.evolve(base.train, compile=True))
    data = tdsl.load_data(base)
    size = base.train.batch_size
    x, y = data.train.features[0], data.train.target
    batches = [
        Batch((x[i : i + size],), y[i : i + size]) for i in range(0, len(y) - size + 1, size)
    ]
    started = time.perf_counter()
    program = tdsl.compile(spec)
    state = program.init()
    net = W.hand_module(base)  # the same initial weights as tdsl's (checked below)
    opt = torch.optim.Adam(net.parameters(), lr=base.optimizer.lr)
    loss_fn = W._loss_fn(base)
    targets = [W._target(base, b.target) for b in batches]
    box = {"state": state, "at": 0}

    def compiled(n: int) -> None:
        for _ in range(n):
            batch = batches[box["at"] % len(batches)]
            box["state"], _ = program.train_step(box["state"], batch, donate=True)
            box["at"] += 1

    tuned_at = {"at": 0}

    def tuned(n: int) -> None:
        for _ in range(n):
            i = tuned_at["at"] % len(batches)
            loss = loss_fn(net(batches[i].features[0]), targets[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tuned_at["at"] += 1

    compiled(2)  # the first step is eager (it makes Adam's state), the second compiles
    compile_s = time.perf_counter() - started
    tuned(2)
    variants = {"compiled": compiled, "tuned": tuned}
    names = list(variants)
    times: dict[str, list[float]] = {v: [] for v in names}
    for index in range(rounds + 1):  # round 0 warms up
        for variant in names[index % 2 :] + names[: index % 2]:
            begun = time.perf_counter()
            variants[variant](block)
            if index:
                times[variant].append((time.perf_counter() - begun) / block)
    ratios = sorted(c / t for c, t in zip(times["compiled"], times["tuned"], strict=True))
    check_same_weights(name, box["state"], net)
    return {
        "compiled_us": statistics.median(times["compiled"]) * 1e6,
        "tuned_us": statistics.median(times["tuned"]) * 1e6,
        "ratio": statistics.median(ratios),
        "low": ratios[0],
        "high": ratios[-1],
        "compile_s": compile_s,
    }


def check_same_weights(name: str, state, net: torch.nn.Module) -> None:
    """Stop unless the two variants, after the same steps on the same batches, hold the same
    weights: otherwise they would not be doing the same work."""
    ours, theirs = list(state.params.values()), list(net.parameters())
    for index, (mine, value) in enumerate(zip(ours, theirs, strict=True)):
        if not torch.allclose(mine, value.detach(), rtol=1e-3, atol=1e-5):
            largest = float((mine - value.detach()).abs().max())
            raise SystemExit(
                f"{name}: after the same steps the compiled step's parameter {index} differs "
                f"from the hand-written step's (largest difference {largest:.3g})"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=["rings", "linreg"])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| workload | tuned eager step (µs) | compiled train_step (µs) | ratio (range) ", end="")
    print("| compile (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in args.only:
        r = measure(name, args.rounds, args.block)
        print(
            f"| {name} | {r['tuned_us']:.0f} | {r['compiled_us']:.0f} | {r['ratio']:.2f}x "
            f"({r['low']:.2f}–{r['high']:.2f}) | {r['compile_s']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
