"""A data signature recorded by a run, standing in for reading the data again.

A run directory keeps what its data yielded (`data_signature.json`). Inference from the run
(`predict`, `export`, `load_model`) compiles the run's spec under `recorded_signature`, so
the checks and the program take the signature from there instead of reading the training
files: they may be gone, or large. Only the exact source recorded is answered for; any other
(a spec the user validates, `eval --data` with another file) is read as always.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from tdsl import spec as S
from tdsl.data.base import DataSignature, FeatureInfo
from tdsl.spec.frozen import FrozenMap

_active: contextvars.ContextVar[tuple[Any, DataSignature] | None] = contextvars.ContextVar(
    "tdsl_recorded_signature", default=None
)


@contextlib.contextmanager
def recorded_signature(source: S.DataSource, signature: DataSignature) -> Iterator[None]:
    """Within the block, `source`'s signature is `signature`, without reading its files."""
    token = _active.set((source, signature))
    try:
        yield
    finally:
        _active.reset(token)


def recorded(source: Any) -> DataSignature | None:
    """The recorded signature of `source`, if one is active for exactly that source."""
    found = _active.get()
    if found is None or found[0] != source:
        return None
    return found[1]


def _target(target: S.Target) -> dict[str, Any]:
    return {"kind": target.kind, "num_classes": target.num_classes, "shape": list(target.shape)}


def signature_to_json(signature: DataSignature) -> dict[str, Any]:
    """`signature` as plain JSON values (`signature_from_json` reads it back)."""
    features = signature.features
    targets = signature.targets
    return {
        "features": None
        if features is None
        else [{"shape": list(f.shape), "dtype": f.dtype} for f in features],
        "target": _target(signature.target),
        "rows": None if signature.rows is None else dict(signature.rows),
        "id_limit": signature.id_limit,
        "tokens": signature.tokens,
        "ignore_index": signature.ignore_index,
        "targets": None if targets is None else {n: _target(t) for n, t in targets.items()},
    }


def signature_from_json(found: dict[str, Any]) -> DataSignature:
    """The signature `signature_to_json` wrote; KeyError/TypeError/ValueError if malformed."""

    def target(item: dict[str, Any]) -> S.Target:
        return S.Target(kind=item["kind"], num_classes=item["num_classes"], shape=item["shape"])

    features = found["features"]
    targets = found["targets"]
    return DataSignature(
        None
        if features is None
        else tuple(FeatureInfo(tuple(int(d) for d in f["shape"]), f["dtype"]) for f in features),
        target(found["target"]),
        None if found["rows"] is None else {k: int(v) for k, v in found["rows"].items()},
        found["id_limit"],
        bool(found["tokens"]),
        found["ignore_index"],
        None if targets is None else FrozenMap({n: target(t) for n, t in targets.items()}),
    )
