"""What purity costs: tdsl's pure train_step and its donating form against a hand-written
in-place PyTorch step, on the same model, batches and optimizer, measured in one run.

Run: python bench/pure_step.py   (prints per-step times and ratios to the hand-written step)

The variants take turns in short blocks of steps, in a rotating order, and each ratio is the
median over rounds of that round's ratio: on a shared machine a busy spell then slows the
variants it is compared against alike.
"""

from __future__ import annotations

import statistics
import time
from collections import OrderedDict

import torch
from torch import nn

import tdsl

WIDE = [64, 512, 512, 10]


def spec() -> tdsl.Spec:
    return tdsl.Spec(
        name="mlp_wide",
        data=tdsl.RandomData(n=50_000, target=tdsl.Target(kind="class", num_classes=10)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[WIDE[0]])],
            layers=[
                tdsl.Layer("linear", out_features=WIDE[1]),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=WIDE[2]),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=WIDE[3]),
            ],
        ),
        loss=tdsl.Loss("cross_entropy"),
        optimizer=tdsl.Optimizer("adam", lr=1e-3),
        train=tdsl.Train(batch_size=256),
        device=tdsl.Device(name="cpu"),
    )


def main(rounds: int = 40, block: int = 20) -> None:
    torch.set_num_threads(2)
    experiment = spec()
    program = tdsl.compile(experiment)
    data = tdsl.load_data(experiment)
    batches = [b for _, b in zip(range(block), data.train.batches(256, order_seed=0), strict=False)]

    torch.manual_seed(0)
    net = nn.Sequential(
        OrderedDict(
            linear1=nn.Linear(64, 512),
            relu1=nn.ReLU(),
            linear2=nn.Linear(512, 512),
            relu2=nn.ReLU(),
            linear3=nn.Linear(512, 10),
        )
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()

    def hand_written(n: int) -> None:
        for batch in batches[:n]:
            loss = criterion(net(batch.features[0]), batch.target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    state = {"pure": program.init(), "donated": program.init()}

    def pure(n: int) -> None:
        for batch in batches[:n]:
            state["pure"], _ = program.train_step(state["pure"], batch)

    def donated(n: int) -> None:
        for batch in batches[:n]:
            state["donated"], _ = program.train_step(state["donated"], batch, donate=True)

    variants = {"hand-written": hand_written, "tdsl pure": pure, "tdsl donated": donated}
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(rounds + 1):  # round 0 warms up
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            variants[name](block)
            if index:
                times[name].append((time.perf_counter() - started) / block)
    base = times["hand-written"]
    print(f"medians of {rounds} interleaved rounds of {block} steps per variant")
    for name, samples in times.items():
        ratio = statistics.median(t / b for t, b in zip(samples, base, strict=True))
        print(f"{name:14s} {statistics.median(samples) * 1e6:8.1f} us/step  {ratio:5.2f}x")


if __name__ == "__main__":
    main()
