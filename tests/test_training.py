"""Training semantics against references: losses, metrics, optimizers, schedules,
regularizers, accumulation, clipping and precision."""

import itertools
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tdsl
from tdsl.data import Batch, load_data
from tdsl.registry.losses import build_loss
from tdsl.registry.metrics import lookup_metric, make_metric
from tdsl.train.objective import _regularizer

# --- losses -------------------------------------------------------------------------------

torch.manual_seed(0)
LOGITS = torch.randn(16, 1)
PROBS = torch.sigmoid(LOGITS)
BINARY = (torch.rand(16, 1) > 0.4).float()
CLASS_LOGITS = torch.randn(16, 5)
CLASSES = torch.randint(0, 5, (16,))
VALUES = torch.randn(16, 3)
TARGETS = torch.randn(16, 3)


def focal_by_hand(p, y, gamma=2.0, alpha=0.75):
    bce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    p_t = y * p + (1 - y) * (1 - p)
    alpha_t = y * alpha + (1 - y) * (1 - alpha)
    return (alpha_t * (1 - p_t) ** gamma * bce).mean()


LOSS_CASES = {
    "mse": (tdsl.Loss("mse"), VALUES, TARGETS, F.mse_loss(VALUES, TARGETS)),
    "l1": (tdsl.Loss("l1"), VALUES, TARGETS, (VALUES - TARGETS).abs().mean()),
    "smooth_l1": (tdsl.Loss("smooth_l1"), VALUES, TARGETS, F.smooth_l1_loss(VALUES, TARGETS)),
    "huber": (
        tdsl.Loss("huber", delta=0.5),
        VALUES,
        TARGETS,
        F.huber_loss(VALUES, TARGETS, delta=0.5),
    ),
    "bce": (
        tdsl.Loss("bce"),
        PROBS,
        BINARY,
        -(BINARY * PROBS.log() + (1 - BINARY) * (1 - PROBS).log()).mean(),
    ),
    "bce_with_logits_pos_weight": (
        tdsl.Loss("bce_with_logits", pos_weight=[3.0]),
        LOGITS,
        BINARY,
        -(3.0 * BINARY * F.logsigmoid(LOGITS) + (1 - BINARY) * F.logsigmoid(-LOGITS)).mean(),
    ),
    "cross_entropy_weights_smoothing": (
        tdsl.Loss("cross_entropy", weight=[1.0, 2.0, 1.0, 0.5, 1.0], label_smoothing=0.1),
        CLASS_LOGITS,
        CLASSES,
        F.cross_entropy(
            CLASS_LOGITS,
            CLASSES,
            weight=torch.tensor([1.0, 2.0, 1.0, 0.5, 1.0]),
            label_smoothing=0.1,
        ),
    ),
    "nll": (
        tdsl.Loss("nll"),
        F.log_softmax(CLASS_LOGITS, -1),
        CLASSES,
        -F.log_softmax(CLASS_LOGITS, -1)[torch.arange(16), CLASSES].mean(),
    ),
    "focal": (
        tdsl.Loss("focal", gamma=2.0, alpha=0.75),
        PROBS,
        BINARY,
        focal_by_hand(PROBS, BINARY),
    ),
    "cosine": (
        tdsl.Loss("cosine"),
        VALUES,
        TARGETS,
        (1 - (VALUES * TARGETS).sum(-1) / (VALUES.norm(dim=-1) * TARGETS.norm(dim=-1))).mean(),
    ),
    "weighted_sum": (
        tdsl.Loss("sum", terms=[tdsl.LossTerm("mse", weight=0.3), tdsl.LossTerm("l1", weight=2)]),
        VALUES,
        TARGETS,
        0.3 * F.mse_loss(VALUES, TARGETS) + 2 * F.l1_loss(VALUES, TARGETS),
    ),
}


@pytest.mark.parametrize("case", LOSS_CASES, ids=str)
def test_loss_matches_reference(case):
    spec, output, target, expected = LOSS_CASES[case]
    torch.testing.assert_close(build_loss(spec)(output, target), expected, rtol=1e-5, atol=1e-6)


