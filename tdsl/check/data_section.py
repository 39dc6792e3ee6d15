"""Validation of the data section: split fractions, files, columns and cells, and whether
what the data yields fits the model's inputs. Each check appends diagnostics; none raises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tdsl import spec as S
from tdsl.check.training_setup import default_monitor
from tdsl.data import bundled, data_signature, is_synthetic, prepare, synthetic
from tdsl.data.base import DataError, DataSignature, context, integer_dtype, path_fields
from tdsl.data.recorded import recorded
from tdsl.errors import Diagnostics
from tdsl.model.graph import Graph

# Split files by data kind: (val, test) field names.
_SPLIT_FILES = {
    S.Tensors: ("val_file", "test_file"),
    S.Table: ("val_file", "test_file"),
    S.ParquetTable: ("val_file", "test_file"),
    S.Text: ("val_file", "test_file"),
    S.ImageFolder: ("val_folder", "test_folder"),
}
# The field that bounds the integer ids a source yields.
_ID_FIELDS = {S.RandomData: "int_high", S.Text: "vocab_size", S.TextLM: "vocab_size"}
_SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


def check_data(
    spec: S.Spec, diags: Diagnostics, allow_imports: Sequence[str] = ()
) -> DataSignature | None:
    """Every problem with the data section; the signature when the data could be read.
    A `python` source's factory is imported only under the `allow_imports` prefixes."""
    data = spec.data
    split = data.split
    total = split.train + split.val + split.test
    if abs(total - 1.0) > 1e-6:
        diags.error(("data", "split"), f"split fractions must sum to 1 (got {total:g})")
    if split.train == 0:
        diags.error(("data", "split", "train"), "the training split is empty")
    for which, key in zip(("val", "test"), _SPLIT_FILES.get(type(data), ()), strict=False):
        if getattr(data, key) is not None and getattr(split, which) == 0:
            diags.error(
                ("data", "split", which),
                f"is 0, but {key} gives {'validation' if which == 'val' else 'test'} rows",
                f"give split.{which} a non-zero share, or remove {key}",
            )
    kind = getattr(data, "target_kind", None) or getattr(
        getattr(data, "target", None), "kind", None
    )
    stratify_ok = not (split.stratify and kind == "regression")
    if not stratify_ok:
        diags.error(("data", "split", "stratify"), "stratify applies to binary and class targets")
    if isinstance(data, S.Teacher) and data.num_classes < 2:
        diags.error(("data", "num_classes"), f"must be >= 2 (got {data.num_classes})")
    if is_synthetic(data):
        found = synthetic.problems(data)
        for problem in found:
            diags.error(("data", *problem.path), problem.message, problem.hint)
        if found:
            return None
        signature = synthetic.signature(data, context(spec))
    elif (found := recorded(data)) is not None:  # a run's data as it recorded it: not read
        signature = found
    else:
        try:
            if isinstance(data, S.Bundled):  # known sizes: validating loads nothing
                signature = bundled.signature(data, context(spec))
            else:
                signature = prepare(data, context(spec), allow_imports=allow_imports)[1]
        except DataError as exc:
            for problem in exc.problems:
                diags.error(("data", *problem.path), problem.message, problem.hint)
            return None
    if spec.model is not None:  # else its section failed to convert: nothing to compare
        _check_features(spec, signature, diags)
    if abs(total - 1.0) <= 1e-6 and split.train > 0 and stratify_ok:  # else counts mislead
        _check_rows(spec, signature, diags)
    return signature


def split_rows(spec: S.Spec, signature: DataSignature | None) -> dict[str, int] | None:
    """Rows per split in use: train, and val and test where the spec gives them a fraction
    or a file (0 when their share rounds to nothing). None where unknown."""
    if signature is None or signature.rows is None:
        return None
    split, found = spec.data.split, signature.rows
    return {
        which: found.get(which, 0)
        for which in ("train", "val", "test")
        if which == "train" or getattr(split, which) > 0 or which in found
    }


def _check_rows(spec: S.Spec, signature: DataSignature, diags: Diagnostics) -> None:
    """A split in use that gets no rows: an error for train and for a split something
    watches (the run would train on nothing, or monitor a value it never has), a warning
    for the others."""
    rows = split_rows(spec, signature)
    if rows is None:
        return
    data, split = spec.data, spec.data.split
    files = dict(zip(("val", "test"), _SPLIT_FILES.get(type(data), ()), strict=False))
    own = {which for which, key in files.items() if getattr(data, key) is not None}
    divided = [which for which in rows if which not in own]
    n = sum(rows[which] for which in divided)
    unit = "windows" if isinstance(data, S.TimeSeries) else "rows"
    watchers = {"val": _val_watcher(spec)}
    for which, count in rows.items():
        if count:
            continue
        if which in own:
            diags.error(("data", files[which]), f"{getattr(data, files[which])} has no rows")
            continue
        if n == 0:
            where = path_fields(data)[:1] or ["kind"]
            diags.error(("data", *where), f"the data has no {unit}")
            return
        what = f"{n} {unit[:-1] if n == 1 else unit}"
        message = (
            f"{what} at {which}: {getattr(split, which):g} give{'s' if n == 1 else ''} "
            f"0 {_SPLIT_NAMES[which]} {unit}"
        )
        hint = _more_rows_hint(which, divided, n, unit, spec, signature)
        path = ("data", "split", which)
        if which == "train":
            diags.error(path, message, hint)
        elif watchers.get(which):
            diags.error(path, f"{message}, and {watchers[which]}", hint)
        else:
            diags.warning(path, f"{message}; the run has no {_SPLIT_NAMES[which]} split", hint)


