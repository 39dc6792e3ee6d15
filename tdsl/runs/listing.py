"""`tdsl list ops|losses|metrics|optimizers|schedules|data [TEXT]`: what a spec can name.

Each entry is a line with its name (and aliases) and a one-line description, then its
arguments: a bare name is required, `name=default` optional, `name=(inferred)` read off the
incoming tensor when omitted. Defaults come from the torch class or function behind the
entry where there is one, and from the spec classes for data sources.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import torch

from tdsl import spec as S
from tdsl.registry import losses, metrics, ops, optimizers

UNKNOWN = "…"  # an optional argument whose default is the op's own choice


@attrs.frozen
class Entry:
    names: tuple[str, ...]
    doc: str
    arguments: tuple[str, ...]


def listing(what: str, contains: str = "") -> list[Entry]:
    """The entries of `tdsl list WHAT TEXT`: those whose names contain TEXT."""
    return [e for e in ENTRIES[what]() if any(contains in n for n in e.names)]


def render(entries: Iterable[Entry]) -> str:
    return "\n".join(_format(e) for e in entries)


def _format(entry: Entry) -> str:
    name = entry.names[0] + (f" ({', '.join(entry.names[1:])})" if entry.names[1:] else "")
    head = f"{name:<24} {entry.doc}".rstrip()
    return head + ("\n    " + " ".join(entry.arguments) if entry.arguments else "")


def _first_line(text: str | None, limit: int = 90) -> str:
    """The first sentence of a docstring, on one line and at most `limit` characters."""
    words = " ".join((text or "").strip().split("\n\n")[0].split())
    sentence = words.split(". ")[0].rstrip(".:")
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def _defaults(target: Any) -> dict[str, Any]:
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _arguments(
    arguments: Mapping[str, bool], defaults: Mapping[str, Any], inferred: Iterable[str] = ()
) -> tuple[str, ...]:
    inferred = set(inferred)
    shown = []
    for name, required in arguments.items():
        if name.startswith("_"):
            continue  # torch's private parameters (`_weight`)
        if name in inferred:
            shown.append(f"{name}=(inferred)")
        elif required:
            shown.append(name)
        else:
            shown.append(f"{name}={_value(defaults.get(name, UNKNOWN))}")
    return tuple(shown)


def _value(value: Any) -> str:
    if value is UNKNOWN:
        return UNKNOWN
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return value if value.replace("_", "").isalnum() else repr(value)
    return str(value)


def _torch_class(doc: str) -> Any:
    """The torch.nn class an op's doc names first (`torch.nn.Conv2d; ...`), if any."""
    word = doc.split(";")[0].split()[0] if doc.strip() else ""
    if not word.startswith("torch.nn."):
        return None
    return getattr(torch.nn, word.removeprefix("torch.nn."), None)


def _ops() -> list[Entry]:
    import tdsl.model  # noqa: F401 (registers the graph and attention ops)

    grouped: dict[int, list[str]] = {}
    found: dict[int, ops.OpDef] = {}
    for name in ops.all_op_names():
        op = ops.lookup(name)
        if op is not None:
            grouped.setdefault(id(op), []).append(name)
            found[id(op)] = op
    entries = []
    for key, names in grouped.items():
        op = found[key]
        names = sorted(names, key=lambda n: ("_" not in n and len(names) > 1, n))
        cls = _torch_class(op.doc)
        defaults = _defaults(cls) if cls is not None else {}
        doc = _first_line(op.doc) or (f"torch.nn.{cls.__name__}" if cls else "")
        entries.append(Entry(tuple(names), doc, _arguments(op.arguments, defaults, op.inferred)))
    return sorted(entries, key=lambda e: e.names[0])


_OUTPUTS = "a weighted sum of a loss per model output (terms with output:, target:)"


def _losses() -> list[Entry]:
    entries = []
    for name in losses.loss_names():
        loss = losses.lookup_loss(name)
        if loss is None:  # `sum` and `outputs` combine other losses rather than being one
            what = {"sum": "a weighted sum of loss terms", "outputs": _OUTPUTS}[name]
            entries.append(Entry((name,), what, ("terms",)))
            continue
        targets = ", ".join(sorted(loss.targets))
        doc = f"{_first_line(loss.cls.__doc__)} (takes {loss.expects}; targets: {targets})"
        arguments = _arguments(loss.arguments or {}, _defaults(loss.cls))
        entries.append(Entry((name,), doc, arguments))
    return entries


def _metrics() -> list[Entry]:
    entries = []
    for name in metrics.metric_names():
        metric = metrics.lookup_metric(name)
        better = "higher" if metric.higher_is_better else "lower"
        doc = f"targets: {', '.join(sorted(metric.targets))}; {better} is better"
        entries.append(Entry((name,), doc, _arguments(metric.arguments, _defaults(metric.make))))
    return entries


def _torch_entries(names: list[str], lookup: Callable[[str], Any]) -> list[Entry]:
    grouped: dict[type, list[str]] = {}
    for name in names:
        found = lookup(name)
        if found is not None:
            grouped.setdefault(found.cls, []).append(name)
    entries = []
    for cls, group in grouped.items():
        found = lookup(group[0])
        arguments = {k: v for k, v in found.arguments.items() if k not in ("params", "optimizer")}
        doc = _first_line(cls.__doc__) or cls.__name__
        entries.append(
            Entry(tuple(sorted(group, key=len)), doc, _arguments(arguments, _defaults(cls)))
        )
    return sorted(entries, key=lambda e: e.names[0])


def _optimizers() -> list[Entry]:
    return _torch_entries(optimizers.optimizer_names(), optimizers.lookup_optimizer)


def _schedules() -> list[Entry]:
    return _torch_entries(optimizers.schedule_names(), optimizers.lookup_schedule)


def _data() -> list[Entry]:
    entries = []
    for kind, cls in S.DATA_SOURCES.items():
        arguments = []
        for field in attrs.fields(cls):
            if field.name == "kind" or field.metadata.get("internal"):
                continue
            if field.default is attrs.NOTHING:
                arguments.append(field.name)
            else:
                default = field.default
                if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                    default = default.factory()
                shown = "{...}" if attrs.has(type(default)) else _value(default)
                arguments.append(f"{field.name}={shown}")
        entries.append(Entry((kind,), _first_line(cls.__doc__), tuple(arguments)))
    return sorted(entries, key=lambda e: e.names[0])


ENTRIES: dict[str, Callable[[], list[Entry]]] = {
    "ops": _ops,
    "losses": _losses,
    "metrics": _metrics,
    "optimizers": _optimizers,
    "schedules": _schedules,
    "data": _data,
}
