"""Synthetic sources generate their rows in memory: a count beyond the limit is a located
range error, not minutes of generating followed by running out of memory."""

import pytest

from tdsl.check.pipeline import validate
from tdsl.spec.values import MAX_GENERATED_ROWS

SPEC = """name: big
data: {DATA}
model: {inputs: [{shape: [2]}], layers: [{op: linear, out_features: 1}]}
loss: bce_with_logits
optimizer: {kind: sgd, lr: 0.1}
"""


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("{kind: rings, n_positive: 10000000000}", "n_positive"),
        ("{kind: rings, n_negative: 10000001}", "n_negative"),
        ("{kind: linear_regression, n: 10000000000}", "n"),
        ("{kind: teacher, n: 10000000000, features: 2}", "n"),
        ("{kind: random, n: 10000000000, target: {kind: binary}}", "n"),
        ("{kind: shapes, n: 10000000000}", "n"),
        ("{kind: addition, n: 10000000000}", "n"),
    ],
)
def test_a_generated_row_count_beyond_the_limit_is_a_range_error(data, field):
    report = validate(SPEC.replace("{DATA}", data))
    limit = f"{MAX_GENERATED_ROWS:,}"
    errors = [d for d in report.errors if d.path == ("data", field)]
    assert errors, report.format()
    assert errors[0].message.startswith(f"must be at most {limit} (got ")
    assert errors[0].location is not None and errors[0].location.line == 2


def test_the_limit_itself_is_accepted():
    report = validate(SPEC.replace("{DATA}", f"{{kind: rings, n_positive: {MAX_GENERATED_ROWS}}}"))
    assert not [d for d in report.errors if d.path == ("data", "n_positive")]
