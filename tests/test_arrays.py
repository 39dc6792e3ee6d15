"""`tdsl.Arrays` (rows a program holds) and `program.init(from_...)` (weights it holds)."""

import numpy as np
import pytest
import torch
from test_blocks import tied_lm

import tdsl


def moons(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    return x, (x[:, 0] * x[:, 1] > 0).astype(np.float32)


def spec_of(data, inputs=None, epochs: int = 3) -> tdsl.Spec:
    return tdsl.Spec(
        name="arrays",
        data=data,
        model=tdsl.Model(
            inputs=inputs or [tdsl.Input(shape=[2])],
            layers=[
                tdsl.Layer("linear", out_features=8),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=1),
            ],
        ),
        loss=tdsl.Loss("bce_with_logits"),
        metrics=[tdsl.Metric("accuracy")],
        train=tdsl.Train(epochs=epochs, batch_size=16),
        device=tdsl.Device("cpu"),
    )


def test_arrays_split_like_the_tensors_source_a_run_directory_stores(tmp_path):
    x, y = moons()
    spec = spec_of(tdsl.Arrays(x, torch.from_numpy(y), target_kind="binary"))
    result = tdsl.run(spec, tmp_path / "run", progress=False)
    stored = tdsl.load(tmp_path / "run" / "spec.yaml")
    assert stored.data.kind == "tensors" and stored.data.file.endswith("data.npz")
    memory, disk = tdsl.load_data(spec), tdsl.load_data(stored)
    for part in ("train", "val"):
        assert torch.equal(getattr(memory, part).features[0], getattr(disk, part).features[0])
        assert torch.equal(getattr(memory, part).target, getattr(disk, part).target)
    val = tdsl.evaluate_run(tmp_path / "run", "last")["val"]
    assert val["loss"] == pytest.approx(result.history[-1]["val_loss"], rel=1e-6)


def test_arrays_given_per_split_and_by_input_name(tmp_path):
    x, y = moons(90)
    inputs = [tdsl.Input(shape=[2], name="point")]
    data = tdsl.Arrays(
        train=({"point": x[:60]}, y[:60]), val=({"point": x[60:]}, y[60:]), target_kind="binary"
    )
    spec = spec_of(data, inputs)
    splits = tdsl.load_data(spec)
    assert (len(splits.train), len(splits.val), splits.test) == (60, 30, None)
    assert torch.equal(splits.val.features[0], torch.from_numpy(x[60:]))  # in order
    result = tdsl.run(spec, tmp_path / "run", progress=False)
    resumed = tdsl.resume(tmp_path / "run", progress=False)  # from val.npz and data.npz
    assert resumed.history == result.history


def _errors(data, inputs=None) -> list[str]:
    return [d.format() for d in tdsl.validate(spec_of(data, inputs)).errors]


def test_arrays_are_checked_like_any_source():
    x, y = moons(50)
    bad = x.copy()
    bad[7, 1] = np.nan
    assert any(
        "train features[0] has NaN at row 7" in e
        for e in _errors(tdsl.Arrays(bad, y, target_kind="binary"))
    )
    shorter = _errors(tdsl.Arrays(x, y[:40], target_kind="binary"))
    assert any(
        "arrays of different lengths: train features[0] 50, train target 40" in e for e in shorter
    )
    wide = _errors(tdsl.Arrays(np.zeros((50, 3), np.float32), y, target_kind="binary"))
    assert any("yields features of shape [3], the model input declares [2]" in e for e in wide)
    labels = _errors(tdsl.Arrays(x, y * 2, target_kind="binary"))
    assert any("values other than 0 and 1" in e for e in labels)
    named = _errors(tdsl.Arrays({"pt": x}, y, target_kind="binary"))
    assert any("features 'pt' match no model input" in e for e in named)


def test_arrays_in_yaml_are_refused_with_a_pointer_to_python():
    text = (
        "name: x\ndata: {kind: arrays}\n"
        "model: {inputs: [{shape: [2]}], layers: [relu]}\nloss: mse\n"
    )
    report = tdsl.validate(text)
    assert [d.format() for d in report.errors] == [
        "<spec>:2:8: error: data.kind: arrays are given in Python: use tdsl.Arrays(...) in a "
        "Python spec"
    ]


def test_init_from_a_module_or_state_dict():
    spec = spec_of(tdsl.Arrays(*moons(), target_kind="binary"))
    program = tdsl.compile(spec)
    other = program.module_for(program.init(seed=9))
    state = program.init(from_module=other)
    assert all(torch.equal(state.params[k], v) for k, v in other.state_dict().items())
    wrong = {**other.state_dict(), "linear2.weight": torch.zeros(3, 3), "extra": torch.zeros(1)}
    del wrong["linear1.bias"]
    with pytest.raises(tdsl.TdslError) as caught:
        program.init(from_state_dict=wrong)
    assert str(caught.value) == (
        "the weights do not fit the model; missing: linear1.bias; unexpected: extra; "
        "mis-shaped: linear2.weight (the model's [1, 8], given [3, 3])"
    )


def test_init_from_a_tied_models_state_dict_with_the_alias_key():
    program = tdsl.compile(tied_lm())
    source = program.module_for(program.init(seed=5))
    given = source.state_dict()
    assert "lm_head.weight" in given  # nn.Module.state_dict() repeats the tied name
    state = program.init(from_state_dict=given)
    assert torch.equal(state.params["wte.weight"], given["wte.weight"])
    assert "lm_head.weight" not in state.params
