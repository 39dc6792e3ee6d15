"""The commands that read a spec without training it: validate (with --cost), summary,
schema, init and list; and how a spec file of either kind (YAML or Python) is read."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import attrs

from tdsl.errors import SpecError
from tdsl.runs.cli_parser import _process_count  # noqa: F401


def _overrides(assignments: Sequence[str]):
    if not assignments:
        return None
    from tdsl.spec.overrides import apply_overrides

    return lambda data: apply_overrides(data, assignments)


def _read(file: str, assignments: Sequence[str]):
    """(spec or None, diagnostics) of a YAML file, or of a Python spec file (which runs
    the file's code: what naming a .py file asks for)."""
    from tdsl.spec.load_dump import read_spec
    from tdsl.spec.python_file import is_python_file, read_python_spec

    reader = read_python_spec if is_python_file(file) else read_spec
    return reader(_as_path(file), _overrides(assignments))


def _checked(file: str, args: argparse.Namespace):
    """validate's (report, inference) of a spec file of either kind."""
    from tdsl.check.pipeline import checked
    from tdsl.errors import Report
    from tdsl.spec.python_file import is_python_file

    if not is_python_file(file):
        return checked(_as_path(file), _overrides(args.set), args.allow_imports, args.nproc)
    spec, problems = _read(file, args.set)
    if spec is None:
        return Report(tuple(problems)), None
    return checked(spec, None, args.allow_imports, args.nproc)


def cmd_validate(args: argparse.Namespace) -> int:
    everything, costs, ok, tally, warned = [], {}, True, [0, 0], False
    files, folders, empty = _spec_files(args.files)
    for file in files:
        report, inference = _checked(file, args)
        ok = ok and report.ok
        tally[not report.ok] += 1
        cost, warning = None, None
        if report.ok and _wants_cost(args):
            spec, _ = _read(file, args.set)
            cost, warning = _cost(spec, inference, args, args.format == "json")
            if warning is not None:
                report = attrs.evolve(report, diagnostics=(*report.diagnostics, warning))
        warned = warned or bool(report.warnings)
        if args.format == "json":
            everything += [d.to_json() for d in report.diagnostics]
            if cost is not None:
                costs[file] = cost
            continue
        if report.diagnostics:
            print(report.format())
        if report.ok and args.print_config:
            print(_resolved(file, args.set), end="")
        elif report.ok:
            outputs = ", ".join(
                f"{name} {_shape(shape)}" for name, shape in report.output_shapes.items()
            )
            rows = inference.rows if inference is not None else None
            counts = "; rows: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()) if rows else ""
            print(f"{file}: valid; output {outputs}; {report.param_count:,} parameters{counts}")
            for where, names in report.selections.items():
                print(f"  {where} selects {len(names)}: {', '.join(names) or '-'}")
            if cost is not None:
                print(cost)
    if args.format == "json":
        # Without cost flags the output stays the list of diagnostics it always was.
        shown = {"diagnostics": everything, "cost": costs} if _wants_cost(args) else everything
        print(json.dumps(shown, indent=2))
    elif folders or len(files) > 1:
        print(f"{tally[0]} valid, {tally[1]} invalid ({len(files)} spec files)")
    strict_failed = getattr(args, "strict", False) and warned  # --strict: warnings fail too
    return 0 if ok and not empty and not strict_failed else 1


def _spec_files(arguments: Sequence[str]) -> tuple[list[str], list[str], bool]:
    """The files to validate, folders opened (their YAML files, recursively, sorted); the
    folders named; whether one of them had no spec files (reported on stderr: a failure)."""
    files, folders, empty = [], [], False
    for argument in arguments:
        path = _as_path(argument)
        if not path.is_dir():
            files.append(argument)
            continue
        folders.append(argument)
        found = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        if not found:
            print(f"{argument}: no *.yaml or *.yml files in this folder", file=sys.stderr)
            empty = True
        files += [str(p) for p in found]
    return files, folders, empty


def _resolved(file: str, assignments: Sequence[str]) -> str:
    """The spec as YAML, composed and overridden, with every default spelled out."""
    from tdsl.spec.load_dump import dump

    spec, problems = _read(file, assignments)
    if spec is None:
        raise SpecError(problems)
    return dump(spec, defaults=True)


def _shape(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("B" if d is None else str(d) for d in shape) + "]"


def _as_path(file: str):
    from pathlib import Path

    return Path(file)


def cmd_summary(args: argparse.Namespace) -> int:
    from tdsl.check.summary import inferred, summary

    spec, problems = _read(args.file, args.set)
    if spec is None:
        raise SpecError(problems)
    spec, inference = inferred(spec, args.allow_imports)  # once, for the table and the cost
    shown = summary(spec, args.params, args.allow_imports, args.expand, inference=inference)
    print(shown)
    if _wants_cost(args):
        from tdsl.check.data_section import split_rows
        from tdsl.check.outputs_and_targets import data_signature

        rows = split_rows(spec, data_signature(spec, args.allow_imports))
        cost, warning = _cost(spec, attrs.evolve(inference, rows=rows), args, False)
        print("\n" + cost)
        if warning is not None:
            print(warning.format(), file=sys.stderr)
    return 0


def cmd_schema(_args: argparse.Namespace) -> int:
    from tdsl.spec.json_schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _cost(spec, inference, args: argparse.Namespace, as_json: bool):
    """(the cost estimate as text or JSON, a warning when a step does not fit) for the
    flags given; (None, None) without --cost, --memory, --device or --calibrate."""
    budget = args.memory or args.device
    if not (args.cost or budget or args.calibrate):
        return None, None
    from tdsl.check.cost import estimate, memory_fit
    from tdsl.check.cost_report import cost_json, cost_text, fit_warning
    from tdsl.check.devices import launched

    launch = launched()
    processes = getattr(args, "nproc", None) or (launch.world_size if launch else 1)
    processes = processes if spec.device.strategy == "ddp" else 1
    cost = estimate(spec, inference, args.allow_imports, processes)
    fit = memory_fit(spec, inference, cost, budget, args.allow_imports) if budget else None
    seconds = None
    if args.calibrate:
        from tdsl.train.calibrate import step_seconds

        seconds = step_seconds(spec, cost.batch_size, args.allow_imports)
    shown = cost_json(cost, fit, seconds) if as_json else cost_text(cost, fit, seconds)
    return shown, fit_warning(spec, fit) if fit is not None else None


def _wants_cost(args: argparse.Namespace) -> bool:
    return bool(args.cost or args.memory or args.device or args.calibrate)


def cmd_init(args: argparse.Namespace) -> int:
    from tdsl.check.pipeline import checked
    from tdsl.runs.scaffold import scaffold

    data = _as_path(args.data)
    out = _as_path(args.out) if args.out else _as_path(f"{data.stem or 'spec'}.yaml")
    if out.exists() and not args.force:
        print(f"error: {out} exists; choose another --out or add --force", file=sys.stderr)
        return 1
    text = scaffold(data, out, args.target)
    out.write_text(text)
    report, _ = checked(out, None, ())
    if report.diagnostics:
        print(report.format(), file=sys.stderr)
    state = "valid" if report.ok else "not valid yet"
    print(f"wrote {out} ({state}); train it with: tdsl run {out}")
    return 0 if report.ok else 1


def cmd_list(args: argparse.Namespace) -> int:
    from tdsl.runs.listing import listing, render

    found = listing(args.what, args.filter)
    if not found:
        print(f"no {args.what} named like {args.filter!r}", file=sys.stderr)
        return 1
    print(render(found))
    return 0
