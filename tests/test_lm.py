"""Language models: class targets per position (losses, metrics, class axis), the text_lm
and addition sources, and generation."""

from __future__ import annotations

import math

import attrs
import pytest
import torch
import torch.nn.functional as F

import tdsl
from tdsl.data import load_data
from tdsl.errors import format_path
from tdsl.registry.losses import PerPosition
from tdsl.registry.metrics import lookup_metric, make_metric
from tdsl.runs.cli import main
from tdsl.runs.directories import RunError, run
from tdsl.runs.generate import generate_run

GPT = """
name: tiny_gpt
seed: 0
data: {data}
model:
  inputs: [{{name: ids, shape: [{length}], dtype: int64}}]
  layers:
    - {{name: wte, op: embedding, inputs: [ids], num_embeddings: {vocab}, embedding_dim: 32}}
    - {{name: pos, op: positions, inputs: [ids]}}
    - {{name: wpe, op: embedding, num_embeddings: {positions}, embedding_dim: 32}}
    - {{name: emb, op: add, inputs: [wte, wpe]}}
    - {{name: ln, op: layer_norm}}
    - {{name: attn, op: self_attention, heads: 2, causal: true}}
    - {{name: res, op: add, inputs: [emb, attn]}}
    - {{name: mlp, op: linear, out_features: 64}}
    - {{op: gelu}}
    - {{name: head, op: linear, out_features: {head}}}
{tail}
loss: {loss}
metrics: {metrics}
optimizer: {{kind: adamw, lr: 0.01}}
train: {{epochs: {epochs}, batch_size: 32}}
"""


def gpt(
    data: str,
    length: int,
    vocab: int,
    positions: int | None = None,
    head: int | None = None,
    tail: str = "",
    loss: str = "cross_entropy",
    metrics: str = "[accuracy, exact_match]",
    epochs: int = 1,
) -> str:
    return GPT.format(
        data=data,
        length=length,
        vocab=vocab,
        positions=positions or length,
        head=head or vocab,
        tail=tail,
        loss=loss,
        metrics=metrics,
        epochs=epochs,
    )


def adder(digits: int = 1, n: int = 100, **kw) -> str:
    data = f"{{kind: addition, digits: {digits}, n: {n}, split: {{train: 0.8, val: 0.2}}}}"
    return gpt(data, 3 * digits + 2, 12, **kw)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "tale.txt"
    path.write_text("the cat sat on the mat. " * 20 + "a dog; ran!")
    return path


def text_lm(path, block: int = 8, extra: str = "", **kw) -> str:
    data = f"{{kind: text_lm, file: {path}, block_size: {block}, vocab_size: 16{extra}}}"
    return gpt(data, block, 16, metrics="[accuracy, perplexity]", **kw)


def errors(text: str) -> list[str]:
    report = tdsl.validate(text)
    return [f"{format_path(d.path)}: {d.message} ({d.hint})" for d in report.errors]


# --- losses and metrics over positions -------------------------------------------------------


def test_per_position_loss_is_torchs_cross_entropy_over_positions():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7)  # [B, T, C]
    target = torch.randint(0, 7, (3, 5))
    target[0, :2] = -100
    loss = PerPosition(torch.nn.CrossEntropyLoss(), -1)(logits, target)
    expected = F.cross_entropy(logits.transpose(1, 2), target)  # torch's [B, C, T] form
    assert loss == pytest.approx(float(expected))
    first = PerPosition(torch.nn.CrossEntropyLoss(), 1)(logits.transpose(1, 2), target)
    assert first == pytest.approx(float(expected))


def test_metrics_skip_ignored_positions_and_perplexity_is_exact_over_batches():
    torch.manual_seed(1)
    logits = torch.randn(6, 4, 5)
    target = torch.randint(0, 5, (6, 4))
    target[:, 0] = -100
    prob = logits.softmax(-1)
    accuracy = make_metric(lookup_metric("accuracy"), "class", {}, 5, -100)
    state = accuracy.update(accuracy.init(), prob, target)
    kept = target != -100
    assert accuracy.compute(state) == pytest.approx(
        float((logits.argmax(-1)[kept] == target[kept]).double().mean())
    )
    perplexity = make_metric(lookup_metric("perplexity"), "class", {}, 5, -100)
    halves = [
        perplexity.update(perplexity.init(), prob[s], target[s]) for s in (slice(0, 2), slice(2, 6))
    ]
    merged = perplexity.merge(*halves)
    expected = math.exp(float(F.cross_entropy(logits.transpose(1, 2), target)))
    assert perplexity.compute(merged) == pytest.approx(expected, rel=1e-6)


