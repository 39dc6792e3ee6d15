"""Blocks, repetition, sharing and tying (issue 16): the language against hand-written PyTorch.

ResNets from `specs/models/` are compared with a torchvision-style ResNet written here (same
parameter names up to the documented shortcut mapping, same outputs and gradients for the
same weights); sharing and tying are checked for counts, optimizer membership, training and
checkpoints.
"""

from __future__ import annotations

import io
from pathlib import Path

import attrs
import pytest
import torch
from torch import nn

import tdsl
from tdsl.runs.directories import evaluate_run, run

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "specs" / "models"


# --- a torchvision-style ResNet, written out --------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, inplanes = [64, 128, 256, 512], 64
        for index, planes in enumerate(widths, start=1):
            stride = 1 if index == 1 else 2
            blocks = [BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes)]
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def tdsl_name(torchvision_name: str) -> str:
    """The documented mapping: torchvision's `downsample.0/1` are tdsl's `downsample.conv/bn`
    (tdsl names every layer; all other names are the same)."""
    return torchvision_name.replace("downsample.0.", "downsample.conv.").replace(
        "downsample.1.", "downsample.bn."
    )


def small_resnet18() -> tdsl.Spec:
    text = (MODELS / "resnet18.yaml").read_text()
    text = text.replace("shape: [3, 224, 224]", "shape: [3, 32, 32]")
    return tdsl.load(
        text.replace("num_classes: 1000", "num_classes: 10").replace(
            "out_features: 1000", "out_features: 10"
        )
    )


# --- parameter counts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "edit", "count"),
    [
        ("resnet18", None, 11_689_512),
        ("resnet18", "resnet34", 21_797_672),
        ("resnet50", None, 25_557_032),
    ],
)
def test_resnets_validate_with_torchvision_parameter_counts(name, edit, count):
    spec = tdsl.load(MODELS / f"{name}.yaml")
    if edit == "resnet34":  # the depth is the repeat counts and nothing else
        layers = list(spec.model.layers)
        for index, repeat in zip((4, 5, 6, 7), (3, 4, 6, 3), strict=True):
            layers[index] = attrs.evolve(layers[index], repeat=repeat)
        spec = attrs.evolve(spec, model=attrs.evolve(spec.model, layers=layers))
    report = tdsl.validate(spec)
    assert report.ok, report
    assert report.param_count == count


def test_the_model_specs_are_short():
    for name, most in (("resnet18", 60), ("resnet50", 60)):
        lines = (MODELS / f"{name}.yaml").read_text().splitlines()
        assert len(lines) <= most, name


# --- the same network as hand-written PyTorch ----------------------------------------------


def test_resnet18_has_torchvision_parameter_names_and_outputs():
    torch.manual_seed(0)
    reference = ResNet18(10)
    program = tdsl.compile(small_resnet18())
    ours = program.module
    theirs = {tdsl_name(k): v for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.items()
    }
    ours.load_state_dict(theirs)
    x = torch.randn(4, 3, 32, 32)
    for mode in ("train", "eval"):
        reference.train(mode == "train")
        ours.train(mode == "train")
        expected, got = reference(x), ours(x)
        torch.testing.assert_close(got, expected)
        expected.square().sum().backward()
        got.square().sum().backward()
        grads = {tdsl_name(k): p.grad for k, p in reference.named_parameters()}
        for name, param in ours.named_parameters():
            torch.testing.assert_close(param.grad, grads[name], msg=name)
        reference.zero_grad()
        ours.zero_grad()


# --- repetition ------------------------------------------------------------------------------


def ring_spec(layers, blocks=None, inputs=None, outputs=()) -> tdsl.Spec:
    return tdsl.Spec(
        name="blocks",
        data=tdsl.RandomData(n=32, target=tdsl.Target(kind="regression", shape=[2])),
        model=tdsl.Model(
            inputs=inputs or [tdsl.Input(shape=[4])],
            blocks=blocks or {},
            layers=layers,
            outputs=outputs,
        ),
        loss=tdsl.Loss("mse"),
        train=tdsl.Train(epochs=2, batch_size=8),
    )


