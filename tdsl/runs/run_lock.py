"""Who owns a run directory: a new run claims an empty (or new) folder, `resume` claims the
run it continues, and while a process holds the claim no other tdsl process writes there.

The claim is an advisory lock (`flock`) on `.tdsl.lock`, which holds the owner's pid: the
kernel drops it when the owner exits, however it ends, so a killed run's lock is never
stale and `resume` takes it over safely. Two runs started into one `--out` at once: exactly
one gets the lock, the other is refused before writing anything.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from tdsl.errors import TdslError
from tdsl.wording import show

try:
    import fcntl
except ImportError:  # Windows: an exclusively created lock file instead (see _lock)
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".tdsl.lock"
# What a run writes into its directory; any one of them there means the folder holds a run.
RUN_ENTRIES = frozenset(
    {
        "spec.yaml",
        "summary.txt",
        "final.json",
        "history.csv",
        "history.jsonl",
        "checkpoints",
        "tensorboard",
        "transforms.json",
        "mlruns",
    }
)
# Written into a trial's folder by `tdsl sweep` and `tdsl search` before the run starts.
LOG_FILES = frozenset({"stdout.log", "stderr.log"})


class RunError(TdslError):
    """A run directory cannot be used as asked."""


class RunLock:
    """The claim on a run directory, held until `release` (or the process's exit)."""

    def __init__(self, directory: Path, descriptor: int):
        self.directory = directory
        self.descriptor: int | None = descriptor

    def release(self) -> None:
        if self.descriptor is None:
            return
        os.close(self.descriptor)  # drops the flock
        self.descriptor = None
        if fcntl is None:  # an exclusively created lock is the file itself
            (self.directory / LOCK_FILE).unlink(missing_ok=True)


def refuse_existing_run(directory: Path, locked: bool = False) -> None:
    """Raise unless `directory` can take a new run: it is missing or empty (bar the log
    files a sweep writes there first). Unless this process holds the lock (`locked`), a
    folder another tdsl process has claimed is left to the lock to decide: what it holds
    may be that process's files half written."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise RunError(f"{directory} is not a directory; choose another --out")
    names = {entry.name for entry in os.scandir(directory)}
    ran = sorted(names & RUN_ENTRIES)
    if ran:
        if (directory / "checkpoints" / "last.pt").exists():
            what = f"continue it with `tdsl resume {directory}` or choose another --out"
        elif (directory / "final.json").exists():
            what = "it has finished; choose another --out"
        else:
            what = "it has no checkpoint to resume from; choose another --out"
        raise RunError(f"{directory} already holds a run ({', '.join(ran)}); {what}")
    others = sorted(names - LOG_FILES - {LOCK_FILE})
    if others and LOCK_FILE in names and not locked:
        return  # another run may be writing its first files: the lock tells
    if others and LOCK_FILE in names:
        raise RunError(
            f"{directory} holds what a run left before it wrote its spec ({others[0]}, ...); "
            "choose another --out, or delete the folder to start over"
        )
    if others:
        listed = ", ".join(show(name) for name in others[:3]) + (", ..." if others[3:] else "")
        raise RunError(
            f"{directory} is not empty and holds no run ({listed}); a run writes only into "
            "a new or empty folder: choose another --out"
        )


def claim_new_run(directory: Path) -> RunLock:
    """Create `directory` if needed and claim it for a new run; raises RunError when it
    holds anything but a sweep's log files, or another process has claimed it."""
    refuse_existing_run(directory)  # before creating anything: say it without side effects
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot write the run directory {directory}: {exc.strerror}") from None
    lock = _lock(directory, "choose another --out")
    try:
        refuse_existing_run(directory, locked=True)  # again: no other run writes here now
    except RunError:
        lock.release()
        raise
    return lock


def claim_run(directory: Path) -> RunLock:
    """Claim an existing run (to resume it); raises RunError while another process writes
    there, or when a folder of the run is a symbolic link (writes would leave it)."""
    refuse_links(directory)
    return _lock(directory, "wait for it to end")


def refuse_links(directory: Path) -> None:
    """A run's files must be inside its directory: a `checkpoints/` or `tensorboard/` that
    links elsewhere would send every write there."""
    for name in sorted(RUN_ENTRIES | {LOCK_FILE}):
        path = directory / name
        if path.is_symlink():
            raise RunError(
                f"{path} is a symbolic link (to {show(os.readlink(path))}); a run writes only "
                "inside its own directory: replace the link with the folder it points to"
            )


def discard_unfinished(directory: Path) -> None:
    """Remove what a run that ended before its first checkpoint wrote (a sweep reruns that
    trial from the start); its log files stay."""
    lock = _lock(directory, "wait for it to end")
    try:
        for name in RUN_ENTRIES:
            path = directory / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    finally:
        lock.release()


def _lock(directory: Path, otherwise: str) -> RunLock:
    path = directory / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    if fcntl is None:
        flags |= os.O_EXCL
    try:
        descriptor = os.open(path, flags, 0o644)
    except FileExistsError:
        raise RunError(  # without flock a lock outlives a killed owner: say how to clear it
            f"{directory} is in use ({path} exists); {otherwise}, or delete {LOCK_FILE} if "
            "no tdsl process is using it"
        ) from None
    except OSError as exc:
        raise RunError(f"cannot write the run directory {directory}: {exc.strerror}") from None
    if fcntl is not None:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(descriptor, 200, 0).decode(errors="replace").strip()
            os.close(descriptor)
            who = f" ({owner})" if owner else ""
            raise RunError(
                f"{directory} is in use by another tdsl process{who}; {otherwise}"
            ) from None
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    except OSError as exc:  # a full disk or a read-only lock file: nothing can be written
        os.close(descriptor)
        raise RunError(f"cannot write the run directory {directory}: {exc.strerror}") from None
    return RunLock(directory, descriptor)
