"""Files in a run's checkpoint place that are not tdsl checkpoints: one line naming the
file, never a KeyError, a TypeError or torch's advice to load with weights_only=False."""

import os
import pickle
from pathlib import Path

import pytest
import torch

import tdsl
from tdsl.runs.cli import main
from tdsl.runs.directories import run


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    spec = tdsl.Spec(
        name="tiny",
        data=tdsl.Rings(n_positive=20, n_negative=20, split=tdsl.Split(train=0.5, val=0.5)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])], layers=[tdsl.Layer("linear", out_features=1)]
        ),
        loss=tdsl.Loss("bce_with_logits"),
        optimizer=tdsl.Optimizer("sgd", lr=0.1),
        train=tdsl.Train(epochs=1, batch_size=20),
    )
    return run(spec, tmp_path_factory.mktemp("r") / "run", progress=False).directory


class Payload:
    """What a malicious checkpoint holds: unpickling it would run `os.system`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _eval_says(directory: Path, checkpoint, capsys) -> str:
    path = directory / "checkpoints" / "best.pt"
    saved = path.read_bytes()
    # A file put there by hand has no checksum beside it (one that does would be refused
    # as damaged before its layout is read).
    checksum = path.with_name("best.pt.sha256")
    saved_checksum = checksum.read_bytes()
    checksum.unlink()
    try:
        if isinstance(checkpoint, bytes):
            path.write_bytes(checkpoint)
        else:
            torch.save(checkpoint, path)
        assert main(["eval", str(directory)]) == 1
    finally:
        path.write_bytes(saved)
        checksum.write_bytes(saved_checksum)
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize(
    ("checkpoint", "why"),
    [
        ({"layer.weight": torch.ones(2)}, "it holds only tensors: a bare state_dict"),
        ([torch.ones(2)], "it holds a list, not the mapping a run's checkpoint is"),
        (torch.ones(2), "it holds a tensor, not the mapping"),
        ({"state": {}, "history": []}, "no 'spec', 'callbacks', 'checkpointer', 'stop_reason'"),
    ],
)
def test_a_foreign_layout_is_named_in_one_line(finished, checkpoint, why, capsys):
    said = _eval_says(finished, checkpoint, capsys)
    assert said.startswith(f"error: {finished}/checkpoints/best.pt is not a tdsl checkpoint (")
    assert why in said


def test_wrongly_typed_entries_are_named(finished, capsys):
    good = torch.load(finished / "checkpoints" / "best.pt", weights_only=True)
    said = _eval_says(finished, {**good, "spec": 3}, capsys)
    assert "(its 'spec' entry is a int, expected text)" in said
    said = _eval_says(finished, {**good, "state": {"params": {}}}, capsys)
    assert "its 'state' entry has no 'buffers', 'optimizer'" in said


@pytest.mark.parametrize("how", ["torch.save", "pickle.dumps"])
def test_a_malicious_pickle_is_not_loaded_and_the_message_is_one_line(
    finished, tmp_path, capsys, how
):
    marker = tmp_path / "ran.marker"
    payload = {"spec": Payload(marker)}
    said = _eval_says(finished, payload if how == "torch.save" else pickle.dumps(payload), capsys)
    assert not marker.exists()
    assert said.startswith(
        f"error: {finished}/checkpoints/best.pt is not a tdsl checkpoint (it holds Python "
        "objects beyond tensors); it was not loaded, since loading it could run code"
    )
    assert said.endswith("checkpoints/last.pt is intact: use it with --checkpoint last")
    assert "weights_only" not in said
