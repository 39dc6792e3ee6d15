"""tdsl: a declarative, functional-style training DSL for PyTorch.

Write a spec (YAML or these attrs classes), `validate` it without running anything,
`summary` its model, `compile` it into a module and pure step functions, and `fit` it.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Names are imported on first use (PEP 562), so `tdsl --help` and `import tdsl.errors` do not
# pay for importing torch; `from tdsl import X` and `tdsl.X` work as before.
_WHERE = {
    "MlflowTracking": "tdsl.spec",
    "Tracking": "tdsl.spec",
    "Addition": "tdsl.spec",
    "TextLM": "tdsl.spec",
    "Arrays": "tdsl.spec",
    "FitResult": "tdsl.train.loops",
    "RunResult": "tdsl.runs.directories",
    "evaluate_run": "tdsl.runs.directories",
    "predict_run": "tdsl.runs.directories",
    "load_model": "tdsl.runs.inference",
    "LoadedModel": "tdsl.runs.inference",
    "Predictions": "tdsl.runs.inference",
    "resume": "tdsl.runs.resuming",
    "run": "tdsl.runs.directories",
    "Block": "tdsl.spec",
    "Bundled": "tdsl.spec",
    "Checkpoint": "tdsl.spec",
    "Compile": "tdsl.spec",
    "Column": "tdsl.spec",
    "Device": "tdsl.spec",
    "Diagnostic": "tdsl.errors",
    "EarlyStopping": "tdsl.spec",
    "ImageFolder": "tdsl.spec",
    "Input": "tdsl.spec",
    "InitFrom": "tdsl.spec",
    "Initializer": "tdsl.spec",
    "Layer": "tdsl.spec",
    "LinearRegression": "tdsl.spec",
    "Loss": "tdsl.spec",
    "LossTerm": "tdsl.spec",
    "Metric": "tdsl.spec",
    "Model": "tdsl.spec",
    "Optimizer": "tdsl.spec",
    "ParamGroup": "tdsl.spec",
    "ParamSelector": "tdsl.spec",
    "Program": "tdsl.train.program",
    "PythonData": "tdsl.spec",
    "RandomData": "tdsl.spec",
    "Regularizer": "tdsl.spec",
    "Report": "tdsl.errors",
    "Rings": "tdsl.spec",
    "Schedule": "tdsl.spec",
    "Spec": "tdsl.spec",
    "SpecError": "tdsl.errors",
    "Split": "tdsl.spec",
    "Table": "tdsl.spec",
    "ParquetTable": "tdsl.spec",
    "Target": "tdsl.spec",
    "TargetColumn": "tdsl.spec",
    "TdslError": "tdsl.errors",
    "Segmentation": "tdsl.spec",
    "Shapes": "tdsl.spec",
    "Teacher": "tdsl.spec",
    "Tensors": "tdsl.spec",
    "Text": "tdsl.spec",
    "TimeSeries": "tdsl.spec",
    "Train": "tdsl.spec",
    "TrainState": "tdsl.train.state",
    "compile": "tdsl.train.program",
    "dump": "tdsl.spec.load_dump",
    "evaluate": "tdsl.train.loops",
    "fit": "tdsl.train.loops",
    "load": "tdsl.spec.load_dump",
    "load_data": "tdsl.data",
    "predict": "tdsl.train.loops",
    "summarize": "tdsl.check.summary",
    "summary": "tdsl.check.summary",
    "validate": "tdsl.check.pipeline",
}

__version__ = importlib.import_module("tdsl.runs.version").package_version()  # no torch

if TYPE_CHECKING:  # what type checkers and editors see
    from tdsl.check.pipeline import validate
    from tdsl.check.summary import summarize, summary
    from tdsl.data import load_data
    from tdsl.errors import Diagnostic, Report, SpecError, TdslError
    from tdsl.runs.directories import RunResult, evaluate_run, predict_run, run
    from tdsl.runs.inference import LoadedModel, Predictions, load_model
    from tdsl.runs.resuming import resume
    from tdsl.spec import (
        Addition,
        Arrays,
        Block,
        Bundled,
        Checkpoint,
        Column,
        Compile,
        Device,
        EarlyStopping,
        ImageFolder,
        InitFrom,
        Initializer,
        Input,
        Layer,
        LinearRegression,
        Loss,
        LossTerm,
        Metric,
        MlflowTracking,
        Model,
        Optimizer,
        ParamGroup,
        ParamSelector,
        ParquetTable,
        PythonData,
        RandomData,
        Regularizer,
        Rings,
        Schedule,
        Segmentation,
        Shapes,
        Spec,
        Split,
        Table,
        Target,
        TargetColumn,
        Teacher,
        Tensors,
        Text,
        TextLM,
        TimeSeries,
        Tracking,
        Train,
    )
    from tdsl.spec.load_dump import dump, load
    from tdsl.train.loops import FitResult, evaluate, fit, predict
    from tdsl.train.program import Program, compile
    from tdsl.train.state import TrainState

__all__ = [
    "Addition",
    "Arrays",
    "Block",
    "Bundled",
    "Checkpoint",
    "Compile",
    "Column",
    "Device",
    "Diagnostic",
    "EarlyStopping",
    "FitResult",
    "ImageFolder",
    "InitFrom",
    "Initializer",
    "Input",
    "Layer",
    "LinearRegression",
    "LoadedModel",
    "Loss",
    "LossTerm",
    "Metric",
    "MlflowTracking",
    "Model",
    "Optimizer",
    "ParamGroup",
    "ParamSelector",
    "Predictions",
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
    "ParquetTable",
    "Target",
    "TargetColumn",
    "TdslError",
    "Segmentation",
    "Shapes",
    "Teacher",
    "Tensors",
    "Text",
    "TextLM",
    "TimeSeries",
    "Tracking",
    "Train",
    "TrainState",
    "compile",
    "dump",
    "evaluate",
    "evaluate_run",
    "fit",
    "load",
    "load_data",
    "load_model",
    "predict",
    "predict_run",
    "resume",
    "run",
    "summarize",
    "summary",
    "validate",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tdsl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once; later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
