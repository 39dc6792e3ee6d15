"""An edited transforms.json (entries of the wrong type, entries missing) is reported as
that file's problem, not as a TypeError or KeyError from deep inside the transforms."""

import json
from pathlib import Path

import pytest

import tdsl
from tdsl.data import DataError, Fitted, load_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table():
    spec = tdsl.load(ROOT / "specs" / "tabular.yaml")
    return spec, json.loads(load_data(spec).fitted.to_json())


def _categories(data):
    data["columns"][0]["categories"] = 5


def _fill(data):
    data["columns"][2]["fill"] = "x"


def _no_categories(data):
    del data["columns"][0]["categories"]


def _state_as_text(data):
    data["columns"][1] = "Sex"


def _columns(data):
    data["columns"] = 5


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (_categories, "columns[0] categories are not a list of strings"),
        (_fill, "columns[2] fill is 'x', not a number or null"),
        (_no_categories, "columns[0] categories are not a list of strings"),
        (_state_as_text, "columns[1] is not a mapping"),
        (_columns, "columns is not a list"),
    ],
)
def test_a_tampered_transforms_file_is_named(table, tamper, why):
    spec, data = table
    data = json.loads(json.dumps(data))
    tamper(data)
    with pytest.raises(DataError) as caught:
        load_data(spec, Fitted.from_json(json.dumps(data)))
    message = str(caught.value)
    assert message.startswith("data: transforms.json does not hold valid csv transforms: ")
    assert message.endswith(why)
