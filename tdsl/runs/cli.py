"""The `tdsl` command line. Every spec mistake is printed as located diagnostics; exit codes:
0 success, 1 invalid spec or failed run, 2 usage error, 130 interrupted, 141 the output was
closed early (`tdsl schema | head`: quietly, as a program killed by SIGPIPE)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from tdsl.errors import SpecError, TdslError
from tdsl.runs.cli_parser import _parser
from tdsl.runs.cli_runs import _end_bars, cmd_resume, cmd_run
from tdsl.runs.cli_specs import cmd_init, cmd_list, cmd_schema, cmd_summary, cmd_validate
from tdsl.runs.cli_trained import (
    cmd_compare,
    cmd_eval,
    cmd_export,
    cmd_plot,
    cmd_predict,
    cmd_sweep,
)
from tdsl.wording import printable

COMMANDS = {
    "validate": cmd_validate,
    "summary": cmd_summary,
    "schema": cmd_schema,
    "run": cmd_run,
    "resume": cmd_resume,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "export": cmd_export,
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
        with _data_root(args):  # every data read below is limited to it
            return COMMANDS[args.command](args)
    except SpecError as exc:
        _end_bars()
        print(str(exc), file=sys.stderr)
        return 1
    except TdslError as exc:
        _end_bars()
        print(f"error: {printable(str(exc))}", file=sys.stderr)  # no raw control bytes
        return 1
    except KeyboardInterrupt:
        _end_bars()
        print("interrupted", file=sys.stderr)
        return 130


def _data_root(args) -> contextlib.AbstractContextManager:
    root = getattr(args, "data_root", None)
    if root is None:  # tdsl.data imports torch: not for `tdsl --help`
        return contextlib.nullcontext()
    from tdsl.data.data_root import data_root

    return data_root(root)


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