# --- metrics ------------------------------------------------------------------------------


def metric_value(name, kind, prob, target, batch=5, num_classes=None, **args):
    """Computed over batches of `batch` rows, merged — must equal the whole-epoch value."""
    metric = make_metric(lookup_metric(name), kind, args, num_classes)
    state = None
    for start in range(0, len(target), batch):
        part = metric.update(
            metric.init(), prob[start : start + batch], target[start : start + batch]
        )
        state = part if state is None else metric.merge(state, part)
    return metric.compute(state)


def auroc_by_pairs(scores, labels):
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_binary_metrics_by_hand():
    prob = torch.tensor([[0.9], [0.2], [0.6], [0.4], [0.7], [0.1], [0.55], [0.3]])
    y = torch.tensor([[1.0], [0.0], [0.0], [1.0], [1.0], [0.0], [1.0], [1.0]])
    predicted = (prob > 0.5).float()
    tp = float(((predicted == 1) & (y == 1)).sum())
    fp = float(((predicted == 1) & (y == 0)).sum())
    fn = float(((predicted == 0) & (y == 1)).sum())
    assert metric_value("accuracy", "binary", prob, y, batch=3) == pytest.approx(5 / 8)
    assert metric_value("accuracy", "binary", prob, y, threshold=0.35) == pytest.approx(6 / 8)
    assert metric_value("precision", "binary", prob, y) == pytest.approx(tp / (tp + fp))
    assert metric_value("recall", "binary", prob, y) == pytest.approx(tp / (tp + fn))
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert metric_value("f1", "binary", prob, y) == pytest.approx(f1)


def test_auroc_is_exact_with_ties_across_batches():
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.2, 0.4, 0.65, 0.05]).reshape(-1, 1)
    labels = torch.tensor([0, 0, 1, 1, 1, 1, 0, 0, 1, 0]).float().reshape(-1, 1)
    expected = auroc_by_pairs(scores.flatten().tolist(), labels.flatten().tolist())
    assert metric_value("auroc", "binary", scores, labels, batch=3) == pytest.approx(expected)


def test_multiclass_metrics_by_hand():
    logits = torch.randn(40, 4, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (40,), generator=torch.Generator().manual_seed(2))
    prob = logits.softmax(-1)
    top1 = float((prob.argmax(-1) == y).float().mean())
    top2 = float((prob.topk(2, -1).indices == y[:, None]).any(-1).float().mean())
    assert metric_value("accuracy", "class", prob, y, batch=7) == pytest.approx(top1)
    assert metric_value("top_k_accuracy", "class", prob, y, batch=7, k=2) == pytest.approx(top2)
    predicted = prob.argmax(-1)
    recalls = [float((predicted[y == c] == c).float().mean()) for c in range(4)]
    macro = metric_value("recall", "class", prob, y, batch=7, num_classes=4)
    assert macro == pytest.approx(sum(recalls) / 4)


def test_regression_metrics_by_hand():
    out = torch.tensor([[1.0], [2.5], [2.0], [8.0], [4.0]])
    y = torch.tensor([[1.5], [2.0], [2.0], [10.0], [5.0]])
    err = out - y
    assert metric_value("mse", "regression", out, y, 2) == pytest.approx(float((err**2).mean()))
    rmse = math.sqrt(float((err**2).mean()))
    assert metric_value("rmse", "regression", out, y, 2) == pytest.approx(rmse)
    assert metric_value("mae", "regression", out, y, 2) == pytest.approx(float(err.abs().mean()))
    mape = float((err / y).abs().mean() * 100)
    assert metric_value("mape", "regression", out, y, 2) == pytest.approx(mape)
    mspe = float(((err / y) ** 2).mean() * 100)
    assert metric_value("mspe", "regression", out, y, 2) == pytest.approx(mspe)


# --- optimizers, groups, schedules --------------------------------------------------------


