"""Data-parallel training (device.strategy: ddp): two CPU processes with gloo, launched by
`tdsl run --nproc 2` or by torchrun itself, against the same spec trained in one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import attrs
import numpy as np
import pytest
import torch
from helpers import Interrupt
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

import tdsl
from tdsl.data import FileData, TensorData, load_data
from tdsl.data.tensors import Part
from tdsl.runs.cli import main
from tdsl.runs.directories import evaluate_run, run
from tdsl.runs.launcher import _failures
from tdsl.runs.resuming import resume
from tdsl.train.callbacks import EarlyStopping
from tdsl.train.distributed import World
from tdsl.train.standard import BestState, compose

# A user layer that passes its input through, except on the rank and training forward pass
# named by TRIP_RANK and TRIP_AT, where it raises (TRIP=raise) or stops answering (TRIP=hang).
LAYERS = """
import os
import time

import torch


class Tripwire(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.passes = 0

    def forward(self, x):
        if self.training and x.device.type != "meta" and torch.is_grad_enabled():
            self.passes += 1
            here = os.environ.get("RANK", "0") == os.environ.get("TRIP_RANK")
            if here and self.passes == int(os.environ.get("TRIP_AT", "0")):
                if os.environ.get("TRIP") == "hang":
                    time.sleep(120)
                raise RuntimeError(f"tripwire on rank {os.environ['RANK']} at pass {self.passes}")
        return x
"""

# 211 training rows in batches of 33, shared 17 / 16 (the last 13 rows 7 / 6) and run as
# two micro-batches each; early stopping (val_loss never improves by 10) ends it after epoch 3.
SPEC = """
name: ddp_rings
seed: 5
data: {kind: rings, n_positive: 150, n_negative: 151, split: {train: 0.7, val: 0.3}}
model:
  inputs: [{shape: [2]}]
  layers:
    - {op: linear, out_features: 8}
    - relu
    - {op: ddplayers.Tripwire}
    - {op: linear, out_features: 1}
loss: {kind: bce_with_logits, regularizers: [{kind: l2, weight: 0.001}]}
optimizer: {kind: adam, lr: 0.02}
metrics: [accuracy, auroc]
train:
  epochs: 4
  batch_size: 33
  accumulate: 2
  clip_norm: 1.0
  early_stopping: {monitor: val_loss, patience: 2, min_delta: 10}
device: {name: cpu, strategy: ddp, uneven_batches: true}
"""
ALLOW = ["ddplayers"]
LIMIT = 120  # seconds any launch may take before the test fails instead of hanging


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    (folder / "ddplayers.py").write_text(textwrap.dedent(LAYERS))
    (folder / "spec.yaml").write_text(SPEC)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        yield folder


def tdsl_cli(workspace, *args: str, trip: dict[str, str] | None = None, torchrun: bool = False):
    """Run `python -m tdsl ARGS` (or torchrun with them) in a fresh process:
    (completed process, seconds)."""
    launched = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_ERROR_FILE")
    env = {k: v for k, v in os.environ.items() if k not in launched}
    # No PYTHONPATH naming the workspace: `python -m tdsl` finds ddplayers.py in the working
    # directory, and the processes `--nproc 2` starts must find it from there too.
    env.update(OMP_NUM_THREADS="1", **(trip or {}))
    launcher = []
    if torchrun:  # as on several machines (here one, on a free port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        launcher = ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2"]
        launcher += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}"]
    command = [sys.executable, *launcher, "-m", "tdsl", *args]
    started = time.monotonic()
    done = subprocess.run(
        command, env=env, cwd=workspace, capture_output=True, text=True, timeout=LIMIT
    )
    return done, time.monotonic() - started


def last_model(directory) -> dict[str, torch.Tensor]:
    return torch.load(directory / "checkpoints" / "last.pt", weights_only=True)["model"]


def without_time(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def assert_same_training(history, expected_history, model, expected_model):
    assert len(history) == len(expected_history)
    for row, expected in zip(without_time(history), without_time(expected_history), strict=True):
        assert row == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert model.keys() == expected_model.keys()  # plain parameter names, no `module.`
    for name, tensor in expected_model.items():
        torch.testing.assert_close(model[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def single(workspace):
    """The spec trained in this one process (ddp without a launcher trains alone)."""
    directory, result = run(
        tdsl.load(workspace / "spec.yaml"), workspace / "single", allow_imports=ALLOW
    )
    return directory, result


@pytest.fixture(scope="module")
def two_processes(workspace):
    done, _ = tdsl_cli(
        workspace, "run", "spec.yaml", "--nproc", "2", "--out", "two", "--allow-import", "ddplayers"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return workspace / "two", done


def test_two_processes_reach_the_weights_and_metrics_of_one(single, two_processes):
    single_dir, result = single
    directory, _ = two_processes
    lines = (directory / "history.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    assert_same_training(history, result.history, last_model(directory), last_model(single_dir))


def test_only_rank_zero_prints_and_reports(two_processes):
    directory, done = two_processes
    assert done.stdout.count("run directory:") == 1
    assert done.stderr.count("epoch 1/4") == 1 and done.stderr.count("epoch 3/4") == 1
    # Every process stopped after epoch 3 (one that went on would have failed the run).
    assert "epoch 4/4" not in done.stderr
    assert done.stderr.count("stopped: early stopping: val_loss has not improved") == 1
    assert "ddp: 2 process(es), backend gloo" in done.stderr
    assert sorted(p.name for p in directory.iterdir()) == [
        ".tdsl.lock",  # rank 0's claim on the directory
        "checkpoints",
        "data_fingerprints.json",
        "final.json",
        "history.csv",
        "history.jsonl",
        "spec.yaml",
        "summary.txt",
    ]


def test_other_ranks_decide_but_write_nothing(workspace):
    spec = tdsl.load(workspace / "spec.yaml")
    composed = compose(spec, directory=workspace / "x", spec_text="", lead=False)
    assert [type(c) for c in composed.ordered] == [EarlyStopping, BestState]
    assert len(composed.stateful) == 2  # a checkpoint's callback state still loads on every rank
    assert not (workspace / "x").exists()


def test_a_ddp_checkpoint_evaluates_in_one_process(two_processes):
    directory, _ = two_processes
    last = torch.load(directory / "checkpoints" / "last.pt", weights_only=True)["history"][-1]
    val = evaluate_run(directory, "last", ALLOW)["val"]
    assert val == pytest.approx(
        {k.removeprefix("val_"): v for k, v in last.items() if k.startswith("val_")}, rel=1e-6
    )


def test_a_run_moves_between_one_and_two_processes_through_a_crash(workspace, single):
    """Epoch 1 in this process; epoch 2 resumed in two (`tdsl resume --nproc 2`), where rank
    1 crashes in epoch 3; epoch 3 again in this process, from the two processes' checkpoint.
    Every hand-over keeps the training of an uninterrupted single process."""
    spec = tdsl.load(workspace / "spec.yaml")
    with pytest.raises(KeyboardInterrupt):
        run(spec, workspace / "moved", callbacks=[Interrupt()], allow_imports=ALLOW)
    # Two forward passes a step, seven steps an epoch: pass 19 is in epoch 3's third step.
    trip = {"TRIP": "raise", "TRIP_RANK": "1", "TRIP_AT": "19"}
    args = ["resume", "moved", "--nproc", "2", "--allow-import", "ddplayers"]
    done, seconds = tdsl_cli(workspace, *args, trip=trip)
    assert done.returncode == 1
    assert seconds < 60
    assert "RuntimeError: tripwire on rank 1 at pass 19" in done.stderr
    assert "error: process 1 of 2 failed: RuntimeError: tripwire on rank 1" in done.stderr
    two = torch.load(workspace / "moved" / "checkpoints" / "last.pt", weights_only=True)
    assert two["state"]["epoch"] == 2
    result = resume(workspace / "moved", allow_imports=ALLOW)
    single_dir, expected = single
    model = result.state.model_state_dict()
    assert_same_training(result.history, expected.history, model, last_model(single_dir))


def test_the_launcher_names_the_process_that_raised_not_one_that_lost_it(tmp_path):
    """torchrun's failure timestamps are whole seconds, and of two in one second it takes the
    one it noticed first, checking in rank order: rank 0, which lost the others to rank 1's
    crash and exited moments after it, was named (the test above, now and then)."""
    error = "RuntimeError: tripwire on rank 1 at pass 19"
    record = {"message": error, "extraInfo": {"py_callstack": "", "timestamp": "1700000000"}}
    (tmp_path / "1.json").write_text(json.dumps({"message": record}))
    lost = ProcessFailure(local_rank=0, pid=10, exitcode=1, error_file=str(tmp_path / "0.json"))
    raised = ProcessFailure(local_rank=1, pid=11, exitcode=1, error_file=str(tmp_path / "1.json"))
    failed = ChildFailedError("tdsl", {0: lost, 1: raised})
    lost.timestamp = raised.timestamp  # no record: when the launcher noticed it exit
    assert failed.get_first_failure()[0] == 0
    assert _failures(failed, 2) == (
        f"process 1 of 2 failed: {error}; then process(es) 0 stopped; its output is above"
    )
    lost.timestamp -= 1  # a second before: the earliest failure is still the first
    assert _failures(failed, 2).startswith("process 0 of 2 failed (exit code 1); then process")


def test_a_process_that_stops_answering_times_out_under_torchrun(workspace):
    trip = {"TRIP": "hang", "TRIP_RANK": "1", "TRIP_AT": "3"}
    args = ["run", "spec.yaml", "--out", "hung", "--set", "device.timeout=3"]
    done, seconds = tdsl_cli(
        workspace, *args, "--allow-import", "ddplayers", trip=trip, torchrun=True
    )
    assert done.returncode != 0
    assert seconds < 60  # not the 120 s the silent process sleeps
    assert "error: process 0 of 2 lost the others during a collective operation" in done.stderr
    assert "did not answer within device.timeout seconds" in done.stderr


# --- validation ------------------------------------------------------------------------------


def spec_text(batch: int = 32, **device) -> str:
    """SPEC without the user layer, with this batch_size and device (cpu, ddp, ...)."""
    fields = {"name": "cpu", "strategy": "ddp", **device}
    line = ", ".join(f"{k}: {v}" for k, v in fields.items())
    text = SPEC.replace("{op: ddplayers.Tripwire}", "{op: relu}")
    text = text.replace("batch_size: 33", f"batch_size: {batch}")
    return text.replace(
        "device: {name: cpu, strategy: ddp, uneven_batches: true}", f"device: {{{line}}}"
    )


def messages(report) -> list[str]:
    return [f"{d.severity} {'.'.join(map(str, d.path))}: {d.message}" for d in report.diagnostics]


def test_validate_checks_the_batch_against_the_number_of_processes():
    report = tdsl.validate(spec_text(33), world_size=2)
    assert messages(report) == [
        "error train.batch_size: batch_size 33 is the global batch and does not divide "
        "evenly among 2 processes"
    ]
    assert report.errors[0].hint == "use a multiple of 2, or set device.uneven_batches: true"
    uneven = spec_text(33, uneven_batches="true")
    assert tdsl.validate(uneven, world_size=2).ok
    assert tdsl.validate(spec_text(33)).ok  # unknown
    tiny = tdsl.validate(spec_text(3, uneven_batches="true"), world_size=4)
    assert "smaller than the 4 processes" in tiny.errors[0].message
    # 211 rows in batches of 30 leave 1 row, which two processes cannot share.
    short = tdsl.validate(spec_text(30), world_size=2)
    assert short.ok and "last batch of each epoch has 1 row(s)" in short.warnings[0].message


def test_validate_reads_the_number_of_processes_from_the_launcher(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    report = tdsl.validate(spec_text(30))
    assert "does not divide evenly among 4 processes" in report.errors[0].message
    single = tdsl.validate(spec_text().replace("strategy: ddp", "strategy: single"))
    assert messages(single) == [
        "error device.strategy: 4 processes cannot share a run whose strategy is single: "
        "each would train alone"
    ]


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        (
            {"backend": "nccl"},
            "error device.backend: backend nccl needs CUDA devices; this run is on the CPU",
        ),
        (
            {"name": "mps"},
            "error device.name: strategy ddp cannot use mps: torch.distributed has no "
            "backend for it",
        ),
        (
            {"name": "cuda:1"},
            "error device.name: with strategy ddp each process uses the GPU of its local "
            "rank; cuda:1 would put every process on one GPU",
        ),
    ],
)
def test_validate_refuses_impossible_devices(device, expected):
    assert expected in messages(tdsl.validate(spec_text(**device)))


def test_run_refuses_an_invalid_spec_before_launching(workspace, tmp_path, capsys):
    (tmp_path / "odd.yaml").write_text(spec_text(33))
    code = main(["run", str(tmp_path / "odd.yaml"), "--nproc", "2", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1
    assert "does not divide evenly among 2 processes" in err and "not started" in err
    assert not (tmp_path / "r").exists()


def test_ddp_without_a_launcher_trains_alone(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(spec_text().replace("epochs: 4", "epochs: 1"))
    assert main(["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "r")]) == 0
    assert "note: strategy ddp with one process trains alone" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_nproc_must_be_a_positive_count(value, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["validate", "spec.yaml", "--nproc", value])
    assert stopped.value.code == 2
    assert "expected a positive number of processes" in capsys.readouterr().err


# --- sharing batches ---------------------------------------------------------------------------


def shares(make, world: int, training: bool, batch: int = 7, seed: int | None = 11):
    return [list(make(Part(rank, world, training)).batches(batch, seed)) for rank in range(world)]


@pytest.mark.parametrize("kind", ["tensors", "files"])
def test_each_process_takes_its_slice_of_every_global_batch(kind, tmp_path):
    rows = torch.arange(23, dtype=torch.float32).reshape(-1, 1)
    if kind == "tensors":
        data = TensorData((rows,), rows.reshape(-1))
    else:  # a folder of .npy files, read batch by batch
        np.save(tmp_path / "x.npy", rows.numpy())
        np.save(tmp_path / "y.npy", rows.reshape(-1).numpy())
        data = load_data(
            tdsl.load(
                f"name: t\ndata: {{kind: tensors, file: {tmp_path}, target_kind: regression, "
                "workers: 0, split: {train: 1.0}}\nmodel: {inputs: [{shape: [1]}], layers: "
                "[{op: linear, out_features: 1}]}\nloss: mse\n"
            )
        ).train
        assert isinstance(data, FileData)

    def make(part):
        return attrs.evolve(data, part=part)

    whole = list(make(None).batches(7, 11))  # the shuffled rows in batches of 7, 7, 7, 2

    def sizes(parts):
        return [[len(batch.target) for batch in part] for part in parts]

    def joined(parts, number):
        return torch.cat([part[number].target for part in parts if number < len(part)])

    # Training: every process takes part in every step, so the 2-row batch is left out.
    parts = shares(make, 3, training=True)
    assert sizes(parts) == [[3, 3, 3], [2, 2, 2], [2, 2, 2]]
    assert [make(Part(rank, 3)).num_batches(7) for rank in range(3)] == [3, 3, 3]
    for number, batch in enumerate(whole[:3]):
        assert torch.equal(joined(parts, number), batch.target)
    # Evaluation: every row once; the third process has no share of the last batch.
    parts = shares(make, 3, training=False)
    assert sizes(parts) == [[3, 3, 3, 1], [2, 2, 2, 1], [2, 2, 2]]
    for number, batch in enumerate(whole):
        assert torch.equal(joined(parts, number), batch.target)


def test_ranks_draw_their_own_dropout_streams_and_replay_them():
    state = tdsl.compile(tdsl.load(spec_text())).init()
    one, two = (World(rank, 3, torch.device("cpu")) for rank in (1, 2))
    assert World(0, 3, torch.device("cpu")).rank_rng(state, 5) is state
    first, again = one.rank_rng(state, 5), one.rank_rng(state, 5)
    assert torch.equal(first.rng[0], again.rng[0])
    assert not torch.equal(first.rng[0], two.rank_rng(state, 5).rng[0])
    assert not torch.equal(first.rng[0], state.rng[0])
