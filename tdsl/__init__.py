"""tdsl: a declarative, functional-style training DSL for PyTorch.

Write a spec (YAML or these attrs classes), `validate` it without running anything,
`summary` its model, `compile` it into a module and pure step functions, and `fit` it.
"""

from tdsl.check.pipeline import validate
from tdsl.check.summary import summarize, summary
from tdsl.data import load_data
from tdsl.errors import Diagnostic, Report, SpecError, TdslError
from tdsl.runs.directories import RunResult, evaluate_run, predict_run, resume, run
from tdsl.runs.version import package_version
from tdsl.spec import (
    Arrays,
    Block,
    Bundled,
    Checkpoint,
    Column,
    Device,
    EarlyStopping,
    ImageFolder,
    Input,
    Layer,
    LinearRegression,
    Loss,
    LossTerm,
    Metric,
    Model,
    Optimizer,
    ParamGroup,
    PythonData,
    RandomData,
    Regularizer,
    Rings,
    Schedule,
    Spec,
    Split,
    Table,
    Target,
    Teacher,
    Tensors,
    Text,
    TimeSeries,
    Train,
)
from tdsl.spec.load_dump import dump, load
from tdsl.train.loops import FitResult, evaluate, fit, predict
from tdsl.train.program import Program, compile
from tdsl.train.state import TrainState

__version__ = package_version()

__all__ = [
    "Arrays",
    "Block",
    "Bundled",
    "Checkpoint",
    "Column",
    "Device",
    "Diagnostic",
    "EarlyStopping",
    "FitResult",
    "ImageFolder",
    "Input",
    "Layer",
    "LinearRegression",
    "Loss",
    "LossTerm",
    "Metric",
    "Model",
    "Optimizer",
    "ParamGroup",
    "Program",
    "PythonData",
    "RandomData",
    "Regularizer",
    "Report",
    "Rings",
    "RunResult",
    "Schedule",
    "Spec",
    "SpecError",
    "Split",
    "Table",
    "Target",
    "TdslError",
    "Teacher",
    "Tensors",
    "Text",
    "TimeSeries",
    "Train",
    "TrainState",
    "compile",
    "dump",
    "evaluate",
    "evaluate_run",
    "fit",
    "load",
    "load_data",
    "predict",
    "predict_run",
    "resume",
    "run",
    "summarize",
    "summary",
    "validate",
]
