"""Specs the size of ResNet-50 and GPT-2 small, generated in Python, for validation benchmarks.

Run: python bench/big_specs.py   (prints validate time and peak memory for each)
"""

from __future__ import annotations

import resource
import sys
import time

import tdsl


def resnet50() -> tdsl.Spec:
    layers = [
        tdsl.Layer(
            "conv2d", name="stem", out_channels=64, kernel_size=7, stride=2, padding=3, bias=False
        ),
        tdsl.Layer("batchnorm"),
        tdsl.Layer("relu"),
        tdsl.Layer("maxpool2d", name="pool", kernel_size=3, stride=2, padding=1),
    ]
    previous = "pool"
    for stage, (blocks, width) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)]):
        for block in range(blocks):
            p = f"s{stage}b{block}"
            stride = 2 if block == 0 and stage > 0 else 1
            layers += [
                tdsl.Layer(
                    "conv2d",
                    name=f"{p}_c1",
                    inputs=[previous],
                    out_channels=width,
                    kernel_size=1,
                    bias=False,
                ),
                tdsl.Layer("batchnorm", name=f"{p}_n1"),
                tdsl.Layer("relu", name=f"{p}_r1"),
                tdsl.Layer(
                    "conv2d",
                    name=f"{p}_c2",
                    out_channels=width,
                    kernel_size=3,
                    stride=stride,
                    padding=1,
                    bias=False,
                ),
                tdsl.Layer("batchnorm", name=f"{p}_n2"),
                tdsl.Layer("relu", name=f"{p}_r2"),
                tdsl.Layer(
                    "conv2d", name=f"{p}_c3", out_channels=width * 4, kernel_size=1, bias=False
                ),
                tdsl.Layer("batchnorm", name=f"{p}_n3"),
            ]
            shortcut = previous
            if block == 0:
                layers += [
                    tdsl.Layer(
                        "conv2d",
                        name=f"{p}_down",
                        inputs=[previous],
                        out_channels=width * 4,
                        kernel_size=1,
                        stride=stride,
                        bias=False,
                    ),
                    tdsl.Layer("batchnorm", name=f"{p}_down_n"),
                ]
                shortcut = f"{p}_down_n"
            layers += [
                tdsl.Layer("add", name=f"{p}_sum", inputs=[f"{p}_n3", shortcut]),
                tdsl.Layer("relu", name=f"{p}_out"),
            ]
            previous = f"{p}_out"
    layers += [
        tdsl.Layer("adaptive_avgpool2d", inputs=[previous], output_size=1),
        tdsl.Layer("flatten"),
        tdsl.Layer("linear", out_features=1000),
    ]
    return tdsl.Spec(
        name="resnet50",
        data=tdsl.RandomData(n=8, target=tdsl.Target(kind="class", num_classes=1000)),
        model=tdsl.Model(inputs=[tdsl.Input(shape=[3, 224, 224])], layers=layers),
        loss=tdsl.Loss("cross_entropy"),
        optimizer=tdsl.Optimizer("sgd", lr=0.1, momentum=0.9),
    )


def gpt2_small() -> tdsl.Spec:
    layers = [
        tdsl.Layer("embedding", name="tokens", num_embeddings=50257, embedding_dim=768),
        tdsl.Layer(
            "transformer_encoder",
            name="blocks",
            nhead=12,
            num_layers=12,
            dim_feedforward=3072,
            activation="gelu",
            norm_first=True,
        ),
        tdsl.Layer("layernorm", name="final_norm"),
        tdsl.Layer("select", dim=1, index=-1),
        tdsl.Layer("linear", name="head", out_features=50257, bias=False),
    ]
    return tdsl.Spec(
        name="gpt2_small",
        data=tdsl.RandomData(
            n=8, int_high=50257, target=tdsl.Target(kind="class", num_classes=50257)
        ),
        model=tdsl.Model(inputs=[tdsl.Input(shape=[1024], dtype="int64")], layers=layers),
        loss=tdsl.Loss("cross_entropy"),
        optimizer=tdsl.Optimizer("adamw", lr=3e-4),
    )


def main() -> None:
    for build in (resnet50, gpt2_small):
        spec = build()
        started = time.perf_counter()
        report = tdsl.validate(spec)
        seconds = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{spec.name}: ok={report.ok} params={report.param_count:,} "
            f"validate={seconds:.2f}s peak_rss={peak_mb:.0f}MB"
        )
        if not report.ok:
            print(report.format(), file=sys.stderr)


if __name__ == "__main__":
    main()
