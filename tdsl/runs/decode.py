"""Model outputs as a person reads them: probabilities named by class, the predicted label,
regression values; one named column per value, several outputs prefixed by their name.

Binary: `probability` and `label` (at a threshold). Classes: `probability_<class>` per
class and `label` (the class name, where the data names its classes). Regression:
`prediction` (or one column per target value, named by the target columns where the source
says them). Class targets with positions (tokens, pixels): `label_<i>` per position. No
target to decode against: the raw values, `output_<i>`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import torch

from tdsl import spec as S
from tdsl.check.outputs_and_targets import data_signature, resolve_loss
from tdsl.data import Fitted
from tdsl.errors import Diagnostics
from tdsl.registry.losses import lookup_loss
from tdsl.train.multi_output import to_probabilities


@attrs.frozen
class OutputDecoder:
    """How one model output becomes columns."""

    name: str | None  # the output's name when the model has several, else None
    kind: str | None  # binary | class | regression; None: undecoded
    to_prob: Callable[[torch.Tensor], torch.Tensor]
    classes: tuple[str, ...] | None = None
    value_names: tuple[str, ...] | None = None  # regression: names of the values
    class_dim: int | None = None  # class targets with positions: the classes' axis

    def columns(self, output: torch.Tensor, threshold: float) -> dict[str, np.ndarray]:
        n = len(output)
        flat = output.detach().float().cpu().reshape(n, -1)
        if self.kind == "binary":
            prob = self.to_prob(flat).numpy()
            labels = (prob >= threshold).astype(np.int64)
            names = self.classes if self.classes and len(self.classes) == 2 else None
            if prob.shape[1] == 1:
                return {"probability": prob[:, 0], "label": _labels(labels[:, 0], names)}
            return {
                **{f"probability_{i}": prob[:, i] for i in range(prob.shape[1])},
                **{f"label_{i}": _labels(labels[:, i], names) for i in range(prob.shape[1])},
            }
        if self.kind == "class" and self.class_dim is None and flat.shape[1] > 1:
            prob = self.to_prob(flat).numpy()
            names = self.classes or tuple(str(i) for i in range(prob.shape[1]))
            if len(names) != prob.shape[1]:  # the fitted classes do not fit: number them
                names = tuple(str(i) for i in range(prob.shape[1]))
            columns = {f"probability_{c}": prob[:, i] for i, c in enumerate(names)}
            columns["label"] = _labels(prob.argmax(axis=1), self.classes)
            return columns
        if self.kind == "class" and self.class_dim is not None:
            ids = output.detach().argmax(dim=self.class_dim).reshape(n, -1).cpu().numpy()
            return {f"label_{i}": _labels(ids[:, i], self.classes) for i in range(ids.shape[1])}
        values = flat.numpy()
        if self.kind == "regression":
            if values.shape[1] == 1:
                return {"prediction": values[:, 0]}
            names = self.value_names
            if not names or len(names) != values.shape[1]:
                names = tuple(f"prediction_{i}" for i in range(values.shape[1]))
            return {name: values[:, i] for i, name in enumerate(names)}
        return {f"output_{i}": values[:, i] for i in range(values.shape[1])}


def _labels(ids: np.ndarray, names: Sequence[str] | None) -> np.ndarray:
    if not names or int(ids.max(initial=0)) >= len(names):
        return ids.astype(np.int64)
    return np.array([names[i] for i in ids.tolist()], dtype=object)


def decoders(
    spec: S.Spec,
    fitted: Fitted | None,
    class_dim: int | None,
    allow_imports: Sequence[str] = (),
) -> tuple[OutputDecoder, ...]:
    """One decoder per model output, in the order the module returns them."""
    signature = data_signature(spec, allow_imports)
    classes = (fitted.state.get("classes") if fitted is not None else None) or None
    if spec.loss.kind != "outputs":
        loss = resolve_loss(spec.loss, Diagnostics(), allow_imports)
        expects = loss.expects if loss is not None else "values"
        kind = _kind(signature, spec)
        return (
            OutputDecoder(
                None,
                kind,
                to_probabilities(expects, kind or "regression"),
                _names(classes if isinstance(classes, list) else None),
                _value_names(spec.data),
                class_dim if kind == "class" else None,
            ),
        )
    targets: Mapping[str, S.Target] = signature.targets or {}
    named_classes = classes if isinstance(classes, Mapping) else {}
    found = {}
    for term in spec.loss.terms:
        target = targets.get(term.target_name)
        if target is None or term.output in found:
            continue
        expects = lookup_loss(term.kind, allow_imports).expects
        found[term.output] = OutputDecoder(
            term.output,
            target.kind,
            to_probabilities(expects, target.kind),
            _names(named_classes.get(term.target_name)),
        )
    return tuple(
        found.get(name, OutputDecoder(name, None, lambda x: x)) for name in spec.model.outputs
    )


def _kind(signature: Any, spec: S.Spec) -> str | None:
    if signature.tokens:  # a language model's next-token scores: classes at positions
        return "class"
    return signature.target.kind


def _names(classes: Any) -> tuple[str, ...] | None:
    if isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes):
        return tuple(classes)
    return None


def _value_names(source: S.DataSource) -> tuple[str, ...] | None:
    if isinstance(source, S.TimeSeries):
        return tuple(source.targets or source.columns)
    return None


def decode(
    decoders: Sequence[OutputDecoder], outputs: Any, threshold: float = 0.5
) -> dict[str, np.ndarray]:
    """Named columns of `outputs` (a tensor, or a tuple with one per decoder)."""
    items = (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)
    columns: dict[str, np.ndarray] = {}
    for decoder, output in zip(decoders, items, strict=True):
        prefix = f"{decoder.name}_" if decoder.name is not None else ""
        for key, values in decoder.columns(output, threshold).items():
            columns[prefix + key] = values
    return columns
