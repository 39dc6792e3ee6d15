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
        (_categories, "'int' object is not iterable"),
        (_fill, "can't convert np.ndarray"),
        (_no_categories, "no entry 'categories'"),
        (_state_as_text, "'str' object has no attribute 'get'"),
        (_columns, "'int' object is not iterable"),
    ],
)
def test_a_tampered_transforms_file_is_named(table, tamper, why):
    spec, data = table
    data = json.loads(json.dumps(data))
    tamper(data)
    with pytest.raises(DataError) as caught:
        load_data(spec, Fitted.from_json(json.dumps(data)))
    message = str(caught.value)
    assert message.startswith("data: the fitted transforms (transforms.json) are not as tdsl")
    assert why in message and "was the file edited?" in message
