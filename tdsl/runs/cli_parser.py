"""The `tdsl` command line's arguments: one subcommand each, with help and an example."""

from __future__ import annotations

import argparse


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
    again.add_argument(
        "--checkpoint",
        choices=("last", "best"),
        default="last",
        help="continue from this checkpoint (best: when last.pt is damaged)",
    )
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
    score.add_argument(
        "--data",
        metavar="FILE",
        help="score this labelled file (the run's data kind) with the run's fitted transforms",
    )
    score.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text (the default) or json: the metrics (and confusion matrix) as JSON",
    )
    score.add_argument(
        "--confusion",
        metavar="FILE",
        help="with --data, classification: draw the confusion matrix to a .png (needs tdsl[plot])",
    )

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
        help="written as its extension says: .csv, .jsonl/.json (JSON lines) or .parquet "
        "(needs pyarrow), with a header naming each column; .npy: the raw outputs",
    )
    guess.add_argument("--checkpoint", choices=("best", "last"), default="best")
    guess.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="COLUMN",
        help="copy this column of the input CSV into the output, in front (repeatable)",
    )
    guess.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="binary targets: the probability from which the label is 1 (default 0.5)",
    )
    _generation_arguments(guess)

    ship = commands.add_parser(
        "export",
        help="write a run's model as TorchScript, torch.export or ONNX, checked against tdsl",
        epilog="example: tdsl export runs/ring_dnn --format onnx --out ring.onnx",
    )
    ship.add_argument("run_dir", metavar="RUN_DIR")
    ship.add_argument(
        "--format",
        required=True,
        choices=("torchscript", "exported", "onnx"),
        help="torchscript (torch.jit.trace), exported (torch.export) or onnx (needs tdsl[onnx])",
    )
    ship.add_argument(
        "--checkpoint",
        "--which",
        dest="which",
        choices=("best", "last"),
        default="best",
        help="the checkpoint to export: best (the default) or last, as for eval and predict",
    )
    ship.add_argument(
        "--out",
        metavar="FILE",
        help="default RUN_DIR/WHICH.torchscript.pt, WHICH.pt2 or WHICH.onnx",
    )
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
