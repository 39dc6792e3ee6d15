"""`--calibrate`: a few real training steps on this machine, timed, so that the FLOPs of an
epoch and a run become times. Only what a measurement gives: no assumed device speed."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from tdsl import spec as S
from tdsl.data import load_data
from tdsl.train.program import compile


def step_seconds(
    spec: S.Spec, rows: int, allow_imports: Sequence[str] = (), steps: int = 3
) -> float:
    """Median seconds of one training step of `rows` rows, after one untimed warm-up step,
    on the spec's device."""
    program = compile(spec, allow_imports)
    train = load_data(spec, allow_imports=allow_imports).train.to(program.device)
    state, owned, times = program.init(), False, []
    while len(times) <= steps:
        for batch in train.batches(rows, len(times)):
            started = time.perf_counter()
            state, _ = program.train_step(state, batch, donate=owned)
            if program.device.type == "cuda":
                torch.cuda.synchronize(program.device)
            times.append(time.perf_counter() - started)
            owned = True
            if len(times) > steps:
                break
    timed = sorted(times[1:])
    return timed[len(timed) // 2]
