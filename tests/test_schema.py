"""The JSON Schema that `tdsl schema` prints for editors: valid, and in step with tdsl."""

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tdsl.check.pipeline import validate
from tdsl.runs.cli import main
from tdsl.spec.convert import structure_spec
from tdsl.spec.json_schema import json_schema
from tdsl.spec.value_hooks import Invalid

SPECS = sorted((Path(__file__).parents[1] / "specs").glob("**/*.y*ml"))

# The smallest spec tdsl accepts; each test changes one thing in a copy.
MINIMAL: dict[str, Any] = {
    "name": "tiny",
    "data": {"kind": "rings"},
    "model": {"inputs": [{"shape": [2]}], "layers": [{"op": "linear", "out_features": 1}]},
    "loss": {"kind": "bce_with_logits"},
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json_schema()


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema)


def _nodes(value: Any) -> Iterator[dict[str, Any]]:
    """Every mapping inside the schema, depth first."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _nodes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _nodes(item)


def _changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(MINIMAL)
    *parents, last = path
    target = data
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value
    return data


def test_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"]


def test_schema_is_json_and_stable(schema: dict[str, Any]) -> None:
    assert json.loads(json.dumps(schema)) == schema == json_schema()


def test_there_are_specs_to_check() -> None:
    assert SPECS, "no YAML specs found under specs/"


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_shipped_spec_validates(path: Path, validator) -> None:
    validator.validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    "data",
    [
        MINIMAL,
        _changed(("device",), "cpu"),
        _changed(("device",), {"name": "cuda:0", "precision": "bf16"}),
        _changed(("metrics",), ["accuracy", {"kind": "f1", "threshold": 0.3}]),
        _changed(("model", "layers"), ["relu", {"op": "nn.GELU"}, {"op": "mylab.layers:Gate"}]),
        _changed(("model", "layers"), ["mylab.layers.Gate", {"op": "torch.nn.Mish"}]),
        _changed(("loss",), "mylab.losses.Dice"),
        _changed(("loss",), {"kind": "sum", "terms": [{"kind": "mse"}, {"kind": "nn.L1Loss"}]}),
        _changed(("optimizer",), {"kind": "sgd", "schedule": {"kind": "reduce_on_plateau"}}),
        _changed(("device",), "cuda:1"),
        _changed(("train",), {"epochs": 3, "early_stopping": None}),
        _changed(
            ("loss",), {"kind": "nn.KLDivLoss", "regularizers": [{"kind": "l2", "weight": 1}]}
        ),
        _changed(("data",), {"kind": "random", "target": {"kind": "class", "num_classes": 3}}),
        _changed(
            ("optimizer",),
            {"kind": "sgd", "lr": 0.1, "momentum": 0.9, "groups": [{"modules": ["linear"]}]},
        ),
    ],
)
def test_specs_tdsl_accepts_pass_the_schema(data: dict[str, Any], validator) -> None:
    structure_spec(data)  # tdsl's own reading accepts it ...
    validator.validate(data)  # ... so the editor must not flag it


def test_schedules_pass_the_schema(validator) -> None:
    # Schema only: structuring `schedule` is checked with the optimizer's own tests.
    schedule = {"kind": "step", "step_size": 5, "interval": "step"}
    validator.validate(_changed(("optimizer", "schedule"), schedule))
    assert not validator.is_valid(_changed(("optimizer", "schedule"), {"step_size": 5}))
    assert not validator.is_valid(_changed(("optimizer", "schedule", "interval"), "batch"))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({**MINIMAL, "epochs": 10}, id="unknown top-level key"),
        pytest.param(_changed(("train", "epochs"), "ten"), id="epochs not an integer"),
        pytest.param(_changed(("train", "epochs"), 0), id="epochs not positive"),
        pytest.param(_changed(("optimizer", "lr"), "fast"), id="lr not a number"),
        pytest.param(_changed(("data", "kind"), "moons"), id="unknown data kind"),
        pytest.param(_changed(("data",), {"n_positive": 10}), id="data without kind"),
        pytest.param(_changed(("data", "n"), 10), id="key of another data kind"),
        pytest.param({k: v for k, v in MINIMAL.items() if k != "model"}, id="missing model"),
        pytest.param(_changed(("model", "layers"), []), id="no layers"),
        pytest.param(_changed(("model", "inputs"), [{"shape": [0]}]), id="zero-sized input"),
        pytest.param(_changed(("device",), {"precision": "fp8"}), id="unknown precision"),
        pytest.param(_changed(("train", "checkpoint", "save_best"), "yes"), id="not a boolean"),
    ],
)
def test_broken_specs_are_rejected_by_schema_and_tdsl(data: dict[str, Any], validator) -> None:
    assert not validator.is_valid(data)
    with pytest.raises(Invalid):
        structure_spec(data)


def _with_layer(op: Any) -> dict[str, Any]:
    return _changed(("model", "layers"), [{"op": "linear", "out_features": 1}, op])


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_with_layer({"op": "relux"}), id="unknown op"),
        pytest.param(_with_layer("relux"), id="unknown op as a string"),
        pytest.param(_with_layer("nn.relu.x"), id="neither torch class nor import path"),
        pytest.param(_changed(("optimizer",), {"kind": "sgdd"}), id="unknown optimizer"),
        pytest.param(_changed(("optimizer",), "sgdd"), id="unknown optimizer as a string"),
        pytest.param(
            _changed(("optimizer",), {"kind": "sgd", "schedule": "stepp"}), id="unknown schedule"
        ),
        pytest.param(_changed(("metrics",), ["accuracy", "f1_score"]), id="unknown metric"),
        pytest.param(_changed(("metrics",), [{"kind": "mylab.F1"}]), id="metric by import path"),
        pytest.param(_changed(("loss",), "msee"), id="unknown loss"),
        pytest.param(
            _changed(("loss",), {"kind": "sum", "terms": [{"kind": "msee"}]}), id="unknown term"
        ),
        pytest.param(_changed(("device",), "gpu"), id="unknown device"),
        pytest.param(_changed(("device",), {"name": "cuda:x"}), id="unknown device mapping"),
    ],
)
def test_unknown_names_are_flagged_by_schema_and_tdsl(data: dict[str, Any], validator) -> None:
    # Structure alone accepts these names; validation refuses each.
    assert not validator.is_valid(data)
    structure_spec(data)
    assert not validate(data_to_yaml(data)).ok


def data_to_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def test_with_blocks_an_op_may_be_any_block_name(validator) -> None:
    block = {"layers": [{"op": "linear", "out_features": 1}]}
    model = {**MINIMAL["model"], "blocks": {"head": block}, "layers": ["head"]}
    assert validator.is_valid({**MINIMAL, "model": model})
    assert validate(data_to_yaml({**MINIMAL, "model": model})).ok


def test_op_names_are_suggested_with_their_arguments(schema: dict[str, Any]) -> None:
    suggested = {name for node in _nodes(schema) for name in node.get("enum", ())}
    assert {
        "linear",
        "relu",
        "conv2d",
        "bce_with_logits",
        "accuracy",
        "adamw",
        "cosine",
    } <= suggested

    linear = next(
        node["then"]["properties"]
        for node in _nodes(schema)
        if node.get("if", {}).get("properties", {}).get("op") == {"const": "linear"}
    )
    assert "out_features" in linear
    assert "inferred" in linear["in_features"]["description"]


def test_cli_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(json_schema()))
