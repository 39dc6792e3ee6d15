"""CSV files as they come: a preamble to skip, no header, names given in the spec, numbers
as column names, and `columns: all` with each column's transform inferred from its cells."""

import importlib.util
from pathlib import Path

import pytest
import yaml

import tdsl
from tdsl.data import load_data, with_absolute_paths
from tdsl.runs.directories import run

needs_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn"
)
IRIS_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]


def sklearn_csv(name: str) -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files("sklearn.datasets") / "data" / name))


def spec_text(data: str, width: int, classes: int = 3) -> str:
    loss = "cross_entropy" if classes > 1 else "bce_with_logits"
    return f"""
name: csv_layout
data:
{data}
model:
  inputs: [{{shape: [{width}]}}]
  layers: [{{op: linear, out_features: 8}}, relu, {{op: linear, out_features: {classes}}}]
loss: {loss}
train: {{epochs: 2, batch_size: 32}}
"""


@needs_sklearn
def test_sklearn_iris_csv_trains_as_shipped(tmp_path):
    data = f"""  kind: csv
  file: {sklearn_csv("iris.csv")}
  skip_rows: 1          # 150,4,setosa,versicolor,virginica
  header: false
  names: {IRIS_NAMES}
  columns: all
  exclude: [sepal_width]
  target: species
  target_kind: class"""
    spec_file = tmp_path / "iris.yaml"
    spec_file.write_text(spec_text(data, 3))
    report = tdsl.validate(spec_file)
    assert report.ok, report.format()
    directory, result = run(tdsl.load(spec_file), tmp_path / "run")
    assert len(result.history) == 2
    kept = yaml.safe_load((directory / "spec.yaml").read_text())["data"]
    assert kept["columns"] == [
        {"name": n, "transform": "standardize", "fill": None, "fill_value": 0.0}
        | {"indicator": False, "unknown": False}
        for n in ("sepal_length", "petal_length", "petal_width")
    ]
    assert kept["exclude"] == []  # the choice is written out: the run no longer infers it


@needs_sklearn
@pytest.mark.parametrize(
    ("name", "width", "classes"), [("wine_data.csv", 13, 3), ("breast_cancer.csv", 30, 1)]
)
def test_sklearn_csvs_by_column_position(tmp_path, name, width, classes):
    # No names: the columns are 0, 1, ...; a number is a column name, the last the target.
    data = f"""  kind: csv
  file: {sklearn_csv(name)}
  skip_rows: 1
  header: false
  columns: all
  default_transform: minmax
  target: {width}
  target_kind: {"class" if classes > 1 else "binary"}"""
    spec = tdsl.load(spec_text(data, width, classes))
    report = tdsl.validate(spec)
    assert report.ok, report.format()
    columns = with_absolute_paths(spec).data.columns
    assert [c.name for c in columns] == [str(i) for i in range(width)]
    assert {c.transform for c in columns} == {"minmax"}


def test_number_column_names_and_inferred_transforms(tmp_path):
    (tmp_path / "rows.csv").write_text(
        "5,size,colour,y\n"
        + "".join(f"{i % 3},{i if i % 4 else ''},{'ab'[i % 2]},{i % 2}\n" for i in range(40))
    )
    data = f"""  kind: csv
  file: {tmp_path / "rows.csv"}
  columns: [5, {{name: colour, transform: onehot}}]
  target: y
  target_kind: binary"""
    spec = tdsl.load(spec_text(data, 3, 1))
    assert [c.name for c in spec.data.columns] == ["5", "colour"]
    assert tdsl.validate(spec).ok
    spec = tdsl.load(
        spec_text(
            data.replace(
                "columns: [5, {name: colour, transform: onehot}]",
                "columns: all\n  default_transform: passthrough",
            ),
            7,
            1,
        )
    )
    columns = {c.name: c for c in with_absolute_paths(spec).data.columns}
    assert columns["5"] == tdsl.Column(name="5", transform="passthrough")
    assert columns["size"] == tdsl.Column(
        name="size", transform="passthrough", fill="median", indicator=True
    )
    assert columns["colour"] == tdsl.Column(name="colour", transform="onehot", unknown=True)
    assert (
        load_data(spec).train.features[0].shape[1] == 1 + 2 + 3
    )  # 5; size + was-missing; a, b, <unknown>


def test_layout_mistakes_are_located(tmp_path):
    (tmp_path / "rows.csv").write_text("a,b,y\n1,2,0\n3,4,1\n")
    data = f"""  kind: csv
  file: {tmp_path / "rows.csv"}
  columns: all
  exclude: [bb]
  target: y
  target_kind: binary"""
    report = tdsl.validate(tdsl.load(spec_text(data, 1, 1)))
    assert [(e.path, e.message, e.hint) for e in report.errors] == [
        (("data", "exclude", 0), f"no column 'bb' in {tmp_path / 'rows.csv'}", "did you mean 'b'?")
    ]
    report = tdsl.validate(tdsl.load(spec_text(data.replace("all", "[a]"), 1, 1)))
    assert [(e.path, e.message) for e in report.errors] == [
        (("data", "exclude"), "exclude applies to columns: all")
    ]
    wrong = data.replace("exclude: [bb]", "names: [a, b]")
    report = tdsl.validate(tdsl.load(spec_text(wrong, 1, 1)))
    assert [(e.path, e.message) for e in report.errors] == [
        (("data", "names"), f"2 names for the 3 columns of {tmp_path / 'rows.csv'}")
    ]
