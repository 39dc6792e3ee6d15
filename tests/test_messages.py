"""How messages echo what the user wrote: values as YAML spells them, huge names cut short,
`--set` values located at the command line, and lines counted as an editor counts them."""

from __future__ import annotations

import time

import pytest

import tdsl
from tdsl.errors import Diagnostic, format_path
from tdsl.runs.cli import main
from tdsl.spec.frozen import freeze
from tdsl.wording import MAX_SHOWN, describe_value, show

SPEC = """\
name: ring_dnn
data: {kind: rings, split: {train: 0.7, val: 0.3}}
model:
  inputs: [{shape: [2]}]
  layers:
    - {op: linear, out_features: 4}
    - relu
    - {op: linear, out_features: 1}
loss: {kind: bce_with_logits}
optimizer: {kind: adam, lr: 0.01}
train: {epochs: 2, batch_size: 32}
"""


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ((-2,), "[-2]"),
        ([3, [4, 5]], "[3, [4, 5]]"),
        (float("inf"), ".inf"),
        (float("-inf"), "-.inf"),
        (float("nan"), ".nan"),
        (True, "true"),
        (None, "null"),
        (2.5, "2.5"),
        ("fast", "'fast'"),
        (freeze({"op": "linear", "bias": False}), "{op: linear, bias: false}"),
        (["rings", "yes", "a b"], "[rings, 'yes', 'a b']"),
        ({"my key": 1}, "{'my key': 1}"),
    ],
)
def test_values_are_shown_as_yaml_writes_them(value, shown):
    assert show(value) == shown


def test_describe_value_names_yaml_kinds():
    assert describe_value((1, 2)) == "[1, 2] (list)"
    assert describe_value(freeze({"a": 1})) == "{a: 1} (mapping)"
    assert describe_value(float("inf")) == ".inf (float)"
    # Python will not print an integer this long; the message says what it is instead.
    assert describe_value(10**5000) == "an integer of about 5001 digits (int)"


def test_huge_values_are_cut_and_shown_quickly():
    started = time.perf_counter()
    cut = show("x" * 2**20)
    assert cut == "'" + "x" * (MAX_SHOWN - 5) + "...'" and len(cut) == MAX_SHOWN
    assert len(show(list(range(10**6)))) == MAX_SHOWN
    nested = []
    for _ in range(1000):
        nested = [nested]
    assert show(nested) == "[" * 17 + "..." + "]" * 17
    assert time.perf_counter() - started < 1.0


def test_every_diagnostic_cuts_long_quoted_names_but_keeps_prose():
    name = "q" * 10_000
    diagnostic = Diagnostic(("model", name), f"unknown op {name!r}; did you mean 'relu'?")
    assert len(diagnostic.format()) < 3 * MAX_SHOWN
    assert diagnostic.message.endswith("...'; did you mean 'relu'?")
    assert format_path(("train", name)) == "train." + "q" * (MAX_SHOWN - 3) + "..."
    # Apostrophes are not quotes, and a long message of short words is left alone.
    prose = "Kernel size can't be greater than actual input size " * 4
    assert Diagnostic((), prose).message == prose
    path = "/data/" + "deep/" * 30 + "file.csv"
    assert Diagnostic((), f"no such file: {path}").message == f"no such file: {path}"


def test_a_one_megabyte_op_name_is_not_echoed_whole():
    spec = SPEC.replace("- relu", "- {op: relu" + "x" * 2**20 + "}")
    report = tdsl.validate(spec)
    assert [d.path for d in report.errors] == [("model", "layers", 1, "op")]
    assert len(report.format()) < 300


def test_values_in_messages_read_as_written():
    report = tdsl.validate(SPEC.replace("- relu", "- {op: maxpool1d, kernel_size: [-2]}"))
    assert "must be a positive integer (got [-2])" in report.errors[0].message
    report = tdsl.validate(SPEC.replace("batch_size: 32", "batch_size: .inf"))
    assert report.errors[0].message == "expected an integer, got .inf (float)"


def test_non_ascii_names_are_said_to_need_ascii():
    report = tdsl.validate(SPEC.replace("- relu", "- {op: relu, name: naïve}"))
    assert report.errors[0].message == "layer name 'naïve' is not an ASCII identifier"
    assert "ASCII letters, digits and underscores" in report.errors[0].hint


