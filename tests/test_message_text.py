"""No diagnostic repeats a raw Python or torch exception text: every message names the value
written and the rule. The corpus goldens are exactly what `tdsl validate` prints for each case
(tests/test_corpus.py asserts that), so scanning them covers the whole corpus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tdsl
from tdsl.registry.refusals import torch_reason

ROOT = Path(__file__).resolve().parent.parent
GOLDENS = sorted((ROOT / "tests" / "corpus").rglob("*.expected"))

# How Python's and torch's own exception texts read; none may reach a user.
RAW = re.compile(
    r"Traceback|division|modulo|object has no attribute|unsupported operand|"
    r"must be divisible by|NoneType|got an unexpected keyword|takes .* positional|"
    r"Expected .* but got|integer division|can't be greater than|"
    r"Calculated padded input size|non-positive values for delta|"
    r"should be defined either|size mismatch|mat1 and mat2|"
    r"\bweight of size\b|Given groups=|aten::"
)


def test_the_corpus_is_there():
    assert len(GOLDENS) >= 150


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: p.stem)
def test_no_message_is_a_raw_exception_text(golden):
    raw = [line for line in golden.read_text(encoding="utf-8").splitlines() if RAW.search(line)]
    assert not raw, f"{golden.name} repeats an exception's own text:\n" + "\n".join(raw)


@pytest.mark.parametrize(
    "text",
    [
        "integer division or modulo by zero",
        "embed_dim must be divisible by num_heads",
        "'NoneType' object has no attribute 'shape'",
        "Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: [7919, 2]",
        "__init__() got an unexpected keyword argument 'x'",
    ],
)
def test_internal_wording_is_never_passed_on(text):
    assert torch_reason(ValueError(text)) is None


def test_a_plain_rule_from_torch_is_kept_with_the_batch_as_b():
    assert torch_reason(ValueError("Invalid momentum value: -1.0\nmore")) == (
        "Invalid momentum value: -1.0"
    )


def _spec(layers: str) -> str:
    return f"""\
name: t
data: {{kind: random, target: {{kind: class, num_classes: 2}}}}
model:
  inputs: [{{shape: [1, 8, 8]}}]
  layers:
{layers}
    - flatten
    - {{op: linear, out_features: 2}}
loss: cross_entropy
"""


def test_a_torch_refusal_names_the_layer_its_arguments_and_no_raw_text():
    # Conv2d refuses padding: same with a stride, in its own words.
    layers = "    - {op: conv2d, out_channels: 2, kernel_size: 3, stride: 2, padding: same}"
    (error,) = tdsl.validate(_spec(layers)).errors
    assert error.path == ("model", "layers", 0)
    assert "'conv2d1' (conv2d)" in error.message and "stride: 2" in error.message
    assert "torch refused these arguments" in error.message
    assert error.hint == "torch's reason: padding='same' is not supported for strided convolutions"
    assert not RAW.search(error.message + (error.hint or ""))


def test_torch_is_not_asked_about_window_sizes():
    layers = "    - {op: maxpool2d, kernel_size: 9}"
    (error,) = tdsl.validate(_spec(layers)).errors
    assert "has a window of 9 x 9, larger than its input's 8 x 8" in error.message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "Dimension out of range (expected to be in range of [-4, 3], but got 5)",
            "dimension 5 is outside [-4, 3] for this input",
        ),
        (
            "mat1 and mat2 shapes cannot be multiplied (7919x4 and 3x2)",
            "the input's last dimension is 4, the layer's weights expect 3",
        ),
        (
            "Given groups=1, weight of size [4, 3, 3, 3], expected input[7919, 1, 8, 8] to have "
            "3 channels, but got 1 channels instead",
            "the layer expects 3 input channels, the input has 1",
        ),
        (
            "shape '[7919, 7, 7]' is invalid for input of size 506816",
            "shape '[B, 7, 7]' is invalid for input of size B x 64",
        ),
        ("adaptive_avg_pool2d: output_size must be 2", "output_size must be 2"),
    ],
)
def test_common_torch_refusals_are_restated_with_their_numbers(text, reason):
    assert torch_reason(RuntimeError(text)) == reason


def test_pooling_padding_is_checked_before_torch():
    (error,) = tdsl.validate(_spec("    - {op: maxpool2d, kernel_size: 2, padding: 2}")).errors
    assert "has padding 2 x 2, more than half its kernel 2 x 2" in error.message
