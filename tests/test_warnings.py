"""Silent mistakes: warnings for specs that train but train wrong, `validate --strict` (exit 1
on warnings, for CI) and `--format json` keeping each diagnostic's severity. The messages
themselves are goldens: tests/corpus/invalid/vmessages_warn_*."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

import tdsl
from tdsl.runs.cli import main

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "invalid"
WARNING_ONLY = "vmessages_warn_mode_opposite_monitor.yaml"


def _validate(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.chdir(ROOT)
    code = main(["validate", *args])
    return code, capsys.readouterr().out


def test_strict_fails_on_warnings_only(monkeypatch, capsys):
    case = f"tests/corpus/invalid/{WARNING_ONLY}"
    code, out = _validate([case], monkeypatch, capsys)
    assert code == 0 and ": warning: " in out and ": error: " not in out
    code, _ = _validate(["--strict", case], monkeypatch, capsys)
    assert code == 1


def test_strict_passes_a_clean_spec_and_fails_an_invalid_one(monkeypatch, capsys):
    assert _validate(["--strict", "specs/ring_dnn.yaml"], monkeypatch, capsys)[0] == 0
    invalid = "tests/corpus/invalid/30_unknown_op.yaml"
    assert _validate(["--strict", invalid], monkeypatch, capsys)[0] == 1


def test_json_keeps_the_severities(monkeypatch, capsys):
    case = f"tests/corpus/invalid/{WARNING_ONLY}"
    code, out = _validate(["--format", "json", "--strict", case], monkeypatch, capsys)
    items = json.loads(out)
    assert code == 1
    assert [i["severity"] for i in items] == ["warning", "warning"]
    assert [i["path"] for i in items] == ["train.early_stopping.mode", "train.checkpoint.mode"]


RING = ROOT / "specs" / "ring_dnn.yaml"


def _warnings(**changes) -> list[tuple[str, str]]:
    spec = attrs.evolve(tdsl.load(RING), **changes)
    report = tdsl.validate(spec)
    assert report.ok, report.format()
    return [(".".join(map(str, w.path)), w.message) for w in report.warnings]


def test_a_spec_built_in_python_gets_the_same_warnings():
    found = _warnings(optimizer=tdsl.Optimizer("sgd", lr=0.1, momentum=1.5))
    assert found == [
        (
            "optimizer.momentum",
            "optimizer 'sgd': momentum 1.5 keeps every past step at full weight or more, so "
            "the updates grow instead of settling",
        )
    ]


@pytest.mark.parametrize(
    ("args", "warned"),
    [
        ({"momentum": 0.9}, False),
        ({"momentum": 0.999, "dampening": 0.5}, False),
        ({"momentum": 0.9, "dampening": -0.5}, True),
    ],
)
def test_momentum_and_dampening_ranges(args, warned):
    assert bool(_warnings(optimizer=tdsl.Optimizer("sgd", lr=0.1, **args))) == warned


def test_ignored_checkpoint_settings_are_found_in_python_specs_too():
    ring = tdsl.load(RING)
    train = attrs.evolve(
        ring.train, checkpoint=attrs.evolve(ring.train.checkpoint, monitor="loss", save_best=False)
    )
    assert _warnings(train=train) == [
        (
            "train.checkpoint.monitor",
            "checkpoint monitor 'loss' is ignored: save_best is false, so no best checkpoint "
            "is picked",
        )
    ]
