"""The `tdsl` command line's arguments: one subcommand each, with help and an example.
This module assembles them and holds the spec commands (validate, summary, schema, init,
list); the run-directory commands are in `cli_run_parsers`."""

from __future__ import annotations

import argparse

from tdsl.runs.cli_run_parsers import add_run_commands


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
        "--strict",
        action="store_true",
        help="exit 1 on warnings too (specs that train, but likely not as meant): for CI",
    )
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

    train, again, score, guess, ship = add_run_commands(commands)
    for command, does in ((check, "check for"), (train, "train in"), (again, "continue in")):
        command.add_argument(
            "--nproc",
            type=_process_count,
            metavar="N",
            help=f"{does} N data-parallel processes on this machine (device.strategy: ddp)",
        )

    _add_init_and_list(commands)
    from tdsl.runs.experiment_cli import add_parsers

    add_parsers(commands)
    for command in (check, show, train, again, score, guess, ship):
        command.add_argument(
            "--allow-import",
            action="append",
            default=[],
            metavar="PREFIX",
            dest="allow_imports",
            help="let the spec import user code under this module prefix (repeatable)",
        )
        command.add_argument(
            "--data-root",
            metavar="DIR",
            help="refuse any data path that resolves outside DIR (for specs you did not write)",
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


def positive_number(what: str = ""):
    """An argparse type for a whole number >= 1; `what` says of what (" of processes")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected a positive number{what}, got {text!r}")
        return value

    return parse


_process_count = positive_number(" of processes")
