"""Help texts of the `tdsl` command line: every argument's, where the parser gives none, and
an example for each command (shown under `tdsl COMMAND --help`). Kept apart from the parser
so that it stays a list of what each option does; no heavy imports (`tdsl --help` is quick).
"""

from __future__ import annotations

import argparse

# An argument's help by its destination, for every command that has it.
HELP = {
    "file": "the spec file (YAML)",
    "set": "override a spec field (repeatable): PATH=VALUE, PATH+=VALUE appends to a list, "
    "~PATH removes a key",
    "run_dir": "a run directory written by `tdsl run`",
    "checkpoint": "best (the monitored value's best epoch, the default) or last",
    "format": "text (the default) or json: the diagnostics as a JSON list",
}
EXAMPLES = {
    "validate": "tdsl validate specs/ring_dnn.yaml --set train.epochs=5\n"
    "  tdsl validate specs/        every *.yaml/*.yml file in the folder",
    "summary": "tdsl summary specs/text_cnn.yaml --params",
    "schema": "tdsl schema > tdsl.schema.json   (point your editor's YAML plugin at it)",
    "run": "tdsl run specs/ring_dnn.yaml --set train.epochs=5 --out runs/mine",
    "resume": "tdsl resume runs/mine",
    "eval": "tdsl eval runs/mine --checkpoint last\n"
    "  tdsl eval runs/titanic --data labelled.csv --format json   a new labelled file",
    "predict": "tdsl predict runs/titanic --input new_passengers.csv --keep PassengerId "
    "--output predictions.csv",
    "plot": "tdsl plot runs/mine --metric val_accuracy --out curves.svg",
}


def add_help(parser: argparse.ArgumentParser) -> None:
    """Fill in the help of every argument the parser left without one, and each command's
    example; an example given where the command is declared stays."""
    parser.epilog = parser.epilog or "example: tdsl init data.csv --target y && tdsl run data.yaml"
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, command in action.choices.items():
            if command.epilog is None and name in EXAMPLES:
                command.epilog = f"example:\n  {EXAMPLES[name]}"
            command.formatter_class = argparse.RawDescriptionHelpFormatter
            for argument in command._actions:
                if argument.help is None:
                    argument.help = HELP.get(argument.dest)


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    """`COMMAND DEST` of every argument without help, and `COMMAND` of every command without
    an example: what `tdsl --help` should never leave out."""
    missing = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, command in action.choices.items():
            if "example" not in (command.epilog or ""):
                missing.append(name)
            missing += [f"{name} {a.dest}" for a in command._actions if not a.help]
    return missing
