"""Did-you-mean by meaning: other frameworks' names suggest tdsl's, and are never accepted."""

from __future__ import annotations

import re

import pytest

import tdsl
from tdsl.registry.aliases import ALIASES, suggest
from tdsl.registry.losses import loss_names
from tdsl.registry.metrics import metric_names
from tdsl.registry.ops import all_op_names
from tdsl.registry.optimizers import optimizer_names, schedule_names

NAMES = {
    "loss": loss_names,
    "metric": metric_names,
    "op": all_op_names,
    "optimizer": optimizer_names,
    "schedule": schedule_names,
}


@pytest.mark.parametrize("vocabulary", sorted(ALIASES))
def test_every_alias_points_at_a_real_name_and_is_not_one(vocabulary):
    names = set(NAMES[vocabulary]())
    for alias, meant in ALIASES[vocabulary].items():
        assert set(meant) <= names, (alias, meant)
        # Keys are normalized; one equal to a lower-cased torch name only suggests tdsl's
        # name for a differently cased spelling (ReduceLROnPlateau), never replaces it.
        assert alias == re.sub(r"[^a-z0-9]", "", alias), alias


@pytest.mark.parametrize(
    ("vocabulary", "word", "hint"),
    [
        ("loss", "BCEWithLogits", "did you mean 'bce_with_logits'?"),
        ("loss", "keras.losses.CategoricalCrossentropy", "did you mean 'cross_entropy'?"),
        ("loss", "MSELoss", "did you mean 'mse'?"),
        ("schedule", "plateau", "did you mean 'reduce_on_plateau'?"),
        ("schedule", "StepLR", "did you mean 'step'?"),
        ("metric", "acc", "did you mean 'accuracy'?"),
        ("op", "BatchNormalization", "did you mean 'batchnorm'?"),
        ("op", "Conv1D", "did you mean 'conv1d'?"),
        ("op", "relux", "did you mean 'relu' or 'rrelu' or 'relu6'?"),  # spelling still works
    ],
)
def test_suggestions_by_meaning(vocabulary, word, hint):
    assert suggest(vocabulary, word, NAMES[vocabulary]()) == hint


def test_an_alias_only_suggests():
    spec = """\
name: t
data: {kind: rings}
model:
  inputs: [{shape: [2]}]
  layers: [{op: Dense, out_features: 1}]
loss: BCEWithLogitsLoss
"""
    report = tdsl.validate(spec)
    assert [(e.path, e.hint) for e in report.errors] == [
        (("model", "layers", 0, "op"), "did you mean 'linear'?"),
        (("loss", "kind"), "did you mean 'bce_with_logits'?"),
    ]
