"""`tdsl run|resume --nproc N`: N processes on this machine, started by torch's own launcher
(`torch.distributed.run`, i.e. torchrun), each running `python -m tdsl ...` without --nproc."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tdsl.errors import DistributedError


def launch(nproc: int, argv: Sequence[str]) -> None:
    """Run `python -m tdsl ARGV` in `nproc` processes on this machine through
    torch.distributed.run (torchrun); raises DistributedError naming the failed ones."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = torchrun.parse_args(
        ["--standalone", "--nproc-per-node", str(nproc), "--module", "tdsl", *argv]
    )
    # torchrun prints a banner about OMP_NUM_THREADS when it sets it itself; setting it first
    # (one thread per process, torchrun's own choice) keeps the banner from the user.
    # `python -m` puts the working directory first on sys.path, so a `yaml.py` in a
    # stranger's checkout would run in every worker: safe-path mode (-P) leaves it out.
    child_env = {
        "OMP_NUM_THREADS": "1",
        "PYTHONSAFEPATH": "1",
        LAUNCHER_PATH: os.pathsep.join(_import_path()),
        **_tdsl_path(),
    }
    saved = {name: os.environ.get(name) for name in child_env}
    for name, value in child_env.items():
        if name != "OMP_NUM_THREADS" or saved[name] is None:
            os.environ[name] = value
    try:
        torchrun.run(args)
    except ChildFailedError as exc:
        raise DistributedError(_failures(exc, nproc)) from None
    except SignalException:
        raise KeyboardInterrupt from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


LAUNCHER_PATH = "TDSL_LAUNCHER_PATH"  # the launching process's sys.path, for its workers


def _import_path() -> list[str]:
    """This process's sys.path, absolute (`""`, `python -m`'s working directory, too), so
    the workers import the user's modules (a `kind: python` factory, an op by import path)
    from where this process would."""
    found = []
    for entry in sys.path:
        entry = os.path.abspath(entry or os.curdir)
        # Not a path hook's token (an editable install's finder), which is no folder.
        if os.path.exists(entry) and os.pathsep not in entry and entry not in found:
            found.append(entry)
    return found


def adopt_launcher_path() -> None:
    """In a worker: append the launching process's import path to this one. Appended, not
    prepended: in safe-path mode a module in the working directory still never shadows one
    tdsl or torch imports, while the user's own modules there are found."""
    given = os.environ.get(LAUNCHER_PATH)
    for entry in given.split(os.pathsep) if given else ():
        if entry and entry not in sys.path:
            sys.path.append(entry)


def _tdsl_path() -> dict[str, str]:
    """PYTHONPATH for workers that finds this tdsl: a tdsl imported from a source checkout
    through the working directory is not found in safe-path mode otherwise. Only that
    folder is added, never the working directory of an unrelated project."""
    source = Path(__file__).resolve().parents[2]  # the folder holding this tdsl package
    if source != Path.cwd().resolve():
        return {}  # installed, or found through PYTHONPATH, which the workers inherit
    existing = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": os.pathsep.join([str(source), *([existing] if existing else [])])}


def _recorded(failure: Any) -> str:
    """The error a failed process recorded (tdsl/__main__.py: what it raised); "" when it
    recorded none (it exited with a code after printing its error, or was killed), where
    torchrun makes one up."""
    message = failure.message.get("message", "") if isinstance(failure.message, dict) else ""
    return str(message).strip()


def _failures(exc: Any, nproc: int) -> str:
    # torchrun's first failure has the earliest timestamp, in whole seconds: a recorded
    # error's, else when the launcher noticed the exit; a tie goes to the one it noticed
    # first, and it checks the processes in local rank order. A process that lost the others
    # to a crash exits moments after the crashed one, so it often shares that second and, as
    # rank 0 noticed in the same check, came first. Within a second a recorded error comes
    # first: it was raised, which losing the others never is (distributed.session).
    failures = list(exc.failures.items())  # in the order the launcher noticed them
    first_rank, first = min(failures, key=lambda kv: (kv[1].timestamp, not _recorded(kv[1])))
    lines = _recorded(first).splitlines()
    if lines:  # its exit code may then be the launcher's stop signal: leave it out
        how = f": {lines[0]}"
    elif first.exitcode < 0:
        how = f" (killed by signal {first.signal_name()})"
    else:
        how = f" (exit code {first.exitcode})"
    others = sorted(rank for rank in exc.failures if rank != first_rank)
    also = f"; then process(es) {', '.join(map(str, others))} stopped" if others else ""
    return f"process {first_rank} of {nproc} failed{how}{also}; its output is above"
