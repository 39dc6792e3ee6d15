"""The commands that train a run: run and resume (in one process or several), with how a
run stops on Ctrl-C or SIGTERM and how its epochs are reported. The commands that use a
trained run are in `cli_trained`."""

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
