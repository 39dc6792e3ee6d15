"""How tdsl's costs grow: with the number of graph nodes, and with the size of the data set.

(a) Graphs of 10, 100 and 1,000 nodes, as a plain chain of linear/relu layers and as a DAG of
residual blocks (linear, relu, add with the block's input), so name resolution, the
topological sort and the graph forward path are all exercised. Times `tdsl.validate` on the
Spec object, `tdsl.validate` on the same spec as YAML text (parsing and locating included)
and `tdsl.compile`; prints medians and the time per node, which stays flat when the cost is
linear in the number of nodes.

(b) One small model trained with `tdsl.fit` on in-memory rows, N and 10*N of them, next to a
hand-written loop on the same rows, weights and optimizer (one randperm per epoch, batched
index_select, no per-step host sync). Per-step time should not depend on N, and tdsl's should
match the hand-written loop's.

Variants run interleaved, several repetitions; tables report medians and ratios from the
same run.

Run: python bench/scaling.py [--quick] [--repeats 5] [--rows 20000]
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from workloads import tuned_epoch  # bench/ is the script's folder

import tdsl

WIDTH = 16


# --- (a) graph size -------------------------------------------------------------------------


def _graph_spec(name: str, layers: list[tdsl.Layer]) -> tdsl.Spec:
    return tdsl.Spec(
        name=name,
        data=tdsl.RandomData(n=64, target=tdsl.Target(kind="regression", shape=[1])),
        model=tdsl.Model(inputs=[tdsl.Input(name="x", shape=[WIDTH])], layers=layers),
        loss=tdsl.Loss("mse"),
        optimizer=tdsl.Optimizer("adam", lr=1e-3),
        device=tdsl.Device(name="cpu"),
    )


def chain(nodes: int) -> tdsl.Spec:
    """`nodes` layers in sequence: linear, relu, linear, relu, ..., a final linear to 1."""
    layers = [
        tdsl.Layer("linear", out_features=WIDTH) if i % 2 == 0 else tdsl.Layer("relu")
        for i in range(nodes - 1)
    ]
    layers.append(tdsl.Layer("linear", name="head", out_features=1))
    return _graph_spec(f"chain{nodes}", layers)


def dag(nodes: int) -> tdsl.Spec:
    """Residual blocks (linear, relu, add of the block's input) with named edges, padded with
    relus to `nodes` layers, and a final linear to 1."""
    layers: list[tdsl.Layer] = []
    previous = "x"
    block = 0
    while len(layers) + 3 <= nodes - 1:
        p = f"b{block}"
        layers += [
            tdsl.Layer("linear", name=f"{p}_lin", inputs=[previous], out_features=WIDTH),
            tdsl.Layer("relu", name=f"{p}_act"),
            tdsl.Layer("add", name=f"{p}_sum", inputs=[f"{p}_act", previous]),
        ]
        previous, block = f"{p}_sum", block + 1
    while len(layers) < nodes - 1:
        layers.append(tdsl.Layer("relu", name=f"pad{len(layers)}", inputs=[previous]))
        previous = layers[-1].name
    layers.append(tdsl.Layer("linear", name="head", inputs=[previous], out_features=1))
    return _graph_spec(f"dag{nodes}", layers)


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _validate_ok(spec_or_text) -> None:
    report = tdsl.validate(spec_or_text)
    if not report.ok:
        raise SystemExit(report.format())


def measure_graphs(sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    # Warm-up: the first validation pays for imports and torch's lazy initialization.
    tdsl.compile(dag(10))
    for shape, build in (("chain", chain), ("dag", dag)):
        for nodes in sizes:
            spec = build(nodes)
            assert len(spec.model.layers) == nodes
            text = tdsl.dump(spec)
            tasks = {
                "validate": lambda spec=spec: _validate_ok(spec),
                "validate_yaml": lambda text=text: _validate_ok(text),
                "compile": lambda spec=spec: tdsl.compile(spec),
            }
            times: dict[str, list[float]] = {k: [] for k in tasks}
            for _ in range(repeats):
                for key, task in tasks.items():  # interleaved
                    times[key].append(_timed(task))
            row = {"graph": shape, "nodes": nodes}
            row.update({k: statistics.median(v) for k, v in times.items()})
            rows.append(row)
            print(
                f"{shape:5s} {nodes:5d} nodes: "
                + " ".join(f"{k}={row[k] * 1e3:.1f}ms" for k in tasks),
                flush=True,
            )
    return rows


def graph_table(rows: list[dict]) -> str:
    lines = [
        "| graph | nodes | validate (ms) | per node (ms) | validate YAML (ms) | per node (ms)"
        " | compile (ms) | per node (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        n = r["nodes"]
        cells = [r["graph"], str(n)]
        for key in ("validate", "validate_yaml", "compile"):
            cells += [f"{r[key] * 1e3:.1f}", f"{r[key] * 1e3 / n:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- (b) data set size ----------------------------------------------------------------------


def fit_spec(rows: int, epochs: int, batch_size: int) -> tdsl.Spec:
    return tdsl.Spec(
        name=f"teacher{rows}",
        data=tdsl.Teacher(n=rows, features=32, num_classes=4, split=tdsl.Split(train=1.0, val=0.0)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[32])],
            layers=[
                tdsl.Layer("linear", out_features=64),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=64),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=4),
            ],
        ),
        loss=tdsl.Loss("cross_entropy"),
        optimizer=tdsl.Optimizer("adam", lr=1e-3),
        train=tdsl.Train(epochs=epochs, batch_size=batch_size),
        device=tdsl.Device(name="cpu"),
    )


def tdsl_fit(spec: tdsl.Spec, data) -> Callable[[], int]:
    """Compiled and initialized outside the timing: the returned call runs `fit` only."""
    program = tdsl.compile(spec)
    state = program.init()

    def run() -> int:
        result = tdsl.fit(program, state, data)
        assert len(result.history) == spec.train.epochs
        return spec.train.epochs * data.train.num_batches(spec.train.batch_size)

    return run


def hand_loop(spec: tdsl.Spec, data) -> Callable[[], int]:
    """randperm per epoch, index_select per batch; same layers, initial weights, optimizer."""
    program = tdsl.compile(spec)
    net = nn.Sequential(OrderedDict(program.module_for(program.init()).named_children()))
    opt = torch.optim.Adam(net.parameters(), lr=spec.optimizer.lr)
    loss_fn = nn.CrossEntropyLoss()
    x, y = data.train.features[0], data.train.target
    batch = spec.train.batch_size

    def run() -> int:
        for _epoch in range(spec.train.epochs):
            tuned_epoch(net, opt, loss_fn, x, y, batch)
        return spec.train.epochs * data.train.num_batches(batch)

    return run


def measure_data(rows: int, epochs: int, batch_size: int, repeats: int) -> list[dict]:
    sizes = {"N": rows, "10N": 10 * rows}
    specs = {label: fit_spec(n, epochs, batch_size) for label, n in sizes.items()}
    datas = {label: tdsl.load_data(s) for label, s in specs.items()}
    variants = {"tdsl.fit": tdsl_fit, "hand-written": hand_loop}
    times = {(label, v): [] for label in sizes for v in variants}
    totals = {(label, v): [] for label in sizes for v in variants}
    for label in sizes:  # warm-up
        for setup in variants.values():
            setup(specs[label], datas[label])()
    for _ in range(repeats):
        for label in sizes:
            for variant, setup in variants.items():  # interleaved
                run = setup(specs[label], datas[label])
                gc.collect()
                started = time.perf_counter()
                steps = run()
                seconds = time.perf_counter() - started
                totals[(label, variant)].append(seconds)
                times[(label, variant)].append(seconds / steps)
    out = []
    for label, n in sizes.items():
        for variant in variants:
            out.append(
                {
                    "size": label,
                    "rows": n,
                    "variant": variant,
                    "steps": epochs * datas[label].train.num_batches(batch_size),
                    "per_step": statistics.median(times[(label, variant)]),
                    "total": statistics.median(totals[(label, variant)]),
                }
            )
            r = out[-1]
            print(
                f"{label:3s} {variant:12s} {r['per_step'] * 1e6:.0f}us/step "
                f"{r['total']:.2f}s total",
                flush=True,
            )
    return out


def data_table(rows: list[dict]) -> str:
    by = {(r["size"], r["variant"]): r for r in rows}
    lines = [
        "| rows | steps | tdsl.fit (us/step) | hand-written (us/step) | tdsl / hand-written |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in ("N", "10N"):
        t, h = by[(size, "tdsl.fit")], by[(size, "hand-written")]
        lines.append(
            f"| {t['rows']:,} | {t['steps']:,} | {t['per_step'] * 1e6:.0f} | "
            f"{h['per_step'] * 1e6:.0f} | {t['per_step'] / h['per_step']:.2f}x |"
        )
    lines.append("")
    lines.append("| 10N / N | per-step time | total time (10x expected) |")
    lines.append("| --- | ---: | ---: |")
    for variant in ("tdsl.fit", "hand-written"):
        small, big = by[("N", variant)], by[("10N", variant)]
        lines.append(
            f"| {variant} | {big['per_step'] / small['per_step']:.2f}x | "
            f"{big['total'] / small['total']:.1f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rows", type=int, default=20_000, help="N, the smaller data set")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.rows, args.epochs = 2, 2_000, 1
        args.nodes = [n for n in args.nodes if n <= 100]
    torch.set_num_threads(args.threads)
    print(
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; medians of {args.repeats} interleaved repetitions\n",
        flush=True,
    )
    graphs = measure_graphs(args.nodes, args.repeats)
    data = measure_data(args.rows, args.epochs, args.batch_size, args.repeats)
    print("\n### Graph size\n")
    print(graph_table(graphs))
    print(
        f"\n### Data set size (N = {args.rows:,} in-memory rows, {args.epochs} epochs, "
        f"batch {args.batch_size})\n"
    )
    print(data_table(data))


if __name__ == "__main__":
    main()