def _val_watcher(spec: S.Spec) -> str | None:
    """What reads the validation metrics during training, if anything (unknown, so None,
    where train or the optimizer failed to convert)."""
    if spec.train is None or spec.optimizer is None:
        return None
    stopping = spec.train.early_stopping
    if stopping is not None and stopping.monitor.startswith("val_"):
        return f"train.early_stopping.monitor watches {stopping.monitor!r}"
    schedule = spec.optimizer.schedule
    plateau = schedule is not None and schedule.kind in ("reduce_on_plateau", "reducelronplateau")
    if plateau and schedule.monitor.startswith("val_"):
        return f"optimizer.schedule.monitor watches {schedule.monitor!r}"
    checkpoint = spec.train.checkpoint
    monitor = checkpoint.monitor or default_monitor(spec)
    if checkpoint.save_best and monitor.startswith("val_"):
        if checkpoint.monitor:
            return f"train.checkpoint.monitor watches {monitor!r}"
        return f"the best checkpoint is picked by {monitor!r} (the default checkpoint.monitor)"
    return None


def _more_rows_hint(
    which: str, divided: list[str], n: int, unit: str, spec: S.Spec, signature: DataSignature
) -> str:
    """The smallest fraction sure to give `which` a row: 1/n of the divided share, or one
    per class when each class is divided on its own."""
    split = spec.data.split
    if n < len(divided):
        return f"add {unit}: {n} {unit[:-1] if n == 1 else unit} cannot fill {len(divided)} splits"
    classes = 1
    if split.stratify:
        classes = signature.target.num_classes or 2
    share = sum(getattr(split, w) for w in divided)
    least = share * classes / n
    if least > share:
        return f"add {unit}, or drop stratify: each class is divided on its own"
    scale = 10 ** (2 - math.floor(math.log10(least)))  # up to three significant digits
    return f"raise data.split.{which} to at least {math.ceil(round(least * scale, 6)) / scale:g}"


def _check_features(spec: S.Spec, signature: DataSignature, diags: Diagnostics) -> None:
    if signature.features is None:
        return
    inputs, kind = spec.model.inputs, spec.data.kind
    if len(inputs) != len(signature.features):
        count = len(signature.features)
        yields = "one feature tensor" if count == 1 else f"{count} feature tensors"
        diags.error(
            ("model", "inputs"),
            f"data {kind!r} yields {yields}, the model declares {len(inputs)} inputs",
        )
        return
    for index, (item, feature) in enumerate(zip(inputs, signature.features, strict=True)):
        if item.shape != feature.shape:
            diags.error(
                ("model", "inputs", index, "shape"),
                f"data {kind!r} yields features of shape {list(feature.shape)}, "
                f"the model input declares {list(item.shape)}",
            )
        elif integer_dtype(item.dtype) != integer_dtype(feature.dtype):
            diags.error(
                ("model", "inputs", index, "dtype"),
                f"data {kind!r} yields {feature.dtype} features, "
                f"the model input declares {item.dtype}",
                f"declare dtype: {feature.dtype}",
            )


def check_ids(spec: S.Spec, graph: Graph | None, diags: Diagnostics) -> None:
    """Integer features (random ids, token ids) must be valid rows of the embeddings that
    read them."""
    field = _ID_FIELDS.get(type(spec.data))
    if field is None or graph is None:
        return
    limit = getattr(spec.data, field)
    if limit is None:  # a vocabulary as large as the text needs: known once it is read
        limit = data_signature(spec).id_limit
        if limit is None:
            return
    int_inputs = {i.name for i in spec.model.inputs if integer_dtype(i.dtype)}
    for node in graph.nodes:
        rows = node.args.get("num_embeddings")
        if (
            node.op.startswith("embedding")
            and isinstance(rows, int)
            and set(node.inputs) & int_inputs
        ) and limit > rows:
            what = "random ids" if field == "int_high" else "token ids"
            diags.error(
                ("data", field),
                f"{what} go up to {limit - 1}, but embedding {node.name!r} has {rows} rows",
                f"set {field} to at most {rows}",
            )
