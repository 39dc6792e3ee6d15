"""The `tdsl` command line. Every spec mistake is printed as located diagnostics; exit codes:
0 success, 1 invalid spec or failed run, 2 usage error."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Sequence

from tdsl.errors import SpecError, TdslError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tdsl", description="A declarative training DSL for PyTorch."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("validate", help="check specs without running them")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a spec field (repeatable)",
    )

    show = commands.add_parser("summary", help="print the model's layers, shapes and parameters")
    show.add_argument("file", metavar="FILE")
    show.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    show.add_argument(
        "--params",
        action="store_true",
        help="also list every parameter with its param group and regularizers",
    )

    commands.add_parser("schema", help="print the JSON Schema of spec files")

    train = commands.add_parser("run", help="validate a spec, then train it")
    train.add_argument("file", metavar="FILE")
    train.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    train.add_argument("--out", metavar="DIR", help="run directory (default runs/NAME-TIME)")

    again = commands.add_parser("resume", help="continue an interrupted run")
    again.add_argument("run_dir", metavar="RUN_DIR")

    score = commands.add_parser("eval", help="metrics of a run's best checkpoint")
    score.add_argument("run_dir", metavar="RUN_DIR")
    score.add_argument("--checkpoint", choices=("best", "last"), default="best")

    guess = commands.add_parser("predict", help="a run's model outputs for new rows")
    guess.add_argument("run_dir", metavar="RUN_DIR")
    guess.add_argument(
        "--input",
        required=True,
        metavar="FILE",
        help="rows: .npy, .npz or .pt; or raw data for the run's source (CSV, texts, images)",
    )
    guess.add_argument("--output", required=True, metavar="FILE", help=".npy or .csv")
    guess.add_argument("--checkpoint", choices=("best", "last"), default="best")
    for command in (check, show, train, again, score, guess):
        command.add_argument(
            "--allow-import",
            action="append",
            default=[],
            metavar="PREFIX",
            dest="allow_imports",
            help="let the spec import user code under this module prefix (repeatable)",
        )
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
        report = validate(_as_path(file), _overrides(args.set), args.allow_imports)
        ok = ok and report.ok
        if args.format == "json":
            everything += [d.to_json() for d in report.diagnostics]
            continue
        if report.diagnostics:
            print(report.format())
        if report.ok:
            outputs = ", ".join(
                f"{name} {_shape(shape)}" for name, shape in report.output_shapes.items()
            )
            print(f"{file}: valid; output {outputs}; {report.param_count:,} parameters")
            for where, names in report.selections.items():
                print(f"  {where} selects {len(names)}: {', '.join(names) or '-'}")
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
    print(summary(spec, params=args.params, allow_imports=args.allow_imports))
    return 0


def cmd_schema(_args: argparse.Namespace) -> int:
    from tdsl.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from tdsl.compile import resolve_device
    from tdsl.loading import read_spec
    from tdsl.rundir import default_run_dir, run
    from tdsl.validate import validate

    report = validate(_as_path(args.file), _overrides(args.set), args.allow_imports)
    if report.diagnostics:
        print(report.format(), file=sys.stderr)
    if not report.ok:
        print(f"{args.file}: not started: the spec has errors", file=sys.stderr)
        return 1
    spec, _ = read_spec(_as_path(args.file), _overrides(args.set))
    out = _as_path(args.out) if args.out else default_run_dir(spec)
    device = resolve_device(spec.device.name)
    print(
        f"device: {device} (asked: {spec.device.name}; precision: {spec.device.precision})",
        file=sys.stderr,
    )
    try:
        with _stop_on_sigterm():
            directory, result = run(spec, out, allow_imports=args.allow_imports)
    except KeyboardInterrupt:
        print(
            f"interrupted; continue from the last finished epoch with: tdsl resume {out}",
            file=sys.stderr,
        )
        return 130
    print(f"run directory: {directory}")
    if result.history:
        print(f"final: {_logs(result.history[-1])}")
    return 0


def _logs(logs: dict) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in logs.items() if k not in ("epoch", "seconds"))


@contextlib.contextmanager
def _stop_on_sigterm():
    """SIGTERM stops a run like Ctrl-C: the current step is abandoned, the last epoch's
    checkpoint stays, and the run can be resumed."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_resume(args: argparse.Namespace) -> int:
    from tdsl.rundir import resume

    try:
        with _stop_on_sigterm():
            result = resume(_as_path(args.run_dir), allow_imports=args.allow_imports)
    except KeyboardInterrupt:
        print(f"interrupted; continue with: tdsl resume {args.run_dir}", file=sys.stderr)
        return 130
    if result.history:
        print(f"final: {_logs(result.history[-1])}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from tdsl.rundir import evaluate_run

    for split, logs in evaluate_run(
        _as_path(args.run_dir), args.checkpoint, args.allow_imports
    ).items():
        print(f"{split}: {_logs(logs)}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tdsl.rundir import predict_run

    rows = predict_run(
        _as_path(args.run_dir),
        _as_path(args.input),
        _as_path(args.output),
        args.checkpoint,
        args.allow_imports,
    )
    print(f"wrote {rows} predictions to {args.output}")
    return 0


COMMANDS = {
    "validate": cmd_validate,
    "summary": cmd_summary,
    "schema": cmd_schema,
    "run": cmd_run,
    "resume": cmd_resume,
    "eval": cmd_eval,
    "predict": cmd_predict,
}


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
