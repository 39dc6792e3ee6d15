"""How a spec sets up its weights, checked on the meta module before anything trains:
`freeze` selectors and `trainable: false`, `init_weights` entries and the `init`
checkpoint (read, and matched by name and shape against the model). Each check appends
located diagnostics; none raises.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import attrs
import torch

from tdsl import spec as S
from tdsl.data.base import resolve_path, spec_base
from tdsl.errors import Diagnostics, check_keywords
from tdsl.model.freezing import fixed_norms, frozen_parameters
from tdsl.model.graph import Graph, module_ops
from tdsl.model.init_from import InitError, checkpoint_file, fit_weights, model_state, read_tensors
from tdsl.model.selectors import select
from tdsl.registry.initializers import argument_problem, initializer_names, lookup_initializer
from tdsl.wording import did_you_mean, show


def init_path(spec: S.Spec) -> Path | None:
    """Where `model.init.from` points, relative to the spec file."""
    init = spec.model.init
    return None if init is None else resolve_path(spec_base(spec), init.from_)


def with_absolute_init(spec: S.Spec) -> S.Spec:
    """The spec with `model.init.from` absolute (the copy a run directory keeps)."""
    path = init_path(spec)
    if path is None:
        return spec
    init = attrs.evolve(spec.model.init, from_=str(path.absolute()))
    return attrs.evolve(spec, model=attrs.evolve(spec.model, init=init))


def without_init(spec: S.Spec) -> S.Spec:
    """The spec minus `model.init`: a resumed or evaluated run has its own weights."""
    if spec.model.init is None:
        return spec
    return attrs.evolve(spec, model=attrs.evolve(spec.model, init=None))


def init_record(spec: S.Spec) -> dict[str, str] | None:
    """What a run directory records about its starting weights: the source as written,
    the file read and its SHA-256."""
    path = init_path(spec)
    if path is None:
        return None
    file = checkpoint_file(path, spec.model.init.which)
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {
        "from": spec.model.init.from_,
        "file": str(file.absolute()),
        "sha256": digest.hexdigest(),
    }


def _near(path: Path) -> str:
    """Near names next to a missing `init.from`, else what it may name."""
    if not path.exists() and path.parent.is_dir():
        names = [p.name for p in path.parent.iterdir() if not p.name.startswith(".")]
        near = did_you_mean(path.name, names, listing_limit=0)
        if near:
            return near
    return "give a run directory (its checkpoints/best.pt) or a .pt file"


def _parameter_hint(module: torch.nn.Module) -> str:
    names = [name for name, _ in module.named_parameters()]
    return "parameters: " + ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")


def _patterns(selector: S.ParamSelector | S.Initializer) -> str:
    text = ", ".join(show(p) for p in selector.params)
    if selector.modules:
        text += f" in {', '.join(show(m) for m in selector.modules)} layers"
    return text


def check_weights(
    spec: S.Spec, graph: Graph, module: torch.nn.Module, diags: Diagnostics
) -> dict[str, tuple[str, ...]]:
    """Check freezing, initializers and `init`; return what `tdsl validate` lists: the
    frozen parameters (`trainable: false` and `freeze` together)."""
    frozen = check_freezing(spec, graph, module, diags)
    check_initializers(spec, graph, module, diags)
    check_init(spec, module, diags)
    return {"model (frozen)": tuple(frozen)} if frozen else {}


def check_freezing(
    spec: S.Spec, graph: Graph, module: torch.nn.Module, diags: Diagnostics
) -> list[str]:
    frozen, picked = frozen_parameters(spec.model, graph, module)
    for index, (selector, chosen) in enumerate(zip(spec.model.freeze, picked, strict=True)):
        if not chosen:
            diags.error(
                ("model", "freeze", index),
                f"freeze selector {_patterns(selector)} picks no parameter",
                _parameter_hint(module),
            )
    total = sum(1 for _ in module.parameters())
    if total and len(frozen) == total:
        diags.error(
            ("model", "freeze") if spec.model.freeze else ("model", "layers"),
            "every parameter is frozen: nothing is left to train",
            "unfreeze a layer, e.g. a new head",
        )
    if spec.model.freeze_norm_stats and not fixed_norms(spec.model, graph, module):
        diags.warning(
            ("model", "freeze_norm_stats"),
            "freeze_norm_stats: true, but no batch- or instance-norm layer is frozen",
            "freeze the norm layers too, e.g. freeze: [{modules: batchnorm2d}]",
        )
    return frozen


def check_initializers(
    spec: S.Spec, graph: Graph, module: torch.nn.Module, diags: Diagnostics
) -> None:
    ops = module_ops(graph)
    params = dict(module.named_parameters())
    for index, entry in enumerate(spec.model.init_weights):
        path = ("model", "init_weights", index)
        found = lookup_initializer(entry.kind)
        if found is None:
            diags.error(
                (*path, "kind"),
                f"unknown initializer {entry.kind!r}",
                did_you_mean(entry.kind, initializer_names()),
            )
        elif check_keywords(
            entry.args, found.arguments, f"initializer {entry.kind!r}", path, diags
        ):
            problem = argument_problem(found, entry.args)
            if problem is not None:
                diags.error((*path, problem[0]), problem[1])
        chosen = select(entry, module, ops)
        if not chosen:
            diags.error(
                path,
                f"initializer selector {_patterns(entry)} picks no parameter",
                _parameter_hint(module),
            )
        elif found is not None and found.needs_matrix:
            flat = [n for n in chosen if params[n].dim() < 2]
            if flat:
                diags.error(
                    path,
                    f"{entry.kind} needs parameters of 2 or more dimensions, "
                    f"and {', '.join(flat[:5])} {'has' if len(flat) == 1 else 'have'} fewer",
                    "select weights only, e.g. params: '*.weight'",
                )


def check_init(spec: S.Spec, module: torch.nn.Module, diags: Diagnostics) -> None:
    """The checkpoint exists, reads, and fits the model by name and shape."""
    init = spec.model.init
    if init is None:
        return
    path = init_path(spec)
    try:
        file = checkpoint_file(path, init.which)
    except InitError as exc:
        where = "which" if "which:" in str(exc) else "from"
        diags.error(("model", "init", where), str(exc), _near(path))
        return
    try:
        tensors = read_tensors(file, mmap=True)
    except InitError as exc:
        diags.error(("model", "init", "from"), str(exc))
        return
    fit = fit_weights(init, model_state(module), tensors)
    problems = fit.problems(init.strict)
    if problems:
        diags.error(
            ("model", "init"),
            f"the checkpoint {file.name} does not fit the model; " + "; ".join(problems),
            "choose what to load with init.params, rename with init.map, "
            "or skip names only one side has with init.strict: false",
        )
    elif not fit.taken:
        diags.error(("model", "init"), f"nothing in {file.name} matches the model's names")
