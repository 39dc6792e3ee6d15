"""`kind: sklearn`: scikit-learn's bundled data sets as a data source — shapes, targets,
seeded splits, validation of the shape, and a clear error without the optional extra."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tdsl
from tdsl.data import DataError, bundled, clear_cache, data_signature, load_data
from tdsl.data.base import context
from tdsl.spec.json_schema import json_schema

ROOT = Path(__file__).resolve().parents[1]

needs_sklearn = pytest.mark.skipif(
    not bundled.sklearn_available(), reason="the sklearn data sets need tdsl[sklearn]"
)


def digits_spec(**data) -> tdsl.Spec:
    source = tdsl.spec.Bundled(dataset="digits", **data)
    return tdsl.Spec(
        name="digits",
        data=source,
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=list(source.shape) or [64])],
            layers=[tdsl.Layer("flatten"), tdsl.Layer("linear", out_features=10)],
        ),
        loss=tdsl.Loss("cross_entropy"),
        metrics=[tdsl.Metric("accuracy")],
    )


@needs_sklearn
def test_digits_load_as_one_channel_images_with_class_labels():
    spec = digits_spec(shape=[1, 8, 8], split=tdsl.Split(train=0.8, val=0.2, stratify=True))
    data = load_data(spec)
    x, y = data.train.features[0], data.train.target
    assert len(data.train) + len(data.val) == 1797 and data.test is None
    assert x.shape == (len(data.train), 1, 8, 8) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 16.0
    assert y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(10))
    # Stratified: every digit keeps its share (about 20%) in the validation rows.
    shares = torch.bincount(data.val.target, minlength=10) / torch.bincount(
        torch.cat([y, data.val.target]), minlength=10
    )
    assert torch.all((shares - 0.2).abs() < 0.01)
    signature = data_signature(spec)
    assert signature.feature_shape == (1, 8, 8)
    assert signature.target == tdsl.Target(kind="class", num_classes=10)
    assert signature.rows == {"train": len(data.train), "val": len(data.val)}


@needs_sklearn
@pytest.mark.parametrize(
    ("dataset", "width", "target"),
    [
        ("iris", 4, tdsl.Target(kind="class", num_classes=3)),
        ("wine", 13, tdsl.Target(kind="class", num_classes=3)),
        ("breast_cancer", 30, tdsl.Target(kind="binary")),
    ],
)
@needs_sklearn
def test_tables_load_flat_rows_by_default(dataset, width, target):
    source = tdsl.spec.Bundled(dataset=dataset, split=tdsl.Split(train=1.0, val=0.0))
    signature = data_signature(source)
    assert signature.feature_shape == (width,) and signature.target == target
    spec = tdsl.Spec(
        name=dataset,
        data=source,
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[width])], layers=[tdsl.Layer("linear", out_features=1)]
        ),
        loss=tdsl.Loss("mse"),
    )
    rows = load_data(spec).train
    if target.kind == "binary":  # 0/1 floats, one column, as a BCE loss takes them
        assert rows.target.dtype == torch.float32 and rows.target.shape == (len(rows), 1)
        assert set(rows.target.flatten().tolist()) == {0.0, 1.0}
    else:
        assert rows.target.dtype == torch.int64 and rows.target.max() == target.num_classes - 1


@needs_sklearn
def test_the_split_follows_the_seed():
    first, again = load_data(digits_spec()), load_data(digits_spec())
    assert torch.equal(first.val.target, again.val.target)
    other = load_data(tdsl.Spec(**{**_fields(digits_spec()), "seed": 1}))
    assert not torch.equal(first.val.features[0], other.val.features[0])


def _fields(spec: tdsl.Spec) -> dict:
    return {f: getattr(spec, f) for f in ("name", "data", "model", "loss", "metrics")}


def test_yaml_reads_the_source_and_the_schema_lists_the_data_sets(tmp_path):
    path = tmp_path / "digits.yaml"
    path.write_text(tdsl.dump(digits_spec(shape=[1, 8, 8])))
    assert "kind: sklearn" in path.read_text() and "dataset: digits" in path.read_text()
    assert tdsl.load(path) == digits_spec(shape=[1, 8, 8])
    schema = json_schema()["$defs"]["Bundled"]
    assert schema["properties"]["dataset"]["enum"] == ["digits", "iris", "wine", "breast_cancer"]


@needs_sklearn
def test_a_shape_that_does_not_hold_the_row_is_located(tmp_path):
    path = tmp_path / "bad.yaml"
    text = tdsl.dump(digits_spec(shape=[1, 8, 8])).replace("[1, 8, 8]", "[1, 9, 9]", 1)
    path.write_text(text)
    report = tdsl.validate(path)
    (error,) = [d for d in report.errors if d.path == ("data", "shape")]
    assert error.message == "digits rows have 64 values; shape [1, 9, 9] holds 81"
    assert error.hint == "e.g. shape: [1, 8, 8]" and error.location.line > 1


@needs_sklearn
def test_features_that_do_not_fit_the_model_input_are_reported():
    spec = digits_spec(shape=[1, 8, 8])
    wrong = tdsl.Spec(
        **{
            **_fields(spec),
            "model": tdsl.Model(inputs=[tdsl.Input(shape=[64])], layers=spec.model.layers),
        }
    )
    messages = [d.message for d in tdsl.validate(wrong).errors]
    assert (
        "data 'sklearn' yields features of shape [1, 8, 8], the model input declares [64]"
        in messages
    )


@needs_sklearn
def test_an_unknown_data_set_is_a_located_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(tdsl.dump(digits_spec()).replace("dataset: digits", "dataset: mnist"))
    report = tdsl.validate(path)
    assert not report.ok
    assert any(d.path == ("data", "dataset") for d in report.errors), report.format()


def test_without_scikit_learn_validation_names_the_extra(monkeypatch):
    clear_cache()  # a source prepared earlier must not hide the missing package
    monkeypatch.setattr(bundled, "sklearn_available", lambda: False)
    try:
        report = tdsl.validate(digits_spec())
        (error,) = report.errors
        assert error.path == ("data", "kind")
        assert error.message == "the sklearn data sets need scikit-learn, which is not installed"
        assert (
            error.hint
            == "pip install scikit-learn (or pip install -e '.[sklearn]' in a tdsl checkout)"
        )
        with pytest.raises(DataError, match=r"pip install scikit-learn"):
            load_data(digits_spec())
        # What the data yields is still known from the data set's name.
        assert data_signature(digits_spec()).target == tdsl.Target(kind="class", num_classes=10)
    finally:
        clear_cache()


@pytest.mark.parametrize("dataset", sorted(bundled.DATASETS))
@pytest.mark.parametrize(
    "split",
    [
        {"train": 0.8, "val": 0.2},
        {"train": 0.7, "val": 0.2, "test": 0.1, "stratify": True},
        {"train": 0.6, "val": 0.4, "stratify": True},
        {"train": 1.0},
    ],
)
def test_the_signature_from_known_sizes_is_what_loading_gives(dataset, split):
    """Validation counts rows from the data sets' known class sizes (no scikit-learn
    import); they must be exactly what loading and splitting the data gives."""
    spec = tdsl.Spec(
        name="sizes",
        data=tdsl.Bundled(dataset=dataset, split=tdsl.Split(**split)),
        model=tdsl.Model(inputs=[tdsl.Input(shape=[1])], layers=[tdsl.Layer("flatten")]),
        loss=tdsl.Loss("cross_entropy"),
        optimizer=tdsl.Optimizer("sgd", lr=0.1),
        train=tdsl.Train(epochs=1, batch_size=8),
    )
    ctx = context(spec)
    loaded = bundled.prepare(spec.data, ctx)[1]
    assert bundled.signature(spec.data, ctx) == loaded
    x, y = bundled._load(dataset)
    info = bundled.DATASETS[dataset]
    assert x.shape[1] == info.features
    assert tuple(np.bincount(y)) == info.class_sizes


def test_validating_a_sklearn_spec_does_not_import_scikit_learn():
    code = (
        "import sys, tdsl; tdsl.validate('specs/digits_cnn.yaml');print('sklearn' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split() == ["False"], done.stderr
