"""Validation of the data section: split fractions, files, columns and cells, and whether
what the data yields fits the model's inputs. Each check appends diagnostics; none raises.
"""

from __future__ import annotations

from collections.abc import Sequence

from tdsl import spec as S
from tdsl.data import is_synthetic, prepare, synthetic
from tdsl.data.base import DataError, DataSignature, context, integer_dtype
from tdsl.errors import Diagnostics
from tdsl.model.graph import Graph

# Split files by data kind: (val, test) field names.
_SPLIT_FILES = {
    S.Tensors: ("val_file", "test_file"),
    S.Table: ("val_file", "test_file"),
    S.Text: ("val_file", "test_file"),
    S.ImageFolder: ("val_folder", "test_folder"),
}
# The field that bounds the integer ids a source yields.
_ID_FIELDS = {S.RandomData: "int_high", S.Text: "vocab_size"}


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
    if split.stratify and kind == "regression":
        diags.error(("data", "split", "stratify"), "stratify applies to binary and class targets")
    if isinstance(data, S.Teacher) and data.num_classes < 2:
        diags.error(("data", "num_classes"), f"must be >= 2 (got {data.num_classes})")
    if is_synthetic(data):
        signature = synthetic.signature(data, context(spec))
    else:
        try:
            signature = prepare(data, context(spec), allow_imports=allow_imports)[1]
        except DataError as exc:
            for problem in exc.problems:
                diags.error(("data", *problem.path), problem.message, problem.hint)
            return None
    _check_features(spec, signature, diags)
    return signature


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
