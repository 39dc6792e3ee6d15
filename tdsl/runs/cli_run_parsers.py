"""The `tdsl` command line's arguments for the commands over a run directory: run, resume,
eval, predict (with text generation), export and plot. (`cli_parser` assembles the whole
command line and adds the flags these share with the spec commands.)"""

from __future__ import annotations

import argparse


def add_run_commands(commands) -> tuple[argparse.ArgumentParser, ...]:
    """Add the run-directory commands to `commands` (argparse's subparsers), in the order
    `tdsl --help` lists them; returns run, resume, eval, predict and export, which take the
    shared flags."""
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
    return train, again, score, guess, ship


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
