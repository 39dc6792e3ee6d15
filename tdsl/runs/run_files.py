"""A run directory's checkpoints read with care: verified, and when one is damaged the other
is offered; and a run directory checked for writing before a resume trains for an epoch."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from tdsl.errors import TdslError
from tdsl.train.checkpoint_files import CheckpointError, is_intact, read_checkpoint

OTHER = {"last": "best", "best": "last"}


class RunFileError(TdslError):
    """A run directory's files cannot be used as asked."""


def load_run_checkpoint(directory: Path, which: str, command: str) -> dict[str, Any]:
    """`directory`'s `which` checkpoint (last or best). When it cannot be read and the other
    one is intact, the error says so and how to use it: `command` says how, with `{which}`
    where the other checkpoint's name goes ("": the other is not offered)."""
    path = Path(directory) / "checkpoints" / f"{which}.pt"
    try:
        return read_checkpoint(path)
    except CheckpointError as exc:
        if not path.exists():
            raise RunFileError(f"no checkpoint at {path}") from None
        other = OTHER[which]
        hint = ""
        if command and is_intact(path.with_name(f"{other}.pt")):
            hint = f"; checkpoints/{other}.pt is intact: {command.format(which=other)}"
        raise RunFileError(f"{exc}{hint}") from None


def check_writable(directory: Path) -> None:
    """Raise unless new files can be created in `directory` and its checkpoints folder, as
    training will do at the end of each epoch (found now, not after an epoch's work)."""
    for folder in (Path(directory), Path(directory) / "checkpoints"):
        try:  # a name of its own: two processes checking at once do not collide
            descriptor, name = tempfile.mkstemp(prefix=".write-test.", dir=folder)
            os.close(descriptor)
            os.unlink(name)
        except OSError as exc:
            raise RunFileError(
                f"cannot continue the run: {folder} is not writable "
                f"({exc.strerror or exc}); make it writable, or copy the run elsewhere and "
                "resume the copy"
            ) from None