def test_repeat_first_and_vary_give_each_copy_its_arguments():
    spec = ring_spec(
        [
            tdsl.Layer(
                "linear",
                name="stack",
                out_features=4,
                repeat=3,
                first={"bias": False},
                vary={"out_features": [6, 5, 2]},
            )
        ]
    )
    module = tdsl.compile(spec).module
    shapes = {k: list(v.shape) for k, v in module.state_dict().items()}
    assert shapes == {
        "stack.0.weight": [6, 4],
        "stack.1.weight": [5, 6],
        "stack.1.bias": [5],
        "stack.2.weight": [2, 5],
        "stack.2.bias": [2],
    }
    x = torch.randn(3, 4)
    expected = x
    for copy in module.stack:
        expected = copy(expected)
    torch.testing.assert_close(module(x), expected)


def test_a_block_with_an_optional_part_and_expressions():
    block = tdsl.Block(
        params={"width": None, "project": False},
        layers=[
            tdsl.Layer("linear", name="fc", out_features="${width * 2}"),
            tdsl.Layer(
                "linear", name="proj", inputs=["x"], out_features="${width * 2}", when="$project"
            ),
            tdsl.Layer("add", name="sum", inputs=["fc", "proj"]),
        ],
    )
    spec = ring_spec(
        [
            tdsl.Layer("res", name="a", width=2, project=True),  # 4 -> 4: needs the projection
            tdsl.Layer("res", name="b", width=2),  # switched off: x passes straight to `sum`
            tdsl.Layer("linear", name="out", out_features=2),
        ],
        blocks={"res": block},
    )
    module = tdsl.compile(spec).module
    assert sorted(module.state_dict()) == [
        "a.fc.bias",
        "a.fc.weight",
        "a.proj.bias",
        "a.proj.weight",
        "b.fc.bias",
        "b.fc.weight",
        "out.bias",
        "out.weight",
    ]
    x = torch.randn(3, 4)
    a = module.a.fc(x) + module.a.proj(x)
    b = module.b.fc(a) + a
    torch.testing.assert_close(module(x), module.out(b))


# --- sharing ---------------------------------------------------------------------------------


def siamese() -> tdsl.Spec:
    return tdsl.load(MODELS / "siamese.yaml")


def test_a_shared_encoder_is_one_set_of_parameters_trained_from_both_inputs():
    spec = siamese()
    report = tdsl.validate(spec)
    assert report.ok, report
    program = tdsl.compile(spec)
    module = program.module
    names = [n for n, _ in module.named_parameters()]
    assert not any(n.startswith("right.") for n in names)
    assert report.param_count == sum(p.numel() for p in module.parameters())
    # The state and the optimizer hold the encoder once.
    state = program.init()
    assert list(state.params) == names
    batch = next(iter(tdsl.load_data(spec).train.batches(8, order_seed=0)))
    state, _ = program.train_step(state, batch)
    assert sorted(state.optimizer) == sorted(names)
    # The same computation written by hand: one encoder applied twice.
    a, b = torch.randn(5, 16), torch.randn(5, 16)
    left, right = module.left(a), module.left(b)
    torch.testing.assert_close(module(a, b), module.head((left - right).abs()))
    # A gradient reaches the encoder through both branches.
    module(a, b).sum().backward()
    grad_both = module.left.fc1.weight.grad.clone()
    module.zero_grad()
    (module.head((module.left(a) - module.left(b).detach()).abs())).sum().backward()
    assert not torch.allclose(grad_both, module.left.fc1.weight.grad)


def test_shared_and_tied_parameters_are_counted_once_in_the_summary():
    text = tdsl.summary(siamese())
    assert "right       encoder (shares left)" in text.replace("  (", " (") or "shares left" in text
    total = int(text.split("Total params: ")[1].split()[0].replace(",", ""))
    rows = [line.split() for line in text.splitlines()[2:] if line and not line[0].isupper()]
    assert sum(int(r[-2].replace(",", "")) for r in rows) == total


# --- tying -----------------------------------------------------------------------------------


def tied_lm() -> tdsl.Spec:
    return tdsl.load(
        """
name: tied
seed: 3
data: {kind: random, n: 96, int_high: 20, target: {kind: class, num_classes: 20}}
model:
  inputs: [{shape: [1], dtype: int64}]
  layers:
    - {name: wte, op: embedding, num_embeddings: 20, embedding_dim: 8}
    - {op: flatten}
    - {name: lm_head, op: linear, out_features: 20, bias: false, tie: {weight: wte.weight}}
loss: cross_entropy
optimizer: {kind: adam, lr: 0.05}
train: {epochs: 3, batch_size: 16, checkpoint: {monitor: val_loss}}
device: cpu
"""
    )


