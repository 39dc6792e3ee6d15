"""The commands that use a trained run: eval (on its splits or another file, with a
confusion matrix), predict (and text generation), export and plot; and the experiment
commands sweep and compare."""

from __future__ import annotations

import argparse
import sys

from tdsl.runs.cli_runs import _logs
from tdsl.runs.cli_specs import _as_path


def cmd_eval(args: argparse.Namespace) -> int:
    from tdsl.runs.directories import evaluate_run
    from tdsl.train.callbacks import strict_json

    if args.data is None:
        if args.confusion:
            print("error: --confusion needs --data FILE", file=sys.stderr)
            return 2
        results = evaluate_run(_as_path(args.run_dir), args.checkpoint, args.allow_imports)
        _say_which_spec(args)
        if args.format == "json":
            print(strict_json(results, indent=2))
        for split, logs in results.items() if args.format == "text" else ():
            print(f"{split}: {_logs(logs)}")
        return 0
    return _eval_data(args)


def _say_which_spec(args: argparse.Namespace) -> None:
    recorded = f"{args.run_dir}/checkpoints/{args.checkpoint}.pt"
    print(f"spec: the one recorded in {recorded} (spec.yaml as the run wrote it)", file=sys.stderr)


def _eval_data(args: argparse.Namespace) -> int:
    from tdsl.runs.eval_data import confusion_text, draw_confusion, evaluate_file
    from tdsl.train.callbacks import strict_json

    if args.confusion and not args.confusion.lower().endswith((".png", ".svg", ".pdf")):
        print(f"error: --confusion {args.confusion}: use a .png, .svg or .pdf", file=sys.stderr)
        return 2
    scores = evaluate_file(
        _as_path(args.run_dir), _as_path(args.data), args.checkpoint, args.allow_imports
    )
    _say_which_spec(args)
    if args.format == "json":
        print(strict_json(scores.to_json(), indent=2))
    else:
        print(f"{args.data} ({scores.rows} rows): {_logs(scores.metrics)}")
        if scores.confusion is not None:
            print(confusion_text(scores.confusion, scores.classes))
    if args.confusion:
        if scores.confusion is None:
            print("error: --confusion: the run does not classify rows", file=sys.stderr)
            return 1
        written = draw_confusion(scores.confusion, scores.classes, _as_path(args.confusion))
        print(f"wrote {written}", file=sys.stderr if args.format == "json" else sys.stdout)
    return 0


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
    from tdsl.runs.directories import RunError, predict_run
    from tdsl.runs.prediction_files import prediction_format

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
        keep=args.keep,
        threshold=args.threshold,
    )
    print(f"wrote {rows} predictions to {args.output}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tdsl.runs.export import CHECK_ROWS, export_run

    done = export_run(
        _as_path(args.run_dir),
        args.format,
        args.which,
        _as_path(args.out) if args.out else None,
        args.allow_imports,
    )
    sizes = " and ".join(str(n) for n in CHECK_ROWS)
    print(f"wrote {done.path} ({done.format})")
    print(
        f"checked on {done.source} in batches of {sizes}: max abs diff "
        f"{done.max_abs_diff:.3g} (tolerance {done.tolerance:.3g})"
    )
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
