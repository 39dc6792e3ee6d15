"""`tdsl init DATA`: a first spec for a data file, to edit rather than write from nothing.

A CSV file (with `--target`) gets its columns inferred — numbers standardized, a few
categories one-hot, identifiers and free text left out, each choice commented — the task
from the target column (0/1: binary; a few integers or any text: classes; other numbers:
regression) and a small MLP whose input width is what the columns give. A folder of
per-class image folders gets a small CNN; a `label<TAB>text` file an embedding with mean
pooling. Every spec has a loss and metrics for its task and early stopping on val_loss.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from tdsl import spec as S
from tdsl.data import data_signature
from tdsl.data.column_inference import column_kind, is_number
from tdsl.data.csvfile import read_csv
from tdsl.errors import TdslError
from tdsl.special_files import special_file
from tdsl.wording import did_you_mean

MAX_CATEGORIES = 20  # more distinct texts than this: an identifier or free text, left out
MISSING = frozenset(S.Table.__attrs_attrs__.missing.default)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class ScaffoldError(TdslError):
    """`tdsl init` cannot make a spec of this data."""


@attrs.frozen
class Task:
    kind: str  # binary | class | regression
    classes: int = 1

    @property
    def outputs(self) -> int:
        return self.classes if self.kind == "class" else 1


def scaffold(data: Path, out: Path, target: str | None = None) -> str:
    """The YAML text of a spec for `data`, its paths relative to where `out` will be."""
    if not data.exists():
        raise ScaffoldError(f"no such file or folder: {data}")
    relative = Path(os.path.relpath(data.absolute(), out.absolute().parent)).as_posix()
    if relative.startswith("../.."):  # far away: the absolute path reads better
        relative = data.absolute().as_posix()
    if data.is_dir():
        return _images(data, relative)
    kind = special_file(data)
    if kind is not None:  # a FIFO would block the read forever
        raise ScaffoldError(f"{data} is {kind}, not a regular file")
    if data.suffix.lower() == ".csv":
        if target is None:
            raise ScaffoldError(
                f"a CSV file needs --target COLUMN: the column to predict in {data}"
            )
        return _csv(data, relative, target)
    if data.suffix.lower() in (".tsv", ".txt"):
        return _text(data, relative)
    raise ScaffoldError(
        f"cannot tell what {data} holds: give a .csv file (with --target), a .tsv/.txt file "
        "of label<TAB>text lines, or a folder of per-class image folders"
    )


def task_of(cells: list[str]) -> Task:
    present = [c.strip() for c in cells if c.strip() not in MISSING]
    values = {c for c in present}
    if all(is_number(c) for c in present):
        numbers = {float(c) for c in values}
        if numbers <= {0.0, 1.0}:
            return Task("binary")
        if all(n.is_integer() and n >= 0 for n in numbers) and len(numbers) <= MAX_CATEGORIES:
            return Task("class", int(max(numbers)) + 1)
        return Task("regression")
    return Task("class", len(values))


def _column(name: str, cells: list[str]) -> tuple[dict | None, str]:
    """The column's spec (None: left out) and a comment saying why."""
    present = [c.strip() for c in cells if c.strip() not in MISSING]
    gaps = len(cells) - len(present)
    distinct = len(set(present))
    if column_kind(cells, MISSING) == "number":
        numbers = [float(c) for c in present]
        if (
            distinct == len(cells)
            and numbers == sorted(numbers)
            and all(n.is_integer() for n in numbers)
        ):
            return None, "left out: a different whole number on every row, counting up (an id)"
        column: dict = {"name": name, "transform": "standardize"}
        if gaps:
            column |= {"fill": "median", "indicator": True}
            return column, f"numbers, {gaps} missing: the median and a was-missing column"
        return column, "numbers"
    if not present:
        return None, "left out: every cell is missing"
    if distinct > MAX_CATEGORIES and gaps > len(cells) / 3:
        return {"name": name, "transform": "missing"}, f"{gaps} missing: only whether it is"
    if distinct > MAX_CATEGORIES:
        return None, f"left out: {distinct} different texts (an identifier or free text?)"
    return {"name": name, "transform": "onehot", "unknown": True}, f"{distinct} categories"


def _flow(mapping: dict) -> str:
    return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in mapping.items()) + "}"


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        plain = value.replace("_", "").replace("-", "").isalnum() and not is_number(value)
        return value if plain and value.lower() not in ("true", "false", "null") else repr(value)
    return str(value)


