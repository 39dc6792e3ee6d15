"""`--set` over shorthand forms, list appends (`+=`) and key removal (`~PATH`)."""

from pathlib import Path

import pytest

from tdsl.runs.cli import main
from tdsl.spec.load_dump import read_spec
from tdsl.spec.overrides import apply_overrides, shorthand_key

RING = str(Path(__file__).resolve().parent.parent / "specs" / "ring_dnn.yaml")


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (("device",), "name"),
        (("loss",), "kind"),
        (("metrics", 0), "kind"),
        (("model", "layers", 1), "op"),
        (("optimizer", "schedule"), "kind"),
        (("data", "columns", 0), "name"),
        (("train",), None),
        (("model", "nope"), None),
    ],
)
def test_shorthand_keys_follow_the_spec_classes(path, key):
    assert shorthand_key(path) == key


def test_a_nested_override_writes_the_shorthand_out_first():
    data = {"device": "auto", "loss": "bce", "metrics": ["accuracy"], "model": {"layers": ["relu"]}}
    changed, problems = apply_overrides(
        data, ["device.strategy=ddp", "loss.pos_weight=2", "metrics[0].threshold=0.3"]
    )
    assert not problems
    assert changed["device"] == {"name": "auto", "strategy": "ddp"}
    assert changed["loss"] == {"kind": "bce", "pos_weight": 2}
    assert changed["metrics"] == [{"kind": "accuracy", "threshold": 0.3}]
    changed, _ = apply_overrides(data, ["model.layers[0].inplace=true"])
    assert changed["model"]["layers"] == [{"op": "relu", "inplace": True}]
    _, problems = apply_overrides({"train": {"epochs": 3}}, ["train.epochs.x=1"])
    assert problems[0].message == "--set train.epochs.x=1: train.epochs is not a mapping"


def test_append_and_remove():
    data = {"metrics": ["accuracy"], "train": {"epochs": 3, "early_stopping": {"patience": 2}}}
    changed, problems = apply_overrides(
        data, ["metrics+=auroc", "~train.early_stopping", "model.outputs+=out"]
    )
    assert not problems
    assert changed == {
        "metrics": ["accuracy", "auroc"],
        "train": {"epochs": 3},
        "model": {"outputs": ["out"]},
    }
    _, problems = apply_overrides(data, ["train.epochs+=1", "~train.nope", "~x=1", "~[0]"])
    assert [p.message.split(": ", 1)[1] for p in problems] == [
        "train.epochs is not a list to append to",
        "nothing at train.nope to remove",
        "expected PATH=VALUE, PATH+=VALUE or ~PATH, e.g. train.epochs=5",
        "expected PATH=VALUE, PATH+=VALUE or ~PATH, e.g. train.epochs=5",
    ]


def test_overrides_on_a_real_spec_validate(capsys):
    sets = ["device.precision=fp32", "metrics+=auroc", "~train.early_stopping"]
    spec, problems = read_spec(Path(RING), lambda data: apply_overrides(data, sets))
    assert spec is not None, problems
    assert spec.device.name == "auto" and spec.device.precision == "fp32"
    assert [m.kind for m in spec.metrics] == ["accuracy", "auroc"]
    assert spec.train.early_stopping is None
    argv = ["validate", RING, "--set", "device.strategy=ddp", "--set", "loss.kind=mse"]
    assert main(argv) == 0, capsys.readouterr()