def ring_spec(optimizer, train=None, layers=None, precision="fp32"):
    return tdsl.Spec(
        name="ring",
        seed=1,
        data=tdsl.Rings(n_positive=96, n_negative=96, split=tdsl.Split(train=0.75, val=0.25)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])],
            layers=layers
            or [
                tdsl.Layer("linear", out_features=6),
                tdsl.Layer("tanh"),
                tdsl.Layer("linear", out_features=1),
            ],
        ),
        loss=tdsl.Loss("bce_with_logits"),
        optimizer=optimizer,
        train=train or tdsl.Train(epochs=4, batch_size=16),
        device=tdsl.Device(name="cpu", precision=precision),
    )


def reference_net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(linear1=nn.Linear(2, 6), tanh1=nn.Tanh(), linear2=nn.Linear(6, 1))
    )


def batches(spec, count):
    return list(itertools.islice(load_data(spec).train.batches(16, order_seed=3), count))


def run_steps(spec, count):
    program = tdsl.compile(spec)
    state = program.init()
    for batch in batches(spec, count):
        state, _ = program.train_step(state, batch)
    return state


def reference_steps(spec, make_optimizer, count):
    net = reference_net(spec.seed)
    opt = make_optimizer(net)
    for batch in batches(spec, count):
        loss = F.binary_cross_entropy_with_logits(net(batch.features[0]), batch.target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


OPTIMIZERS = {
    "sgd_nesterov": (
        tdsl.Optimizer("sgd", lr=0.1, momentum=0.9, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    ),
    "adagrad": (tdsl.Optimizer("adagrad", lr=0.05), lambda p: torch.optim.Adagrad(p, lr=0.05)),
    "rmsprop": (
        tdsl.Optimizer("rmsprop", lr=0.01, alpha=0.9),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9),
    ),
    "nadam_by_class_name": (
        tdsl.Optimizer("nadam", lr=0.01),
        lambda p: torch.optim.NAdam(p, lr=0.01),
    ),
}


@pytest.mark.parametrize("case", OPTIMIZERS, ids=str)
def test_optimizer_matches_pytorch(case):
    optimizer, make = OPTIMIZERS[case]
    spec = ring_spec(optimizer)
    state = run_steps(spec, 4)
    net = reference_steps(spec, lambda net: make(net.parameters()), 4)
    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(state.params[name], tensor, rtol=1e-5, atol=1e-6)


def test_param_groups_match_pytorch_groups():
    optimizer = tdsl.Optimizer(
        "sgd",
        lr=0.1,
        momentum=0.9,
        groups=[
            tdsl.ParamGroup(params="*.weight", weight_decay=0.01),
            tdsl.ParamGroup(params="*.bias", weight_decay=0.0, lr=0.5),
        ],
    )
    spec = ring_spec(optimizer)
    state = run_steps(spec, 4)

    def make(net):
        weights = [p for n, p in net.named_parameters() if n.endswith("weight")]
        biases = [p for n, p in net.named_parameters() if n.endswith("bias")]
        return torch.optim.SGD(
            [
                {"params": weights, "weight_decay": 0.01},
                {"params": biases, "weight_decay": 0.0, "lr": 0.5},
            ],
            lr=0.1,
            momentum=0.9,
        )

    net = reference_steps(spec, make, 4)
    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(state.params[name], tensor, rtol=1e-5, atol=1e-6)


SCHEDULES = {
    "step": (
        tdsl.Schedule("step", step_size=2, gamma=0.5),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
    ),
    "multi_step": (
        tdsl.Schedule("multi_step", milestones=[1, 3], gamma=0.1),
        lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [1, 3], gamma=0.1),
    ),
    "exponential": (
        tdsl.Schedule("exponential", gamma=0.7),
        lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.7),
    ),
    "cosine": (
        tdsl.Schedule("cosine"),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=6),
    ),
    "linear_warmup": (
        tdsl.Schedule("linear_warmup", start_factor=0.25, total_iters=3),
        lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.25, total_iters=3),
    ),
    "one_cycle_per_step": (
        tdsl.Schedule("one_cycle", interval="step"),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=54),
    ),
}


