"""The `tdsl` command line. Every spec mistake is printed as located diagnostics; exit codes:
0 success, 1 invalid spec or failed run, 2 usage error, 130 interrupted, 141 the output was
closed early (`tdsl schema | head`: quietly, as a program killed by SIGPIPE)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence

import attrs

from tdsl.errors import SpecError, TdslError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tdsl", description="A declarative training DSL for PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"tdsl {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("validate", help="check specs without running them")
    check.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="spec files, or folders: every *.yaml and *.yml file in them, recursively",
    )
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.add_argument(
        "--print",
        action="store_true",
        dest="print_config",
        help="print the spec as checked (bases merged, overrides applied, every default)",
    )
    check.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a spec field (repeatable): PATH=VALUE, PATH+=VALUE appends to a list, "
        "~PATH removes a key",
    )

    show = commands.add_parser("summary", help="print the model's layers, shapes and parameters")
    show.add_argument("file", metavar="FILE")
    show.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    show.add_argument(
        "--params",
        action="store_true",
        help="also list every parameter with its param group and regularizers",
    )
    show.add_argument(
        "--expand",
        action="store_true",
        help="a row for every layer inside block uses and repeats (default: one row each)",
    )

    for command in (check, show):
        _cost_flags(command)

    commands.add_parser("schema", help="print the JSON Schema of spec files")

    train = commands.add_parser("run", help="validate a spec, then train it")
    train.add_argument("file", metavar="FILE")
    train.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    train.add_argument("--out", metavar="DIR", help="run directory (default runs/NAME-TIME)")
    train.add_argument(
        "--cost",
        action="store_true",
        help="add the memory and FLOPs estimate to the run's summary.txt",
    )
    train.add_argument(
        "--print-config",
        action="store_true",
        help="print the spec as it would run (every default spelled out) and exit",
    )

    again = commands.add_parser("resume", help="continue an interrupted run")
    again.add_argument("run_dir", metavar="RUN_DIR")
    for command, does in ((check, "check for"), (train, "train in"), (again, "continue in")):
        command.add_argument(
            "--nproc",
            type=_process_count,
            metavar="N",
            help=f"{does} N data-parallel processes on this machine (device.strategy: ddp)",
        )

    score = commands.add_parser("eval", help="metrics of a run's best checkpoint")
    score.add_argument("run_dir", metavar="RUN_DIR")
    score.add_argument("--checkpoint", choices=("best", "last"), default="best")

    guess = commands.add_parser(
        "predict", help="a run's model outputs for new rows, or text from a language model"
    )
    guess.add_argument("run_dir", metavar="RUN_DIR")
    guess.add_argument(
        "--input",
        metavar="FILE",
        help="rows: .npy, .npz or .pt; or raw data for the run's source (CSV, texts, images)",
    )
    guess.add_argument(
        "--output",
        metavar="FILE",
        help="written as its extension says: .csv, .npy, .json, or .parquet (needs pyarrow)",
    )
    guess.add_argument("--checkpoint", choices=("best", "last"), default="best")
    _generation_arguments(guess)

    draw = commands.add_parser(
        "plot", help="draw a run's training and validation curves (needs tdsl[plot])"
    )
    draw.add_argument("run_dir", metavar="RUN_DIR")
    draw.add_argument(
        "--metric",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        dest="metrics",
        help="curves to draw (repeatable; default: the loss and the spec's metrics)",
    )
    draw.add_argument(
        "--out", metavar="FILE", help="a .png, .svg or .pdf (default RUN_DIR/curves.png)"
    )
    draw.add_argument("--log", action="store_true", help="values on a log scale")
    _add_init_and_list(commands)
    from tdsl.runs.experiment_cli import add_parsers

    add_parsers(commands)
    for command in (check, show, train, again, score, guess):
        command.add_argument(
            "--allow-import",
            action="append",
            default=[],
            metavar="PREFIX",
            dest="allow_imports",
            help="let the spec import user code under this module prefix (repeatable)",
        )
    from tdsl.runs.cli_help import add_help

    add_help(parser)
    return parser


def _version() -> str:
    from tdsl.runs.version import package_version

    return package_version()


def _cost_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--cost",
        action="store_true",
        help="estimate memory and FLOPs of a training step, an epoch and the run",
    )
    command.add_argument(
        "--memory",
        type=_memory_size,
        metavar="SIZE",
        help="memory per device (24GB): say whether a training step fits; implies --cost",
    )
    command.add_argument(
        "--device",
        type=_device_memory,
        metavar="DEVICE:SIZE",
        help="the same as --memory, with the device named (cuda:24GB)",
    )
    command.add_argument(
        "--calibrate",
        action="store_true",
        help="time a few real training steps here to turn FLOPs into times; implies --cost",
    )


def _memory_size(text: str) -> int:
    from tdsl.check.cost_report import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _device_memory(text: str) -> int:
    from tdsl.check.cost_report import parse_device

    try:
        _, memory = parse_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if memory is None:
        raise argparse.ArgumentTypeError(f"expected DEVICE:SIZE such as cuda:24GB, got {text!r}")
    return memory


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


def _add_init_and_list(commands) -> None:
    init = commands.add_parser(
        "init",
        help="write a first spec for a data file or folder",
        description="Infer a spec from data: a CSV file's columns and task, a folder of "
        "per-class image folders, or a file of label<TAB>text lines. The spec is validated "
        "after it is written.",
        epilog="example: tdsl init specs/data/titanic.csv --target Survived --out titanic.yaml",
    )
    init.add_argument(
        "data", metavar="DATA", help="a .csv file, an image folder, or a .tsv/.txt file"
    )
    init.add_argument("--target", metavar="COLUMN", help="the CSV column to predict")
    init.add_argument(
        "--out", metavar="FILE", help="where to write the spec (default: DATA's name + .yaml)"
    )
    init.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    listing = commands.add_parser(
        "list",
        help="what a spec can name: ops, losses, metrics, optimizers, schedules, data kinds",
        description="Each entry with its arguments (NAME=DEFAULT; a bare NAME is required) "
        "and a one-line description.",
        epilog="example: tdsl list ops conv",
    )
    listing.add_argument(
        "what",
        choices=("ops", "losses", "metrics", "optimizers", "schedules", "data"),
        metavar="WHAT",
        help="ops, losses, metrics, optimizers, schedules or data",
    )
    listing.add_argument(
        "filter", nargs="?", default="", metavar="TEXT", help="only names containing TEXT"
    )


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


def _process_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of processes, got {text!r}")
    return value


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
    everything, costs, ok, tally = [], {}, True, [0, 0]
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
    return 0 if ok and not empty else 1


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
    from tdsl.check.summary import summary

    spec, problems = _read(args.file, args.set)
    if spec is None:
        raise SpecError(problems)
    print(summary(spec, params=args.params, allow_imports=args.allow_imports, expand=args.expand))
    if _wants_cost(args):
        from tdsl.check.data_section import split_rows
        from tdsl.check.outputs_and_targets import data_signature
        from tdsl.check.pipeline import infer
        from tdsl.errors import Diagnostics

        inference = infer(spec, Diagnostics(), args.allow_imports)
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


def cmd_run(args: argparse.Namespace) -> int:
    from tdsl.check.pipeline import validate
    from tdsl.errors import Report
    from tdsl.runs.directories import default_run_dir, refuse_existing_run, run
    from tdsl.train import distributed

    lead = distributed.is_lead()  # of launched processes, only rank 0 prints
    spec, problems = _read(args.file, args.set)  # a Python spec file runs once
    if spec is None:
        report = Report(tuple(problems))
    else:
        report = validate(spec, None, args.allow_imports, args.nproc)
    if report.diagnostics and lead:
        print(report.format(), file=sys.stderr)
    if not report.ok:
        if lead:
            print(f"{args.file}: not started: the spec has errors", file=sys.stderr)
        return 1
    if args.print_config:
        print(_resolved(args.file, args.set), end="")
        return 0
    out = _as_path(args.out) if args.out else default_run_dir(spec)
    if (args.nproc or 1) > 1:  # start the processes; each runs this command without --nproc
        refuse_existing_run(out)
        passed = [a for value in args.set for a in ("--set", value)]
        argv = ["run", args.file, "--out", str(out), *passed, *_allowed(args)]
        return _launch(args.nproc, argv, f"tdsl resume {out} --nproc {args.nproc}")
    if lead:
        _print_device(spec.device)
    try:
        with _stop_on_sigterm(), distributed.session():
            result = run(spec, out, allow_imports=args.allow_imports, cost=args.cost)
    except KeyboardInterrupt:
        _end_bars()
        if lead:
            print(
                f"interrupted; continue from the last finished epoch with: {_resume_command(out)}",
                file=sys.stderr,
            )
        return 130
    if lead:
        print(f"run directory: {result.directory}")
        if result.history:
            print(f"final: {_logs(result.history[-1])}")
    return 0


def _end_bars() -> None:
    """End a progress bar still on screen with a newline, so the message printed next starts
    a line of its own (no bar is drawn unless training imported the progress module)."""
    progress = sys.modules.get("tdsl.train.progress")
    if progress is not None:
        progress.end_live_bars()


def _print_device(device) -> None:
    from tdsl.train import distributed
    from tdsl.train.program import resolve_device

    launch = distributed.launched()
    processes = launch.world_size if launch else 1
    if device.strategy != "ddp":
        where = resolve_device(device.name)
        print(
            f"device: {where} (asked: {device.name}; precision: {device.precision})",
            file=sys.stderr,
        )
        return
    where = distributed.place(device.name, 0)
    backend = distributed.backend_for(device, where)
    print(
        f"device: {where.type} (asked: {device.name}; precision: {device.precision}); "
        f"ddp: {processes} process(es), backend {backend}",
        file=sys.stderr,
    )
    if processes == 1:
        print(
            "note: strategy ddp with one process trains alone; start several with "
            "--nproc N or torchrun",
            file=sys.stderr,
        )


def _allowed(args: argparse.Namespace) -> list[str]:
    return [a for prefix in args.allow_imports for a in ("--allow-import", prefix)]


def _launch(nproc: int, argv: list[str], resume: str) -> int:
    from tdsl.runs.launcher import launch
    from tdsl.train import distributed

    if distributed.launched() is not None:
        print("error: --nproc starts processes, but a launcher started this one", file=sys.stderr)
        return 2
    try:
        launch(nproc, argv)
    except KeyboardInterrupt:
        print(f"interrupted; continue with: {resume}", file=sys.stderr)
        return 130
    return 0


def _resume_command(out) -> str:
    from tdsl.train import distributed

    launch = distributed.launched()
    if launch is None or launch.world_size == 1:
        return f"tdsl resume {out}"
    if launch.local_world_size == launch.world_size:
        return f"tdsl resume {out} --nproc {launch.world_size}"
    return f"torchrun ... -m tdsl resume {out} (on every machine)"


def _logs(logs: dict) -> str:
    return " ".join(
        f"{k}={v:.4g}" for k, v in logs.items() if k not in ("epoch", "seconds", "compile_seconds")
    )


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
    from tdsl.check.pipeline import validate
    from tdsl.runs.directories import resume
    from tdsl.train import distributed

    if (args.nproc or 1) > 1:  # start the processes; each resumes without --nproc
        spec_file = _as_path(args.run_dir) / "spec.yaml"
        if spec_file.exists():  # the number of processes may differ from the first run's
            report = validate(spec_file, None, args.allow_imports, args.nproc)
            if not report.ok:
                print(report.format(), file=sys.stderr)
                return 1
        argv = ["resume", args.run_dir, *_allowed(args)]
        return _launch(args.nproc, argv, f"tdsl resume {args.run_dir} --nproc {args.nproc}")
    lead = distributed.is_lead()
    try:
        with _stop_on_sigterm(), distributed.session():
            result = resume(_as_path(args.run_dir), allow_imports=args.allow_imports)
    except KeyboardInterrupt:
        _end_bars()
        if lead:
            print(f"interrupted; continue with: {_resume_command(args.run_dir)}", file=sys.stderr)
        return 130
    if result.history and lead:
        print(f"final: {_logs(result.history[-1])}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from tdsl.runs.directories import evaluate_run

    for split, logs in evaluate_run(
        _as_path(args.run_dir), args.checkpoint, args.allow_imports
    ).items():
        print(f"{split}: {_logs(logs)}")
    return 0


def _generation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--generate",
        type=int,
        metavar="N",
        help="language-model runs: print the prompt and N generated tokens",
    )
    parser.add_argument("--prompt", metavar="TEXT", help="where generation starts")
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="sample from softmax(scores / T); 0 (the default): greedy",
    )
    parser.add_argument("--top-k", type=int, metavar="K", help="sample among the K best only")
    parser.add_argument("--seed", type=int, help="the sampling seed")


def cmd_generate(args: argparse.Namespace) -> int:
    from tdsl.runs.generate import generate_run

    if args.input or args.output:
        print("error: --generate writes text; it takes no --input or --output", file=sys.stderr)
        return 2
    text = generate_run(
        _as_path(args.run_dir),
        args.generate,
        args.prompt,
        args.checkpoint,
        args.temperature,
        args.top_k,
        args.seed,
        args.allow_imports,
    )
    print(text)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tdsl.runs.directories import RunError, predict_run, prediction_format

    if args.generate is not None:
        return cmd_generate(args)
    if not args.input or not args.output:
        missing = " and ".join(f"--{k}" for k in ("input", "output") if not getattr(args, k))
        print(f"error: predict needs {missing} (or --generate N)", file=sys.stderr)
        return 2

    try:  # refused before the model is loaded and run
        prediction_format(_as_path(args.output))
    except RunError as exc:
        print(f"error: --output {exc}", file=sys.stderr)
        return 2
    rows = predict_run(
        _as_path(args.run_dir),
        _as_path(args.input),
        _as_path(args.output),
        args.checkpoint,
        args.allow_imports,
    )
    print(f"wrote {rows} predictions to {args.output}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from tdsl.runs.plot import plot_run

    written = plot_run(_as_path(args.run_dir), args.metrics, args.out, log=args.log)
    print(f"wrote {written}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from tdsl.runs.experiment_cli import cmd_sweep

    return cmd_sweep(args)


def cmd_compare(args: argparse.Namespace) -> int:
    from tdsl.runs.experiment_cli import cmd_compare

    return cmd_compare(args)


COMMANDS = {
    "validate": cmd_validate,
    "summary": cmd_summary,
    "schema": cmd_schema,
    "run": cmd_run,
    "resume": cmd_resume,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "plot": cmd_plot,
    "init": cmd_init,
    "list": cmd_list,
    "sweep": cmd_sweep,
    "compare": cmd_compare,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader left (`| head`): the rest of the output is unwanted
        _discard_output()
        return 141


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SpecError as exc:
        _end_bars()
        print(str(exc), file=sys.stderr)
        return 1
    except TdslError as exc:
        _end_bars()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _end_bars()
        print("interrupted", file=sys.stderr)
        return 130


def _discard_output() -> None:
    """Point stdout at /dev/null, so that flushing what is still buffered (at exit at the
    latest) cannot raise BrokenPipeError again and print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file behind sys.stdout (embedded use)
        pass


if __name__ == "__main__":
    sys.exit(main())