def _csv(data: Path, relative: str, target: str) -> str:
    table = read_csv(data, ",", (), text=True)
    if target not in table.header:
        hint = did_you_mean(target, table.header)
        raise ScaffoldError(f"no column {target!r} in {data}" + (f" ({hint})" if hint else ""))
    task = task_of(table.column(target))
    lines, columns = [], []
    for name in table.header:
        if name == target:
            continue
        column, why = _column(name, table.column(name))
        if column is None:
            lines.append(f"    # {name}: {why}")
        else:
            columns.append(column)
            lines.append(f"    - {_flow(column):<58} # {why}")
    if not columns:
        raise ScaffoldError(f"no column of {data} besides {target!r} can be a feature")
    source = S.Table(
        file=str(data.absolute()),
        columns=tuple(S.Column(**c) for c in columns),
        target=target,
        target_kind=task.kind,
    )
    width = data_signature(source).feature_shape[0]
    stratify = "true" if task.kind != "regression" else "false"
    head = f"""# Made by `tdsl init {data.name} --target {target}`: a first spec to edit.
name: {_scalar(data.stem)}
seed: 0
data:
  kind: csv
  file: {_scalar(relative)}
  target: {_scalar(target)}
  target_kind: {task.kind}
  columns:
{chr(10).join(lines)}
  split: {{train: 0.8, val: 0.2, stratify: {stratify}}}
model:
  inputs:
    - {{shape: [{width}]}}
  layers:
    - {{op: linear, out_features: 32}}
    - relu
    - {{op: dropout, p: 0.1}}
    - {{op: linear, out_features: 16}}
    - relu
    - {{op: linear, out_features: {task.outputs}}}
"""
    return head + _objective(task, batch_size=32, lr=0.003)


def _objective(task: Task, batch_size: int, lr: float) -> str:
    loss, metrics = {
        "binary": ("bce_with_logits", "[accuracy, auroc]"),
        "class": ("cross_entropy", "[accuracy]"),
        "regression": ("mse", "[mae, rmse]"),
    }[task.kind]
    return f"""loss: {loss}
optimizer: {{kind: adam, lr: {lr}}}
metrics: {metrics}
train:
  epochs: 50
  batch_size: {batch_size}
  early_stopping: {{monitor: val_loss, patience: 5}}
"""


def _images(folder: Path, relative: str) -> str:
    classes = sorted(
        p.name
        for p in folder.iterdir()
        if p.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir())
    )
    if len(classes) < 2:
        raise ScaffoldError(
            f"{folder} needs a sub-folder of PNG/JPEG images per class; found {len(classes)}"
        )
    task = Task("binary") if len(classes) == 2 else Task("class", len(classes))
    return f"""# Made by `tdsl init {folder.name}/`: a first spec to edit.
# Classes, in sorted order: {", ".join(classes)}.
name: {_scalar(folder.name)}
seed: 0
data:
  kind: images
  folder: {_scalar(relative)}
  size: [32, 32]                   # every image is resized to this
  target_kind: {task.kind}
  random_flip: true
  split: {{train: 0.8, val: 0.2, stratify: true}}
model:
  inputs:
    - {{shape: [3, 32, 32]}}
  layers:
    - {{op: conv2d, out_channels: 16, kernel_size: 3, padding: 1}}
    - relu
    - {{op: maxpool2d, kernel_size: 2}}
    - {{op: conv2d, out_channels: 32, kernel_size: 3, padding: 1}}
    - relu
    - {{op: adaptive_avgpool2d, output_size: [1, 1]}}
    - flatten
    - {{op: linear, out_features: {task.outputs}}}
""" + _objective(task, batch_size=32, lr=0.001)


def _text(file: Path, relative: str) -> str:
    labels, longest = [], 0
    with file.open(encoding="utf-8") as handle:
        for line in handle:
            label, tab, text = line.rstrip("\n").partition("\t")
            if tab:
                labels.append(label)
                longest = max(longest, len(text.split()))
    if not labels:
        raise ScaffoldError(f"{file} has no label<TAB>text lines")
    task = task_of(labels)
    if task.kind == "regression":
        raise ScaffoldError(f"the labels of {file} are numbers, not classes")
    length = min(max(longest, 8), 200)
    return f"""# Made by `tdsl init {file.name}`: a first spec to edit.
name: {_scalar(file.stem)}
seed: 0
data:
  kind: text
  file: {_scalar(relative)}
  target_kind: {task.kind}
  vocab_size: 10000
  length: {length}                      # tokens per text: padded or cut to this
  split: {{train: 0.8, val: 0.2, stratify: true}}
model:
  inputs:
    - {{shape: [{length}], dtype: int64}}
  layers:
    - {{op: embedding, num_embeddings: 10000, embedding_dim: 32, padding_idx: 1}}
    - {{op: mean, dim: 1}}                # the average of the tokens' vectors
    - {{op: linear, out_features: {task.outputs}}}
""" + _objective(task, batch_size=32, lr=0.01)
