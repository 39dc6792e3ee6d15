"""Each data source loads: shapes, dtypes, targets, splits from their own files, and the
teacher for benchmarks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import tdsl
from tdsl.data import FileData, TensorData, data_signature, load_data

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "specs" / "data"


def spec_for(data, shape=(2,), dtype="float32", out=1, loss="bce_with_logits", seed=0):
    return tdsl.Spec(
        name="t",
        seed=seed,
        data=data,
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=list(shape), dtype=dtype)],
            layers=[tdsl.Layer("flatten"), tdsl.Layer("linear", out_features=out)]
            if dtype.startswith("float")
            else [
                tdsl.Layer("embedding", num_embeddings=50, embedding_dim=2),
                tdsl.Layer("flatten"),
                tdsl.Layer("linear", out_features=out),
            ],
        ),
        loss=tdsl.Loss(loss),
    )


def titanic(**changes) -> tdsl.Table:
    fields = dict(
        file=str(DATA / "titanic.csv"),
        target="Survived",
        target_kind="binary",
        columns=[
            tdsl.Column(name="Pclass", transform="onehot"),
            tdsl.Column(name="Sex", transform="onehot"),
            tdsl.Column(name="Age", fill="value", fill_value=0.0, indicator=True),
            tdsl.Column(name="SibSp"),
            tdsl.Column(name="Parch"),
            tdsl.Column(name="Fare"),
            tdsl.Column(name="Cabin", transform="missing"),
            tdsl.Column(name="Embarked", transform="onehot", unknown=True),
        ],
    )
    return tdsl.Table(**{**fields, **changes})


def test_csv_reproduces_the_seeds_titanic_preprocessing():
    spec = spec_for(titanic(), shape=(15,))
    data = load_data(spec)
    assert data_signature(spec).feature_shape == (15,)
    assert (len(data.train), len(data.val)) == (320, 80)
    x, y = data.train.features[0], data.train.target
    assert x.dtype == torch.float32 and x.shape == (320, 15)
    assert y.dtype == torch.float32 and y.shape == (320, 1) and set(y.unique().tolist()) <= {0, 1}
    names = data.fitted.state["features"]
    assert names == [
        "Pclass=1", "Pclass=2", "Pclass=3", "Sex=female", "Sex=male", "Age", "Age:missing",
        "SibSp", "Parch", "Fare", "Cabin:missing",
        "Embarked=C", "Embarked=Q", "Embarked=S", "Embarked=<unknown>",
    ]  # fmt: skip
    # Each row has exactly one Pclass, one Sex and one Embarked column set.
    for block in (slice(0, 3), slice(3, 5), slice(11, 15)):
        assert torch.equal(x[:, block].sum(1), torch.ones(320))
    # A missing Age is 0 with its indicator set, as the seeds' fillna(0) and Age_null.
    missing = x[:, 6] == 1
    assert missing.any() and torch.equal(x[missing, 5], torch.zeros(int(missing.sum())))


def test_csv_standardize_minmax_and_fill_mean(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,c,y\n1,10,x,0\n2,,y,1\n3,30,x,0\n4,40,z,1\n")
    columns = [
        tdsl.Column(name="a", transform="standardize"),
        tdsl.Column(name="b", transform="minmax", fill="mean", indicator=True),
        tdsl.Column(name="c", transform="onehot"),
    ]
    data = tdsl.Table(
        file=str(path), columns=columns, target="y", target_kind="binary",
        split=tdsl.Split(train=1.0, val=0.0),
    )  # fmt: skip
    splits = load_data(spec_for(data, shape=(6,)))
    x = splits.train.features[0].double()
    order = torch.argsort(x[:, 0])
    x = x[order]
    assert x[:, 0].mean().abs() < 1e-6 and abs(x[:, 0].std(unbiased=False) - 1) < 1e-6
    # b: the missing cell gets the mean of 10, 30, 40 before min-max scaling.
    assert x[:, 1].tolist() == pytest.approx([0.0, (80 / 3 - 10) / 30, 20 / 30, 1.0])
    assert x[:, 2].tolist() == [0, 1, 0, 0]
    assert x[:, 3:].tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]]


def test_csv_class_labels_as_names_and_separate_val_file(tmp_path):
    (tmp_path / "train.csv").write_text("x,label\n1,cat\n2,dog\n3,cat\n4,bird\n")
    (tmp_path / "val.csv").write_text("x,label\n5,dog\n")
    data = tdsl.Table(
        file=str(tmp_path / "train.csv"), val_file=str(tmp_path / "val.csv"),
        columns=["x"], target="label", target_kind="class",
    )  # fmt: skip
    spec = spec_for(data, shape=(1,), out=3, loss="cross_entropy")
    splits = load_data(spec)
    assert len(splits.train) == 4 and len(splits.val) == 1  # every file row trains
    assert splits.fitted.state["classes"] == ["bird", "cat", "dog"]
    assert splits.val.target.tolist() == [2] and splits.val.target.dtype == torch.int64
    assert data_signature(spec).target.num_classes == 3


def test_text_vocabulary_padding_and_truncation(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("1\tGood good FILM!\n0\tbad film, really bad bad\n1\tgood\n")
    data = tdsl.Text(file=str(path), vocab_size=6, length=4, split=tdsl.Split(train=1.0, val=0.0))
    splits = load_data(spec_for(data, shape=(4,), dtype="int64"))
    vocab = splits.fitted.state["vocab"]
    # Most frequent first (bad and good 3 times, film twice), ids 0 and 1 reserved.
    assert vocab == {"bad": 2, "good": 3, "film": 4, "really": 5}
    rows = {tuple(r) for r in splits.train.features[0].tolist()}
    # Padded at the front with 1; cut to the last 4 tokens, as the seeds do.
    assert rows == {(1, 3, 3, 4), (4, 5, 2, 2), (1, 1, 1, 3)}
    assert splits.train.features[0].dtype == torch.int64
    post = tdsl.Text(
        file=str(path), vocab_size=4, length=4, padding="post", truncation="post",
        split=tdsl.Split(train=1.0, val=0.0),
    )  # fmt: skip
    rows = {tuple(r) for r in load_data(spec_for(post, (4,), "int64")).train.features[0].tolist()}
    # Only bad and good fit in 4 ids; film and really become unknown (0).
    assert rows == {(3, 3, 0, 1), (2, 0, 0, 2), (3, 1, 1, 1)}


def test_timeseries_windows_with_differences(tmp_path):
    path = tmp_path / "s.csv"
    days = np.arange(14) ** 2
    path.write_text("day,a,b\n" + "".join(f"{d},{v},{2 * v}\n" for d, v in enumerate(days)))
    data = tdsl.TimeSeries(
        file=str(path), columns=["a", "b"], window=3, horizon=2, stride=2, difference=True,
        split=tdsl.Split(train=0.5, val=0.5),
    )  # fmt: skip
    spec = spec_for(data, shape=(3, 2), out=2, loss="mse")
    splits = load_data(spec)
    increments = np.diff(days)  # 1, 3, 5, ...: 13 rows
    # Windows start at 0, 2, 4, 6, 8 (each needs 3 + 2 rows): chronological halves.
    x = torch.cat([splits.train.features[0], splits.val.features[0]])
    y = torch.cat([splits.train.target, splits.val.target])
    assert x.shape == (5, 3, 2) and y.shape == (5, 2)
    assert x[1, :, 0].tolist() == increments[2:5].tolist()
    assert y[1].tolist() == [increments[6], 2 * increments[6]]
    assert splits.train.features[0][:, 0, 0].max() < splits.val.features[0][:, 0, 0].min()
    assert data_signature(spec).target == tdsl.Target(kind="regression", shape=(2,))


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_tensor_files_load_in_memory(tmp_path, suffix):
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float64)
    y = np.arange(40) % 4
    path = tmp_path / f"d{suffix}"
    if suffix == ".npz":
        np.savez(path, inputs=x, labels=y)
    else:
        torch.save({"inputs": torch.from_numpy(x), "labels": torch.from_numpy(y)}, path)
    data = tdsl.Tensors(file=str(path), features=["inputs"], target="labels", target_kind="class")
    spec = spec_for(data, shape=(3,), out=4, loss="cross_entropy")
    splits = load_data(spec)
    assert isinstance(splits.train, TensorData)
    assert splits.train.features[0].dtype == torch.float32  # cast to the model's input dtype
    assert splits.train.target.dtype == torch.int64 and len(splits.train) == 32
    assert data_signature(spec).target.num_classes == 4


def test_npy_folder_is_read_per_batch_by_workers(tmp_path):
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (np.arange(20) % 2).astype(np.float32))
    data = tdsl.Tensors(file=str(tmp_path), target_kind="binary", workers=2)
    splits = load_data(spec_for(data, shape=(3,)))
    assert isinstance(splits.train, FileData) and len(splits.train) == 16
    seen = torch.cat([b.features[0] for b in splits.train.batches(5, order_seed=3)])
    assert sorted(seen[:, 0].tolist()) == sorted(x[splits.train.index, 0].tolist())
    again = torch.cat([b.features[0] for b in splits.train.batches(5, order_seed=3)])
    assert torch.equal(seen, again)  # the order depends on the seed only


def test_teacher_is_seeded_and_learnable_sized():
    data = tdsl.Teacher(n=500, features=8, num_classes=3, label_noise=0.1)
    spec = spec_for(data, shape=(8,), out=3, loss="cross_entropy")
    first, second = load_data(spec), load_data(spec)
    assert torch.equal(first.train.features[0], second.train.features[0])
    assert first.train.target.dtype == torch.int64
    assert set(first.train.target.unique().tolist()) == {0, 1, 2}
    report = tdsl.validate(spec)
    assert report.ok, report.format()


def test_images_load_resized_normalized_and_augmented(tmp_path):
    pytest.importorskip("PIL")
    data = tdsl.ImageFolder(
        folder=str(DATA / "images"), size=[16, 24], target_kind="class", mean=[0.5] * 3,
        std=[0.25] * 3, random_flip=True, random_crop=2, workers=0,
    )  # fmt: skip
    spec = spec_for(data, shape=(3, 16, 24), out=2, loss="cross_entropy")
    splits = load_data(spec)
    assert splits.fitted.state["classes"] == ["0_airplane", "1_automobile"]
    batch = next(splits.val.batches(8))
    assert batch.features[0].shape == (8, 3, 16, 24) and batch.features[0].dtype == torch.float32
    assert batch.features[0].min() >= -2.0 and batch.features[0].max() <= 2.0
    plain = torch.cat([b.features[0] for b in splits.train.batches(64)])
    once = torch.cat([b.features[0] for b in splits.train.batches(64, order_seed=1)])
    twice = torch.cat([b.features[0] for b in splits.train.batches(64, order_seed=1)])
    assert torch.equal(once, twice)  # augmentations are seeded
    assert not torch.equal(torch.sort(once.flatten())[0], torch.sort(plain.flatten())[0])
    assert data_signature(spec).target == tdsl.Target(kind="class", num_classes=2)


def test_image_workers_give_the_same_batches_as_the_main_process():
    pytest.importorskip("PIL")
    base = dict(folder=str(DATA / "images"), size=[32, 32], random_flip=True, random_crop=4)
    by_workers = load_data(spec_for(tdsl.ImageFolder(**base, workers=2), (3, 32, 32), out=2,
                                    loss="cross_entropy")).train  # fmt: skip
    inline = load_data(spec_for(tdsl.ImageFolder(**base, workers=0), (3, 32, 32), out=2,
                                loss="cross_entropy")).train  # fmt: skip
    for a, b in zip(
        by_workers.batches(16, order_seed=9), inline.batches(16, order_seed=9), strict=True
    ):
        assert torch.equal(a.features[0], b.features[0]) and torch.equal(a.target, b.target)


def test_random_class_targets_follow_the_declared_shape_and_train():
    # Regression: `target: {kind: class, shape: [5]}` validated as a class per position but
    # generated one class per row, and the first training step raised torch's ValueError.
    spec = tdsl.load(
        """
name: t
data: {kind: random, n: 32, int_high: 10, target: {kind: class, num_classes: 3, shape: [5]}}
model:
  inputs: [{name: ids, shape: [5], dtype: int64}]
  layers:
    - {op: embedding, num_embeddings: 10, embedding_dim: 8}
    - {op: linear, out_features: 3}
loss: cross_entropy
train: {epochs: 1, batch_size: 8}
"""
    )
    data = tdsl.load_data(spec)
    assert data.train.target.shape == (26, 5)
    assert set(data.train.target.unique().tolist()) <= {0, 1, 2}
    program = tdsl.compile(spec)
    result = tdsl.fit(program, program.init(), data)
    assert math.isfinite(result.history[-1]["loss"])