def test_exact_match_counts_rows_whose_labelled_positions_are_all_right():
    target = torch.tensor([[-100, 1, 2], [-100, 0, 0], [-100, -100, -100]])
    predicted = torch.tensor([[3, 1, 2], [0, 0, 1], [0, 0, 0]])  # right, wrong, unlabelled
    prob = F.one_hot(predicted, 4).float()
    metric = make_metric(lookup_metric("exact_match"), "class", {}, 4, -100)
    state = metric.update(metric.init(), prob, target)
    assert metric.compute(state) == 0.5


# --- the class axis ------------------------------------------------------------------------


def test_class_axis_is_inferred_or_refused_when_ambiguous():
    assert tdsl.validate(adder()).ok  # [B, 5, 12] against [B, 5]: classes last
    first = adder(tail="    - {op: transpose, dim0: 1, dim1: 2}")
    assert tdsl.validate(first).ok  # [B, 12, 5]: classes on axis 1
    square = gpt("{kind: addition, digits: 1, n: 100}", 5, 12, positions=5, head=5)
    (message,) = errors(square)
    assert "need an output of shape [B, 5, 12] (classes last) or [B, 12, 5]" in message


def test_an_ambiguous_class_axis_asks_for_class_dim(tmp_path):
    ids = torch.randint(0, 4, (20, 4))
    torch.save({"x": ids, "y": ids % 4}, tmp_path / "t.pt")
    data = f"{{kind: tensors, file: {tmp_path / 't.pt'}, target_kind: class, num_classes: 4}}"
    spec = gpt(data, 4, 4, head=4)  # output [B, 4, 4] for targets [B, 4]
    (message,) = errors(spec)
    assert "ambiguous" in message and "class_dim: -1" in message
    assert tdsl.validate(
        spec.replace("loss: cross_entropy", "loss: {kind: cross_entropy, class_dim: -1}")
    ).ok
    (bad,) = errors(
        spec.replace("loss: cross_entropy", "loss: {kind: cross_entropy, class_dim: 0}")
    )
    assert bad.startswith("loss.class_dim: class_dim must be 1 or -1")


def test_ignore_index_checks():
    (message,) = errors(adder(loss="{kind: cross_entropy, ignore_index: 3}"))
    assert "marks its prompt positions with -100" in message and "ignore_index: -100" in message


def test_ignore_index_outside_the_vocabulary(text_file):
    (message,) = errors(text_lm(text_file, loss="{kind: cross_entropy, ignore_index: 99}"))
    assert message.startswith("loss.ignore_index: ignore_index 99 is outside the vocabulary")
    assert tdsl.validate(text_lm(text_file, loss="{kind: cross_entropy, ignore_index: 1}")).ok


# --- the sources ---------------------------------------------------------------------------


def test_addition_rows_spell_the_sum_reversed_and_ignore_the_prompt():
    spec = tdsl.load(adder(digits=2, n=500))
    rows = load_data(spec).train
    x, y = rows.features[0], rows.target
    assert x.shape[1] == 8 and (y[:, :5] == -100).all()
    a = x[:, 0] * 10 + x[:, 1]
    b = x[:, 3] * 10 + x[:, 4]
    total = y[:, 5] + 10 * y[:, 6] + 100 * y[:, 7]  # least significant digit first
    assert torch.equal(total, a + b)
    assert (x[:, 2] == 10).all() and (x[:, 5] == 11).all()
    problems = set(zip(a.tolist(), b.tolist(), strict=True))
    assert len(problems) == len(a)  # distinct problems


def test_addition_n_beyond_the_distinct_problems_is_refused():
    (message,) = errors(adder(digits=1, n=101))
    assert message.startswith("data.n: there are only 100 distinct 1-digit additions")


