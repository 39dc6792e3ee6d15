"""The commands that train or use a run: run, resume, eval, predict (and generation),
plot, sweep and compare; with how a run stops on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from tdsl.errors import TdslError
from tdsl.runs.cli_specs import _as_path, _read, _resolved


def cmd_run(args: argparse.Namespace) -> int:
    from tdsl.check.pipeline import validate
    from tdsl.errors import Report
    from tdsl.runs.data_cache import run_data_cache
    from tdsl.runs.directories import default_run_dir, run
    from tdsl.runs.run_lock import refuse_existing_run
    from tdsl.train import distributed

    lead = distributed.is_lead()  # of launched processes, only rank 0 prints
    spec, problems = _read(args.file, args.set)  # a Python spec file runs once
    if spec is None:
        report = Report(tuple(problems))
    else:
        out = _as_path(args.out) if args.out else default_run_dir(spec)
        # Text: the ids tokenized while validating are what the run stores (data_cache/).
        with run_data_cache(out, write=False):
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
    """The options each launched process needs again: allowed imports, the data root."""
    root = ["--data-root", args.data_root] if getattr(args, "data_root", None) else []
    return [a for prefix in args.allow_imports for a in ("--allow-import", prefix)] + root


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
        f"{k}={v:.4g}"
        for k, v in logs.items()
        if k not in ("epoch", "seconds", "compile_seconds", "compile_cached")
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
    from tdsl.runs.resuming import resume
    from tdsl.train import distributed

    # Start the processes (each resumes without --nproc), unless there is nothing to train:
    # then this process says so, and neither reads the data nor starts any.
    if (args.nproc or 1) > 1 and not _finished(args.run_dir, args.checkpoint):
        spec_file = _as_path(args.run_dir) / "spec.yaml"
        if spec_file.exists():  # the number of processes may differ from the first run's
            report = validate(spec_file, None, args.allow_imports, args.nproc)
            if not report.ok:
                print(report.format(), file=sys.stderr)
                return 1
        argv = ["resume", args.run_dir, "--checkpoint", args.checkpoint, *_allowed(args)]
        return _launch(args.nproc, argv, f"tdsl resume {args.run_dir} --nproc {args.nproc}")
    lead = distributed.is_lead()
    try:
        with _stop_on_sigterm(), distributed.session():
            result = resume(
                _as_path(args.run_dir), allow_imports=args.allow_imports, which=args.checkpoint
            )
    except KeyboardInterrupt:
        _end_bars()
        if lead:
            print(f"interrupted; continue with: {_resume_command(args.run_dir)}", file=sys.stderr)
        return 130
    if result.history and lead:
        print(f"final: {_logs(result.history[-1])}")
    return 0


def _finished(run_dir: str, which: str) -> bool:
    """Whether the run's checkpoint ran its epochs or stopped early (False where it cannot be
    read: resuming says why)."""
    from tdsl.runs.run_files import load_run_checkpoint
    from tdsl.spec.load_dump import load

    try:
        checkpoint = load_run_checkpoint(_as_path(run_dir), which, "")
        epochs = load(checkpoint["spec"]).train.epochs
    except (OSError, KeyError, TdslError):  # RunFileError is one
        return False
    return bool(checkpoint["stop_reason"]) or len(checkpoint["history"]) >= epochs


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