def test_set_values_are_located_at_the_command_line(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("epochs: 2", "epochs: 0"))
    args = ["validate", str(path), "--set", "optimizer.lr=-1", "--set", "train.epoch=3"]
    assert main(args) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "<command line>:1:1: error: optimizer.lr: must be > 0 (got -1.0)" in lines
    assert "<command line>:1:1: error: train.epoch: unknown key 'epoch' in train" in lines
    # The file's own mistake is still located in the file.
    assert f"{path}:11:9: error: train.epochs: must be > 0 (got 0)" in lines


def test_set_replacing_a_section_locates_its_problems_there_too(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    args = ["validate", str(path), "--set", "data={kind: rings, noise: -1}"]
    assert main(args) == 1
    assert "<command line>:1:1: error: data.noise: must be >= 0" in capsys.readouterr().out
    # An override that changes nothing leaves the location in the file.
    assert main(["validate", str(path), "--set", "optimizer.lr=0.01"]) == 0


CLASS_SPEC = """\
name: three_classes
data: {kind: random, n: 64, target: {kind: class, num_classes: 3}}
model:
  inputs: [{shape: [4]}]
  layers: [{op: linear, out_features: 3}]
loss: cross_entropy
metrics: [accuracy, METRIC]
"""


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        (
            "{kind: top_k_accuracy, k: 3}",
            "<spec>:7:44: error: metrics[1].k: top_k_accuracy with k=3 over 3 classes is always"
            " 1.0: k must be less than the number of classes (3)\n"
            "    hint: use k: 2 or less, or accuracy for k: 1",
        ),
        (
            "{kind: top_k_accuracy, k: 7}",
            "<spec>:7:44: error: metrics[1].k: top_k_accuracy with k=7 over 3 classes is always"
            " 1.0: k must be less than the number of classes (3)\n"
            "    hint: use k: 2 or less, or accuracy for k: 1",
        ),
        (  # k is not written: located at the metric, and the message says k is the default
            "top_k_accuracy",
            "<spec>:7:21: error: metrics[1].k: top_k_accuracy with the default k=5 over 3 "
            "classes is always 1.0: k must be less than the number of classes (3)\n"
            "    hint: use k: 2 or less, or accuracy for k: 1",
        ),
        (
            "{kind: top_k_accuracy, k: 0}",
            "<spec>:7:44: error: metrics[1].k: k must be a positive integer, got 0 (int)",
        ),
        (
            "{kind: top_k_accuracy, k: 2.0}",
            "<spec>:7:44: error: metrics[1].k: k must be a positive integer, got 2.0 (float)",
        ),
    ],
)
def test_top_k_accuracy_refuses_k_that_covers_every_class(metric, expected):
    """With k >= the number of classes every row is a hit: the metric is 1.0 every epoch."""
    report = tdsl.validate(CLASS_SPEC.replace("METRIC", metric))
    assert [d.format() for d in report.errors] == [expected]


def test_top_k_accuracy_below_the_number_of_classes_is_valid():
    assert tdsl.validate(CLASS_SPEC.replace("METRIC", "{kind: top_k_accuracy, k: 2}")).ok
    ten = CLASS_SPEC.replace("num_classes: 3", "num_classes: 10").replace(
        "features: 3", "features: 10"
    )
    assert tdsl.validate(ten.replace("METRIC", "top_k_accuracy")).ok  # the default k=5


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\u2029"])
def test_lines_are_counted_as_an_editor_counts_them(separator):
    """YAML breaks lines at NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR too; an editor does
    not, so the reported line must be the editor's."""
    text = f"# a comment ending in an odd line break{separator}\n" + SPEC.replace(
        "name: ring_dnn", f'name: "ring{separator}dnn"'
    ).replace("lr: 0.01", "lr: -1")
    report = tdsl.validate(text)
    lines = text.split("\n")
    wanted = next(i for i, line in enumerate(lines, 1) if "lr: -1" in line)
    location = report.errors[0].location
    assert (location.line, location.column) == (wanted, lines[wanted - 1].index("lr") + 1)


def test_syntax_errors_after_a_line_separator_are_located_for_an_editor():
    text = "name: ring\u2028dnn\ndata: {kind: rings\n"
    report = tdsl.validate(text)
    assert report.errors[0].location.line <= 2  # PyYAML alone would say 3