def test_text_lm_windows_split_by_position_with_a_training_vocabulary(text_file):
    spec = tdsl.load(text_lm(text_file, extra=", stride: 3"))
    splits = load_data(spec)
    x, y = splits.train.features[0], splits.train.target
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(x[1, :-3], x[0, 3:])
    tokens = splits.fitted.state["tokens"]
    assert tokens[0] is None and ";" not in tokens and "!" not in tokens  # only in val
    text = text_file.read_text()
    start = round(len(text) * 0.9)  # the val part: the end of the text
    decoded = "".join(tokens[i] or "?" for i in splits.val.features[0][0].tolist())
    expected = "".join(c if c in tokens else "?" for c in text[start : start + 8])
    assert decoded == expected
    assert (splits.val.features[0] == 0).any()  # characters only the val part has


def test_a_text_shorter_than_a_window_is_refused(text_file):
    val, train = sorted(errors(text_lm(text_file, block=450, positions=450)), reverse=True)
    assert train.startswith("data.block_size: the training part (0.9 of the text) of ")
    assert "has 442 tokens, fewer than one window of block_size + 1 = 451" in train
    assert val.startswith("data.split.val: the validation part (0.1 of the text)")


def test_block_size_beyond_the_position_table_is_located(text_file):
    (message,) = errors(text_lm(text_file, block=8, positions=6))
    assert message == (
        "data.block_size: block_size 8 is larger than the position table: embedding 'wpe' "
        "has 6 rows (set block_size to at most 6, or num_embeddings: 8)"
    )


# --- training and generation ---------------------------------------------------------------


def test_exact_match_equals_greedy_decoding_on_a_trained_adder():
    spec = tdsl.load(adder(epochs=30))
    program = tdsl.compile(spec)
    rows = load_data(spec).train
    state = tdsl.fit(program, program.init(), load_data(spec)).state
    teacher_forced = tdsl.evaluate(program, state, rows)["exact_match"]
    x, y = rows.features[0], rows.target
    generated = program.generate(state, x[:, :4], 2)[:, 4:]  # from `a+b=`: the sum
    greedy = float((generated == y[:, 3:]).all(dim=1).double().mean())
    assert 0 < teacher_forced < 1  # trained part of the way: a real comparison
    assert greedy == pytest.approx(teacher_forced)


def test_predict_generates_text_for_a_language_model_run(tmp_path, text_file, capsys):
    spec = tmp_path / "lm.yaml"
    spec.write_text(text_lm(text_file))
    assert main(["run", str(spec), "--out", str(tmp_path / "lm")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "lm"), "--generate", "12", "--prompt", "the c"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the c") and len(out) == len("the c") + 12 + 1
    sampled = ["predict", str(tmp_path / "lm"), "--generate", "12", "--temperature", "1"]
    assert main([*sampled, "--top-k", "3", "--seed", "4"]) == 0
    first = capsys.readouterr().out
    assert main([*sampled, "--top-k", "3", "--seed", "4"]) == 0
    assert capsys.readouterr().out == first  # seeded


def test_generation_refuses_runs_that_are_not_language_models(tmp_path):
    from tests.helpers import ring_spec

    spec = ring_spec(tdsl.Optimizer("adam"))
    spec = attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=1))
    directory, _ = run(spec, tmp_path / "ring")
    with pytest.raises(RunError, match="not a language-model run"):
        generate_run(directory, 5)


def test_mean_iou_and_dice_over_pixels_skip_ignored_ones():
    target = torch.tensor([[[0, 1], [1, 255]]])  # [B, H, W], 255 unlabelled
    predicted = torch.tensor([[[0, 1], [0, 2]]])
    prob = F.one_hot(predicted, 3).float()  # class-last [B, H, W, C]
    values = {}
    for name in ("mean_iou", "dice"):
        metric = make_metric(lookup_metric(name), "class", {}, 3, 255)
        values[name] = metric.compute(metric.update(metric.init(), prob, target))
    # class 0: tp 1, fp 1; class 1: tp 1, fn 1; class 2 never occurs (the 255 pixel is out)
    assert values["mean_iou"] == pytest.approx(0.5)
    assert values["dice"] == pytest.approx(2 / 3)
