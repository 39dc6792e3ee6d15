"""tdsl: a declarative, functional-style training DSL for PyTorch.

Write a spec (YAML or these attrs classes), `validate` it without running anything,
`summary` its model, and (see `compile`) train it.
"""

from tdsl.errors import Diagnostic, Report, SpecError, TdslError
from tdsl.loading import dump, load
from tdsl.spec import (
    Checkpoint,
    Device,
    EarlyStopping,
    Input,
    Layer,
    LinearRegression,
    Loss,
    Metric,
    Model,
    Optimizer,
    ParamGroup,
    RandomData,
    Regularizer,
    Rings,
    Schedule,
    Spec,
    Split,
    Target,
    Train,
)
from tdsl.summary import summarize, summary
from tdsl.validate import validate

__all__ = [
    "Checkpoint",
    "Device",
    "Diagnostic",
    "EarlyStopping",
    "Input",
    "Layer",
    "LinearRegression",
    "Loss",
    "Metric",
    "Model",
    "Optimizer",
    "ParamGroup",
    "RandomData",
    "Regularizer",
    "Report",
    "Rings",
    "Schedule",
    "Spec",
    "SpecError",
    "Split",
    "Target",
    "TdslError",
    "Train",
    "dump",
    "load",
    "summarize",
    "summary",
    "validate",
]