@pytest.mark.parametrize("case", SCHEDULES, ids=str)
def test_schedule_learning_rates_match_pytorch(case):
    schedule, make = SCHEDULES[case]
    spec = ring_spec(
        tdsl.Optimizer("sgd", lr=0.1, schedule=schedule), tdsl.Train(epochs=6, batch_size=16)
    )
    program = tdsl.compile(spec)
    result = tdsl.fit(program, program.init(), load_data(spec))
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    reference = make(opt)
    expected = []
    for _epoch in range(6):
        expected.append(opt.param_groups[0]["lr"])
        for _step in range(9 if schedule.interval == "step" else 1):
            opt.step()
            reference.step()
    if schedule.interval == "step":
        # The history logs the learning rate in force at the end of each epoch.
        expected = [opt_lr for opt_lr in _lrs_at_epoch_ends(make, 6, 9)]
    assert [row["lr"] for row in result.history] == pytest.approx(expected)


def _lrs_at_epoch_ends(make, epochs, steps):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = make(opt)
    lrs = []
    for _ in range(epochs):
        for _ in range(steps):
            opt.step()
            scheduler.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_reduce_on_plateau_follows_its_monitor():
    schedule = tdsl.Schedule("reduce_on_plateau", monitor="val_loss", patience=0, factor=0.5)
    spec = ring_spec(tdsl.Optimizer("sgd", lr=0.1, schedule=schedule))
    program = tdsl.compile(spec)
    state = program.init()
    for val_loss in (1.0, 0.5, 0.7, 0.9):
        state = program.end_epoch(state, {"loss": 0.0, "val_loss": val_loss})
    assert state.lrs == pytest.approx((0.025,))


def test_cosine_warmup_ramps_then_decays():
    schedule = tdsl.Schedule("cosine_warmup", warmup=2, min_lr=0.01)
    spec = ring_spec(
        tdsl.Optimizer("sgd", lr=0.1, schedule=schedule), tdsl.Train(epochs=6, batch_size=16)
    )
    program = tdsl.compile(spec)
    state, lrs = program.init(), []
    for _ in range(6):
        lrs.append(state.lrs[0])
        state = program.end_epoch(state, {"loss": 0.0})
    assert lrs[:3] == pytest.approx([0.0, 0.05, 0.1])
    assert lrs[3] > lrs[4] > lrs[5] > 0.01


# --- regularizers, accumulation, clipping, precision --------------------------------------


@pytest.mark.parametrize("kind", ["l1", "l2", "elastic_net"])
def test_regularizer_gradients_are_numerically_right(kind):
    # Away from 0, where |p| has its kink and finite differences disagree with any gradient.
    g = torch.Generator().manual_seed(0)
    params = [
        (
            (torch.rand(shape, generator=g, dtype=torch.float64) + 0.5)
            * torch.sign(torch.randn(shape, generator=g, dtype=torch.float64))
        ).requires_grad_()
        for shape in [(3, 2), (4,)]
    ]
    reg = tdsl.Regularizer(kind=kind, weight=0.3, l1_ratio=0.4)

    def penalty(*tensors):
        names = [f"p{i}" for i in range(len(tensors))]
        return _regularizer(reg, names)(dict(zip(names, tensors, strict=True)))

    assert torch.autograd.gradcheck(penalty, tuple(params))
    value = float(penalty(*params).detach())
    l1 = sum(float(p.detach().abs().sum()) for p in params)
    l2 = sum(float((p.detach() ** 2).sum()) for p in params) / 2
    expected = {"l1": 0.3 * l1, "l2": 0.3 * l2, "elastic_net": 0.3 * (0.4 * l1 + 0.6 * l2)}[kind]
    assert value == pytest.approx(expected)


