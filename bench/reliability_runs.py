"""The runs part of `bench/reliability.py`: training processes killed with SIGKILL at random
moments or stopped with SIGTERM and resumed, diverging runs, and refused imports.

Each function does the thing for real and returns markdown table rows:
(check, tried, handled as intended, failures).
"""

from __future__ import annotations

import io
import math
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from random import Random

import attrs
import torch
from test_failures import (
    ENV,
    ROOT,
    diverging_spec,
    final_model,
    history_without_time,
    long_spec,
    start,
    wait_for_epoch,
)

import tdsl
from tdsl.runs.directories import run
from tdsl.train.checkpoint_files import CheckpointError, read_checkpoint
from tdsl.train.loops import NonFiniteLoss

Row = tuple[str, int, str, str]


def interrupted_runs(folder: Path, chance: Random, runs: int, say: Callable[[str], None]):
    """`runs` runs killed three times each at random moments, and one stopped by SIGTERM,
    each resumed by a new process until it finishes, then compared with a straight run."""
    folder.mkdir(parents=True)
    spec_file = long_spec(folder, epochs=4)
    straight = folder / "straight"
    command = [sys.executable, "-m", "tdsl", "run", str(spec_file), "--out", str(straight)]
    began = time.monotonic()
    subprocess.run(command, capture_output=True, env=ENV, cwd=ROOT, timeout=600, check=True)
    # Kill moments spread over a whole run's duration, start-up included, on this machine.
    duration = time.monotonic() - began
    t = {"identical": 0}
    for index in range(runs):
        say(f"killed run {index + 1} of {runs}")
        directory = folder / f"killed{index}"
        counts = _killed_run(spec_file, directory, chance, 3, duration)
        for key, value in counts.items():
            t[key] = t.get(key, 0) + value
        t["identical"] += bool(counts["finished"]) and _same(directory, straight)
    killed = (
        f"runs killed with SIGKILL at random moments ({runs} runs, up to 3 kills each)",
        t["kills"],
        f"{t['intact']} kills left a checkpoint that matched its checksum and was finite (or "
        f"none yet); {t['resumes']} resumes from a checkpoint, {t['restarts']} restarts before "
        f"a first one; {t['orphans']} temp files of killed writes removed on resume; "
        f"{t['identical']} of {runs} runs ended bitwise identical to an uninterrupted run",
        f"{t['kills'] - t['intact']} corrupt checkpoints, {runs - t['finished']} unfinished, "
        f"{t['finished'] - t['identical']} different, {t['litter']} temp files left",
    )
    say("SIGTERM")
    directory = folder / "terminated"
    process = start(["run", str(spec_file), "--out", str(directory)])
    wait_for_epoch(process, 2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    stopped = process.returncode == 130 and f"tdsl resume {directory}" in err
    stopped = stopped and "Traceback" not in err
    resumed = start(["resume", str(directory)])
    resumed.communicate(timeout=600)
    same = resumed.returncode == 0 and _same(directory, straight)
    terminated = (
        "runs stopped with SIGTERM after epoch 2",
        1,
        f"{int(stopped)} exited 130 naming `tdsl resume`; {int(same)} resumed bitwise identical",
        f"{1 - int(stopped)} unclean stops, {1 - int(same)} different",
    )
    return [killed, terminated]


def _killed_run(
    spec_file: Path, directory: Path, chance: Random, kills: int, duration: float
) -> dict[str, int]:
    """The first kill lands anywhere in the first half of a run (imports, the first
    checkpoint, steps); each later one after the resumed process has written a
    checkpoint of its own, somewhere in the epoch that follows (its steps, or the next
    checkpoint write), so every run is resumed from a checkpoint at least `kills - 1` times."""
    counts = {"kills": 0, "intact": 0, "resumes": 0, "restarts": 0, "finished": 0, "litter": 0}
    counts["orphans"] = 0
    epoch = _epoch_seconds(spec_file, duration)
    process = start(["run", str(spec_file), "--out", str(directory)])
    while counts["kills"] < kills:
        if counts["kills"] == 0:  # start-up or an early epoch: leaves epochs to kill again
            time.sleep(chance.uniform(0.05, 0.5) * duration)
        elif _wait_for_new_epoch(process, directory):
            time.sleep(chance.uniform(0.0, 1.2) * epoch)
        if process.poll() is not None:
            break
        process.kill()
        process.communicate(timeout=60)
        counts["kills"] += 1
        last = directory / "checkpoints" / "last.pt"
        if last.exists():
            counts["intact"] += _loads_finite(last)
            counts["resumes"] += 1
            counts["orphans"] += len(_temporary_files(directory))  # resume removes them
            process = start(["resume", str(directory)])
        else:  # killed before the first checkpoint: nothing to corrupt, start again
            counts["intact"] += 1
            counts["restarts"] += 1
            shutil.rmtree(directory, ignore_errors=True)
            process = start(["run", str(spec_file), "--out", str(directory)])
    process.communicate(timeout=600)
    counts["finished"] = int(process.returncode == 0)
    counts["litter"] = len(_temporary_files(directory))
    return counts


def _temporary_files(directory: Path) -> list[Path]:
    return [p for p in (directory / "checkpoints").iterdir() if p.name.startswith(".")]


def _epoch_seconds(spec_file: Path, duration: float) -> float:
    epochs = tdsl.load(spec_file).train.epochs
    return max(0.2, duration / (epochs + 2))  # start-up takes about two epochs' time


def _epochs_written(directory: Path) -> int:
    try:
        return len((directory / "history.jsonl").read_text().splitlines())
    except OSError:
        return 0


def _wait_for_new_epoch(process: subprocess.Popen, directory: Path) -> bool:
    """Wait until `process` has finished an epoch (its history grew) — False if it ended."""
    before = _epochs_written(directory)
    while process.poll() is None:
        if _epochs_written(directory) > before:
            return True
        time.sleep(0.05)
    return False


def _loads_finite(path: Path) -> bool:
    try:  # its checksum verified too
        kept = read_checkpoint(path)
    except CheckpointError:
        return False
    return all(math.isfinite(float(t.float().sum())) for t in kept["model"].values())


def _same(directory: Path, reference: Path) -> bool:
    if history_without_time(directory) != history_without_time(reference):
        return False
    mine, theirs = final_model(directory), final_model(reference)
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def nan_runs(folder: Path) -> list[Row]:
    """Linear regression with SGD at learning rates that diverge within four epochs."""
    rates = [round(0.3 + 0.1 * i, 1) for i in range(10)]
    stopped = kept = skipped_ok = 0
    for rate in rates:
        spec = attrs.evolve(diverging_spec(), optimizer=tdsl.Optimizer("sgd", lr=rate))
        directory = folder / f"stop{rate}"
        try:
            run(spec, directory, stream=io.StringIO())
        except NonFiniteLoss as exc:
            found = re.search(r"at step \d+ \(epoch (\d+),", str(exc))
            stopped += found is not None
            last = directory / "checkpoints" / "last.pt"
            if found and last.exists() and _loads_finite(last):
                history = torch.load(last, weights_only=True)["history"]
                kept += len(history) == int(found[1]) - 1  # every finite epoch, no more
        skipping = attrs.evolve(spec, train=attrs.evolve(spec.train, on_nan="skip_batch"))
        _, result = run(skipping, folder / f"skip{rate}", stream=io.StringIO())
        skips = sum(row.get("skipped_batches", 0) for row in result.history)
        finite = all(torch.isfinite(t).all() for t in result.state.params.values())
        skipped_ok += len(result.history) == spec.train.epochs and skips > 0 and finite
    n = len(rates)
    what = f"SGD lr {rates[0]} to {rates[-1]}"
    return [
        (
            f"diverging runs, on_nan: stop ({what})",
            n,
            f"{stopped} stopped naming step and epoch; {kept} kept the last good checkpoint",
            f"{n - stopped} ran on, {stopped - kept} lost or damaged the checkpoint",
        ),
        (
            f"diverging runs, on_nan: skip_batch ({what})",
            n,
            f"{skipped_ok} finished every epoch with finite weights, skipped batches counted",
            f"{n - skipped_ok} failed",
        ),
    ]


PACKAGE = """
import pathlib

import numpy as np
import torch
from torch import nn

pathlib.Path(__file__).with_name("IMPORTED").write_text("the module ran")


class Gate(nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.proj = nn.Linear(in_features, in_features)

    def forward(self, x):
        return x * torch.sigmoid(self.proj(x))


class Dice(nn.Module):
    def forward(self, prob, target):
        return 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)


def rings(n=64):
    x = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
    return {"x": x, "y": (np.hypot(x[:, 0], x[:, 1]) < 1.2).astype(np.float32)}
"""

USER_SPEC = """
name: user_code
data: DATA
model:
  inputs: [{shape: [2]}]
  layers: [LAYER, {op: linear, out_features: 1}, sigmoid]
loss: LOSS
"""
RINGS = "{kind: rings, n_positive: 32, n_negative: 32}"
FACTORY = "{kind: python, factory: benchlab.rings, target_kind: binary}"
GATE = "{op: benchlab.Gate, in_features: 2}"
LINEAR = "{op: linear, out_features: 2}"
# (layer, loss, data, how many imports the spec names)
CASES = [
    (GATE, "bce", RINGS, 1),
    (LINEAR, "benchlab.Dice", RINGS, 1),
    (LINEAR, "bce", FACTORY, 1),
    (GATE.replace("benchlab.", "benchlab:"), "bce", RINGS, 1),
    (GATE, "benchlab.Dice", FACTORY, 3),
]


def refused_imports(folder: Path) -> Row:
    """Specs naming user layers, losses and data factories, validated without and with
    `allow_imports`; a look-alike prefix (`bench` for `benchlab`) must not allow anything."""
    package = folder / "benchlab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    sys.path.insert(0, str(folder))
    texts = [
        USER_SPEC.replace("LAYER", layer).replace("LOSS", loss).replace("DATA", data)
        for layer, loss, data, _ in CASES
    ]
    named = 2 * sum(case[-1] for case in CASES)  # with no prefix allowed, and a look-alike
    refused = 0
    for text in texts:
        for allow in ([], ["bench"]):
            report = tdsl.validate(text, allow_imports=allow)
            refused += sum(
                "is not allowed" in d.message and "--allow-import benchlab" in (d.hint or "")
                for d in report.errors
            )
    leaked = int((package / "IMPORTED").exists())  # the module writes it when it runs
    allowed = sum(tdsl.validate(text, allow_imports=["benchlab"]).ok for text in texts)
    return (
        "imports of user code named in a spec (layers, losses, data factories)",
        named,
        f"{refused} refused with the flag that allows them; "
        f"{allowed} of {len(CASES)} specs valid once allowed",
        f"{named - refused} not refused, {leaked} modules run before allowed",
    )
