"""`tdsl run|resume --nproc N`: N processes on this machine, started by torch's own launcher
(`torch.distributed.run`, i.e. torchrun), each running `python -m tdsl ...` without --nproc."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tdsl.distributed import DistributedError


def launch(nproc: int, argv: Sequence[str]) -> None:
    """Run `python -m tdsl ARGV` in `nproc` processes on this machine through
    torch.distributed.run (torchrun); raises DistributedError naming the failed ones."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = torchrun.parse_args(
        ["--standalone", "--nproc-per-node", str(nproc), "--module", "tdsl", *argv]
    )
    try:
        torchrun.run(args)
    except ChildFailedError as exc:
        raise DistributedError(_failures(exc, nproc)) from None
    except SignalException:
        raise KeyboardInterrupt from None


def _failures(exc: Any, nproc: int) -> str:
    first_rank, first = exc.get_first_failure()
    # A recorded error (tdsl/__main__.py) says what was raised; a made-up one only how.
    message = first.message.get("message", "") if isinstance(first.message, dict) else ""
    lines = str(message).strip().splitlines()
    if lines:  # its exit code may then be the launcher's stop signal: leave it out
        how = f": {lines[0]}"
    elif first.exitcode < 0:
        how = f" (killed by signal {first.signal_name()})"
    else:
        how = f" (exit code {first.exitcode})"
    others = sorted(rank for rank in exc.failures if rank != first_rank)
    also = f"; then process(es) {', '.join(map(str, others))} stopped" if others else ""
    return f"process {first_rank} of {nproc} failed{how}{also}; its output is above"