def test_accumulation_gives_the_same_update():
    opt = tdsl.Optimizer("sgd", lr=0.1, momentum=0.9)
    whole = run_steps(ring_spec(opt), 3)
    split = run_steps(ring_spec(opt, tdsl.Train(epochs=4, batch_size=16, accumulate=4)), 3)
    for name, tensor in whole.params.items():
        torch.testing.assert_close(split.params[name], tensor, rtol=1e-5, atol=1e-6)


def test_clipping_by_norm_and_value_match_torch():
    spec = ring_spec(
        tdsl.Optimizer("sgd", lr=0.5),
        tdsl.Train(epochs=1, batch_size=16, clip_norm=0.05, clip_value=0.01),
    )
    state = run_steps(spec, 2)
    net = reference_net(spec.seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for batch in batches(spec, 2):
        loss = F.binary_cross_entropy_with_logits(net(batch.features[0]), batch.target)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 0.05)
        nn.utils.clip_grad_value_(net.parameters(), 0.01)
        opt.step()
    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(state.params[name], tensor, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_trains_on_cpu():
    spec = ring_spec(tdsl.Optimizer("adam", lr=0.02), precision="bf16")
    assert tdsl.validate(spec).ok
    program = tdsl.compile(spec)
    result = tdsl.fit(program, program.init(), load_data(spec))
    assert all(math.isfinite(row["loss"]) for row in result.history)
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_regularization_terms_are_reported_separately():
    spec = ring_spec(tdsl.Optimizer("sgd", lr=0.1))
    spec = tdsl.Spec(
        **{
            **{f: getattr(spec, f) for f in ("name", "data", "model", "optimizer")},
            "loss": tdsl.Loss(
                "bce_with_logits",
                regularizers=[
                    tdsl.Regularizer(kind="l1", weight=0.01),
                    tdsl.Regularizer(kind="l1", weight=0.02, params="linear2.*"),
                ],
            ),
        }
    )
    program = tdsl.compile(spec)
    batch = Batch((torch.randn(8, 2),), torch.ones(8, 1))
    _, metrics = program.train_step(program.init(), batch)
    assert {"loss", "l1", "l1_2"} <= set(metrics)


def test_sum_loss_validation():
    base = ring_spec(tdsl.Optimizer("sgd", lr=0.1))

    def with_loss(loss):
        return tdsl.Spec(name="x", data=base.data, model=base.model, loss=loss)

    mixed = with_loss(
        tdsl.Loss("sum", terms=[tdsl.LossTerm("bce_with_logits"), tdsl.LossTerm("bce")])
    )
    report = tdsl.validate(mixed)
    assert "the terms expect different outputs: bce_with_logits logits, bce probabilities" in (
        report.format()
    )
    stray = tdsl.validate(with_loss(tdsl.Loss("mse", terms=[tdsl.LossTerm("l1")])))
    assert "loss.terms: terms are only for kind: sum" in stray.format()
    empty = tdsl.validate(with_loss(tdsl.Loss("sum")))
    assert "a sum loss needs terms" in empty.format()
    typo = tdsl.validate(with_loss(tdsl.Loss("sum", terms=[tdsl.LossTerm("bce_with_logit")])))
    assert "loss.terms[0].kind: unknown loss 'bce_with_logit'" in typo.format()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_training_and_checkpoint_portability(precision, tmp_path):
    spec = ring_spec(tdsl.Optimizer("adam", lr=0.02))
    spec = tdsl.Spec(
        **{
            **{
                f: getattr(spec, f) for f in ("name", "data", "model", "loss", "optimizer", "train")
            },
            "device": tdsl.Device(name="cuda", precision=precision),
        }
    )
    program = tdsl.compile(spec)
    assert program.device.type == "cuda"
    result = tdsl.fit(program, program.init(), load_data(spec))
    assert all(math.isfinite(row["loss"]) for row in result.history)
    assert all(t.device.type == "cuda" for t in result.state.params.values())
    if precision == "fp16":
        assert result.state.scaler is not None
    path = tmp_path / "state.pt"
    torch.save(result.state.to_dict(), path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in loaded["params"].values())
