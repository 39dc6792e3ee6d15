"""The `tdsl sweep` and `tdsl compare` commands (registered by `tdsl.runs.cli`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tdsl.errors import SpecError
from tdsl.runs.cli_parser import positive_number

_positive = positive_number()


def add_parsers(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="run a spec many times with different overrides (grid, random, search)",
        epilog="example: tdsl sweep specs/ring_dnn.yaml --grid optimizer.lr=1e-3,1e-2 --parallel 2",
    )
    sweep.add_argument("file", nargs="?", metavar="FILE", help="the spec every trial starts from")
    sweep.add_argument(
        "--grid", action="append", default=[], metavar="PATH=V1,V2,...", help="values to try"
    )
    sweep.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="PATH=DIST",
        help="uniform(a,b), log_uniform(a,b), int_uniform(a,b) or choice(v1,v2,...)",
    )
    sweep.add_argument("--random", type=_positive, metavar="N", help="draw --param values N times")
    sweep.add_argument("--seed", type=int, default=0, help="of the draws (default 0)")
    sweep.add_argument(
        "--search", choices=("tpe", "random"), help="an Optuna search (tdsl[search])"
    )
    sweep.add_argument("--trials", type=_positive, metavar="N", help="trials of a --search")
    sweep.add_argument("--monitor", metavar="NAME", help="what a --search optimizes")
    sweep.add_argument(
        "--mode",
        choices=("auto", "min", "max"),
        default="auto",
        help="whether a --search minimizes or maximizes --monitor (auto: by its name)",
    )
    sweep.add_argument(
        "--parallel", type=_positive, default=1, metavar="K", help="trials running at once"
    )
    sweep.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    sweep.add_argument("--out", metavar="DIR", help="sweep directory (default runs/sweeps/...)")
    sweep.add_argument("--resume", metavar="SWEEP_DIR", help="continue an interrupted sweep")
    sweep.add_argument(
        "--config",
        metavar="FILE",
        help="a YAML file whose `sweep:` section gives these options (the command line adds)",
    )
    sweep.add_argument(
        "--allow-import",
        action="append",
        default=[],
        metavar="PREFIX",
        dest="allow_imports",
        help="let the spec import user code under this module prefix (repeatable)",
    )

    compare = commands.add_parser(
        "compare",
        help="runs and sweeps side by side",
        epilog="example: tdsl compare runs/sweeps/ring_dnn-* --sort val_accuracy",
    )
    compare.add_argument(
        "runs", nargs="+", metavar="RUN_OR_SWEEP", help="run directories or sweep directories"
    )
    compare.add_argument("--sort", metavar="METRIC", help="sort by a last-epoch metric")
    compare.add_argument("--plot", metavar="FILE", help="overlay the runs' curves (tdsl[plot])")
    compare.add_argument(
        "--metric",
        action="append",
        default=[],
        dest="metrics",
        metavar="NAME",
        help="a metric to show (repeatable; default: the runs' monitors and metrics)",
    )


def cmd_sweep(args: argparse.Namespace) -> int:
    from tdsl.runs import sweep as S
    from tdsl.runs.distributions import SweepError, parse_param

    if args.resume and args.file:
        raise SweepError("--resume continues a sweep as it was planned: give no FILE")
    if not args.resume and not args.file:
        raise SweepError("give the spec FILE to sweep, or --resume SWEEP_DIR")
    if args.config:
        from tdsl.runs.sweep_file import apply_sweep_file

        apply_sweep_file(Path(args.config), args)
    params = [parse_param(text) for text in args.param]
    if args.resume:
        directory = Path(args.resume)
        state = S.read_state(directory)
    else:
        spec_file = Path(args.file)
        name = _spec_name(spec_file, args.set)
        directory = Path(args.out) if args.out else S.new_sweep_dir(name)
        extra: dict = {"overrides": list(args.set)}
        if args.search:
            from tdsl.runs.search import boundary_trials, optuna_module

            optuna_module()  # missing: say so before checking anything
            if args.grid or args.random:
                raise SweepError("--search draws its own trials: leave out --grid and --random")
            if args.trials is None:
                raise SweepError("--search needs --trials N")
            checks = [[*args.set, *t] for t in boundary_trials(params)]
            S.check_trials(spec_file, checks, args.allow_imports)
            monitor = args.monitor or _default_monitor(spec_file, args.set)
            extra["search"] = _search(args, monitor)
            extra["params"] = list(args.param)
            trials = []
        else:
            trials = [[*args.set, *t] for t in S.plan(args.grid, params, args.random, args.seed)]
            S.check_trials(spec_file, trials, args.allow_imports)
        state = S.create_sweep(directory, spec_file, trials, args.allow_imports, extra)
    print(f"sweep directory: {directory}", flush=True)
    try:
        with _stop_on_sigterm():
            state = _run(directory, state, args.parallel)
    except KeyboardInterrupt:
        print(f"interrupted; continue with: tdsl sweep --resume {directory}", file=sys.stderr)
        return 130
    print(f"trials: {S.summary_line(state)}")
    print(f"compare them with: tdsl compare {directory}")
    return 0 if all(t["status"] in ("finished", "pruned") for t in state["trials"]) else 1


def _run(directory: Path, state: dict, parallel: int) -> dict:
    from tdsl.runs import sweep as S
    from tdsl.runs.distributions import parse_param

    if "search" in state:
        from tdsl.runs.search import run_search

        params = [parse_param(text) for text in state["params"]]
        study = run_search(directory, params, sys.stdout)
        state = S.read_state(directory)
        best = study.best_trial
        print(f"best: trial-{best.number:03d} {state['search']['monitor']}={best.value:.4g}")
        return state
    return S.run_sweep(directory, parallel, sys.stdout)


def _stop_on_sigterm():
    from tdsl.runs.cli_runs import _stop_on_sigterm

    return _stop_on_sigterm()


def _search(args: argparse.Namespace, monitor: str) -> dict:
    from tdsl.train.callbacks import resolve_mode

    return {
        "sampler": args.search,
        "trials": args.trials,
        "monitor": monitor,
        "mode": resolve_mode(monitor, args.mode),
        "seed": args.seed,
    }


def _read(spec_file: Path, assignments: list[str]):
    from tdsl.spec.load_dump import read_spec
    from tdsl.spec.overrides import apply_overrides

    spec, problems = read_spec(spec_file, lambda data: apply_overrides(data, assignments))
    if spec is None:
        raise SpecError(problems)
    return spec


def _spec_name(spec_file: Path, assignments: list[str]) -> str:
    return _read(spec_file, assignments).name


def _default_monitor(spec_file: Path, assignments: list[str]) -> str:
    from tdsl.check.training_setup import default_monitor

    spec = _read(spec_file, assignments)
    return spec.train.checkpoint.monitor or default_monitor(spec)


def cmd_compare(args: argparse.Namespace) -> int:
    from tdsl.runs.compare import plot_runs, read_run, run_dirs, table

    rows = [read_run(label, directory) for label, directory in run_dirs(args.runs)]
    print(table(rows, args.sort))
    if args.plot:
        print(f"wrote {plot_runs(rows, args.plot, args.metrics)}")
    return 0
