"""The loss's and the metrics' names and arguments, and the metrics against the targets.
Each check appends diagnostics; none raises. (The loss against the model's output:
`loss_fit`; optimizer, selectors, monitors and device: `training_setup`.)"""

from __future__ import annotations

from collections.abc import Sequence

from tdsl import spec as S
from tdsl.check import data_section as data_checks
from tdsl.check.loss_arguments import check_loss_arguments
from tdsl.check.per_output import check_output_metric, check_term_keys, resolve_outputs_loss
from tdsl.data import DataSignature, data_signature  # noqa: F401 (re-exported)
from tdsl.errors import Diagnostics, SpecPath, check_keywords
from tdsl.model.graph import Graph
from tdsl.registry.aliases import suggest
from tdsl.registry.losses import LossDef, WeightedSum, lookup_loss, loss_names
from tdsl.registry.metrics import lookup_metric, metric_names
from tdsl.registry.user_code import ImportRefused

# Data checks live with the data sources; these names stay importable from here.
check_data = data_checks.check_data
check_random_ids = data_checks.check_ids


def _lookup(
    kind: str, path: SpecPath, diags: Diagnostics, allow_imports: Sequence[str]
) -> LossDef | None:
    try:
        loss = lookup_loss(kind, allow_imports)
    except ImportRefused as exc:
        diags.error((*path, "kind"), exc.message, exc.hint)
        return None
    if loss is None:
        diags.error((*path, "kind"), f"unknown loss {kind!r}", suggest("loss", kind, loss_names()))
    return loss


def resolve_loss(
    spec: S.Loss, diags: Diagnostics, allow_imports: Sequence[str] = ()
) -> LossDef | None:
    """The loss's definition; for `kind: sum`, one combining its terms' expectations."""
    check_term_keys(spec, diags)
    if spec.kind == "outputs":
        return resolve_outputs_loss(
            spec, diags, lambda kind, path: _lookup(kind, path, diags, allow_imports)
        )
    if spec.kind != "sum":
        if spec.terms:
            diags.error(
                ("loss", "terms"),
                "terms are only for kind: sum",
                f"use kind: sum, or remove terms from loss {spec.kind!r}",
            )
        loss = _lookup(spec.kind, ("loss",), diags, allow_imports)
        if loss is not None:
            check_keywords(spec.args, loss.arguments, f"loss {loss.name!r}", ("loss",), diags)
            check_loss_arguments(spec.kind, spec.args, ("loss",), diags)
        return loss
    check_keywords(spec.args, {}, "loss 'sum'", ("loss",), diags)
    if not spec.terms:
        diags.error(("loss",), "a sum loss needs terms", "terms: [{kind: mse, weight: 0.5}, ...]")
        return None
    parts = []
    for index, term in enumerate(spec.terms):
        path = ("loss", "terms", index)
        found = _lookup(term.kind, path, diags, allow_imports)
        if found is not None:
            check_keywords(term.args, found.arguments, f"loss {term.kind!r}", path, diags)
            check_loss_arguments(term.kind, term.args, path, diags)
            parts.append(found)
    if len(parts) < len(spec.terms):
        return None
    expects = sorted({p.expects for p in parts})
    if len(expects) > 1:
        diags.error(
            ("loss", "terms"),
            "the terms expect different outputs: "
            + ", ".join(f"{p.name} {p.expects}" for p in parts),
        )
        return None
    targets = frozenset.intersection(*(p.targets for p in parts))
    return LossDef("sum", WeightedSum, expects[0], targets, {})


def kinds_text(kinds: frozenset[str]) -> str:
    """`binary or class`: the target kinds a loss or metric takes, for messages."""
    return " or ".join(sorted(kinds))


def _metric_entry(metric: S.Metric, index: int, diags: Diagnostics):
    """(the metric's registry entry, whether its arguments are all known), reporting an
    unknown kind or argument; (None, False) for an unknown kind."""
    found = lookup_metric(metric.kind)
    if found is None:
        diags.error(
            ("metrics", index),
            f"unknown metric {metric.kind!r}",
            suggest("metric", metric.kind, metric_names(), listing_limit=20),
        )
        return None, False
    what = f"metric {metric.kind!r}"
    return found, check_keywords(metric.args, found.arguments, what, ("metrics", index), diags)


def check_metric_kinds(metrics: tuple[S.Metric, ...], diags: Diagnostics) -> list[str]:
    """The metrics' names and arguments alone, when the loss or the data they are checked
    against failed to convert; the names the history gives them."""
    return [m.name for i, m in enumerate(metrics) if _metric_entry(m, i, diags)[0] is not None]


def check_metrics(spec: S.Spec, diags: Diagnostics, graph: Graph | None = None) -> list[str]:
    """Each metric against the targets; the names the history gives them."""
    single = data_signature(spec).target
    names = []
    for index, metric in enumerate(spec.metrics):
        target = check_output_metric(spec, index, metric, graph, diags)
        if target is None and (spec.loss.kind == "outputs" or metric.output is not None):
            continue
        target = target or single
        found, known = _metric_entry(metric, index, diags)
        if found is None:
            continue
        if target.kind not in found.targets:
            yields = (
                f"the data yields {target.kind} targets"
                if metric.output is None
                else f"the output {metric.output!r} has {target.kind} targets"
            )
            diags.error(
                ("metrics", index),
                f"metric {metric.kind!r} needs {kinds_text(found.targets)} targets, but {yields}",
            )
        elif known and found.check is not None:
            for argument, message, hint in found.check(metric.args, target.num_classes):
                diags.error(("metrics", index, argument), message, hint)
        names.append(metric.name)
    return names
