"""The `tdsl` command line. Every spec mistake is printed as located diagnostics; exit codes:
0 success, 1 invalid spec or failed run, 2 usage error."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from tdsl.errors import SpecError, TdslError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tdsl", description="A declarative training DSL for "
                                     "PyTorch.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("validate", help="check specs without running them")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                       help="override a spec field (repeatable)")

    show = commands.add_parser("summary", help="print the model's layers, shapes and parameters")
    show.add_argument("file", metavar="FILE")
    show.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")

    commands.add_parser("schema", help="print the JSON Schema of spec files")
    return parser


def _overrides(assignments: Sequence[str]):
    if not assignments:
        return None
    from tdsl.overrides import apply_overrides

    return lambda data: apply_overrides(data, assignments)


def cmd_validate(args: argparse.Namespace) -> int:
    from tdsl.validate import validate

    everything, ok = [], True
    for file in args.files:
        report = validate(_as_path(file), overrides=_overrides(args.set))
        ok = ok and report.ok
        if args.format == "json":
            everything += [d.to_json() for d in report.diagnostics]
            continue
        if report.diagnostics:
            print(report.format())
        if report.ok:
            outputs = ", ".join(f"{name} {_shape(shape)}" for name, shape in report.output_shapes.items())
            print(f"{file}: valid; output {outputs}; {report.param_count:,} parameters")
    if args.format == "json":
        print(json.dumps(everything, indent=2))
    return 0 if ok else 1


def _shape(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("B" if d is None else str(d) for d in shape) + "]"


def _as_path(file: str):
    from pathlib import Path

    return Path(file)


def cmd_summary(args: argparse.Namespace) -> int:
    from tdsl.loading import read_spec
    from tdsl.summary import summary

    spec, problems = read_spec(_as_path(args.file), _overrides(args.set))
    if spec is None:
        raise SpecError(problems)
    print(summary(spec))
    return 0


def cmd_schema(_args: argparse.Namespace) -> int:
    from tdsl.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


COMMANDS = {"validate": cmd_validate, "summary": cmd_summary, "schema": cmd_schema}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except TdslError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