def test_tied_weights_stay_one_tensor_through_training_and_checkpoints(tmp_path):
    spec = tied_lm()
    report = tdsl.validate(spec)
    assert report.param_count == 20 * 8
    directory, result = run(spec, tmp_path / "run", stream=io.StringIO())
    assert list(result.state.params) == ["wte.weight"]
    program = tdsl.compile(spec)
    module = program.module_for(result.state)
    assert module.lm_head.weight is module.wte.weight
    torch.testing.assert_close(module.wte.weight, result.state.params["wte.weight"])
    checkpoint = torch.load(directory / "checkpoints" / "last.pt", weights_only=True)
    assert "lm_head.weight" not in checkpoint["model"]
    # Reloaded from the checkpoint, the run scores what it scored when it ended.
    scores = evaluate_run(directory, "last")
    assert scores["val"]["loss"] == pytest.approx(result.history[-1]["val_loss"], rel=1e-5)


def test_a_tied_head_equals_the_hand_written_tied_model():
    program = tdsl.compile(tied_lm())
    state = program.init()
    module = program.module_for(state)
    ids = torch.randint(0, 20, (7, 1))
    expected = torch.nn.functional.linear(module.wte(ids).flatten(1), module.wte.weight)
    torch.testing.assert_close(module(ids), expected)


# --- every model spec ------------------------------------------------------------------------

MODEL_SPECS = sorted(MODELS.glob("*.yaml"))
# Small enough to train for an epoch in the suite; the others are validated only.
TRAINED = 1_000_000


@pytest.mark.parametrize("path", MODEL_SPECS, ids=lambda p: p.stem)
def test_every_model_spec_validates_and_the_small_ones_train(path, tmp_path):
    report = tdsl.validate(path)
    assert report.ok, "\n".join(str(d) for d in report.diagnostics)
    assert not [d for d in report.diagnostics if d.severity == "warning"]
    if report.param_count <= TRAINED:
        spec = tdsl.load(path)
        spec = attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=1))
        _, result = run(spec, tmp_path / "run", stream=io.StringIO())
        assert len(result.history) == 1
        assert all(torch.isfinite(v).all() for v in result.state.params.values())


def test_selectors_see_a_tied_parameter_once():
    spec = tied_lm()
    spec = attrs.evolve(
        spec,
        loss=tdsl.Loss("cross_entropy", regularizers=[tdsl.Regularizer(kind="l2", weight=0.1)]),
        optimizer=tdsl.Optimizer(
            "sgd", lr=0.1, groups=[tdsl.ParamGroup(params=["*.weight"], lr=0.01)]
        ),
    )
    report = tdsl.validate(spec)
    assert report.ok, report
    assert report.selections == {
        "loss.regularizers[0]": ("wte.weight",),
        "optimizer.groups[0]": ("wte.weight",),
    }
    program = tdsl.compile(spec)
    state = program.init()
    batch = next(iter(tdsl.load_data(spec).train.batches(16, order_seed=0)))
    state, metrics = program.train_step(state, batch)
    assert list(state.params) == ["wte.weight"] and "l2" in metrics


def test_layers_may_be_named_like_the_graph_modules_own_bookkeeping():
    # Regression: a layer named `plan` (a multi-task head) replaced GraphModule.plan and
    # compiling raised TypeError; the bookkeeping now has names no layer may take.
    names = ["plan", "chain", "input_names", "output_names"]
    spec = ring_spec(
        [tdsl.Layer("linear", name=n, out_features=4 if n != names[-1] else 2) for n in names]
    )
    module = tdsl.compile(spec).module
    assert [n for n, _ in module.named_children()] == names
    x = torch.randn(3, 4)
    expected = x
    for name in names:  # getattr: the layers, not lists of names
        expected = getattr(module, name)(expected)
    torch.testing.assert_close(module(x), expected)
    bad = ring_spec([tdsl.Layer("linear", name="_plan", out_features=2)])
    (error,) = tdsl.validate(bad).errors
    assert "layer name '_plan' is reserved" in error.message
