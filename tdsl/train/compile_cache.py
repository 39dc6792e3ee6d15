"""A run's compiled step kept in its directory (`compile_cache.bin`), so `tdsl resume` and
`tdsl eval` in a new process do not compile it again.

The file is a zip of torch's portable compile cache (`torch.compiler.save_cache_artifacts`:
inductor's and AOTAutograd's cache entries) and, on the CPU, the compiled C++ kernel
libraries those entries load, which torch's cache leaves in its own folder (under /tmp by
default; without them a resume compiles every kernel again). Loading puts both back where
torch looks for them before the step compiles. Torch keys every entry by the graph it
compiles, so an entry never stands in for a different one; a file from another torch,
Python or machine, for another spec, or damaged is skipped with one warning line and the
step compiles as usual. The cache holds compiled code, which runs when loaded: the file is
sealed with this user's key (`tdsl.train.sealed_files`), so a run directory from another
user or machine compiles afresh instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import platform
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from tdsl import spec as S
from tdsl.spec.load_dump import to_data
from tdsl.train.atomic_files import FileWriteError, atomic_file, atomic_write_bytes
from tdsl.train.sealed_files import SealError, key_path, seal, unseal

CACHE_FILE = "compile_cache.bin"
_FORMAT = 1
_HEADER, _ARTIFACTS, _KERNELS = "header.json", "artifacts.bin", "kernels/"
# A kernel's place in torch's cache folder: a short hash prefix folder and a hashed name.
_KERNEL_NAME = re.compile(r"[A-Za-z0-9_]{1,16}/[A-Za-z0-9_.]{1,200}\.so")
# Spec fields that do not change what is compiled (a resume may not change them anyway).
_NOT_COMPILED = ("epochs", "on_nan", "early_stopping", "checkpoint", "tensorboard", "track")


def spec_key(spec: S.Spec) -> str:
    """What a cache file is for: the spec sections that shape the compiled graphs (model,
    loss, optimizer, device and the training step's settings), as a SHA-256."""
    data = to_data(spec, defaults=True)
    model = dict(data.get("model") or {})
    model.pop("init", None)  # a resumed or evaluated run has its own weights
    train = {k: v for k, v in (data.get("train") or {}).items() if k not in _NOT_COMPILED}
    sections = {
        "model": model,
        "loss": data.get("loss"),
        "optimizer": data.get("optimizer"),
        "train": train,
        "device": data.get("device"),
    }
    text = json.dumps(sections, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _identity() -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "torch": torch.__version__,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "machine": platform.machine(),
    }


def _library_path(load: Any) -> Any:
    """The library file behind a loader `CppCodeCache.load_async` returned (its
    `binary_path`), or None."""
    code, cells = getattr(load, "__code__", None), getattr(load, "__closure__", None)
    if code is None or not cells or "binary_path" not in code.co_freevars:
        return None
    try:
        return cells[code.co_freevars.index("binary_path")].cell_contents
    except ValueError:  # an empty cell
        return None


class _KernelRecorder:
    """The compiled kernel libraries this process asked torch's C++ builder for (built,
    found in its cache folder, or already loaded in this process by an earlier compile):
    the ones a cache file must carry. Recording wraps the builder's target path and the
    kernel loader once per process; a torch without them records nothing and the cache
    file holds torch's portable entries only."""

    def __init__(self) -> None:
        self.paths: set[str] = set()
        self.installed = False

    def install(self) -> None:
        if self.installed:
            return
        self.installed = True
        try:
            from torch._inductor.cpp_builder import CppBuilder
        except ImportError:
            return
        original = getattr(CppBuilder, "get_target_file_path", None)
        if original is None:
            return
        paths = self.paths

        def recorded(builder: Any) -> str:
            path = original(builder)
            if isinstance(path, str) and path.endswith(".so"):
                paths.add(path)
            return path

        CppBuilder.get_target_file_path = recorded
        self._record_loads()

    def _record_loads(self) -> None:
        # A kernel this process loaded before (an earlier program, a trial of a search)
        # is handed out from memory without asking the builder: the loader knows its file.
        try:
            from torch._inductor.codecache import CppCodeCache
        except ImportError:
            return
        original = getattr(CppCodeCache.load_async, "__func__", None)
        if original is None:
            return
        paths = self.paths

        def recorded_load(cls: Any, *args: Any, **kwargs: Any) -> Any:
            load = original(cls, *args, **kwargs)
            path = _library_path(load)
            if isinstance(path, str) and path.endswith(".so"):
                paths.add(path)
            return load

        CppCodeCache.load_async = classmethod(recorded_load)

    def kernels(self, root: str) -> dict[str, str]:
        """Relative name -> path of each recorded library under torch's cache folder."""
        found = {}
        for path in sorted(self.paths):
            name = os.path.relpath(path, root).replace(os.sep, "/")
            if _KERNEL_NAME.fullmatch(name) and os.path.isfile(path):
                found[name] = path
        return found


RECORDER = _KernelRecorder()


def _forget_earlier() -> None:
    """Start this compile's record afresh: torch's record and the kernel list otherwise
    hold everything the process compiled, and a search's trials (one process) would each
    save all the trials before it. (A kernel a trial finds loaded already is recorded when
    the loader hands it out.)"""
    RECORDER.paths.clear()
    try:
        from torch.compiler._cache import CacheArtifactManager

        CacheArtifactManager.clear()
    except (ImportError, AttributeError):
        pass


def _cache_dir() -> str | None:
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir
    except ImportError:
        return None
    return cache_dir()


def save(path: Path, key: str) -> bool:
    """Write what this process compiled into `path` (atomically); False when torch has
    nothing to save. Never raises for torch's sake: a cache is an optimization."""
    try:
        saved = torch.compiler.save_cache_artifacts()
        root = _cache_dir()
        kernels = RECORDER.kernels(root) if root is not None else {}
        if saved is None and not kernels:
            return False
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(_HEADER, json.dumps({**_identity(), "key": key}))
            archive.writestr(_ARTIFACTS, saved[0] if saved is not None else b"")
            for name, kernel in kernels.items():
                archive.write(kernel, _KERNELS + name)
    except Exception as exc:  # torch's internals: any failure just means no cache
        _warn(path, f"not written ({type(exc).__name__}: {exc})")
        return False
    sealed = seal(buffer.getvalue())
    if sealed is None:  # no key to seal it with: a file nothing could load
        _warn(path, f"not written (no key: {key_path()} cannot be read or made)")
        return False
    try:
        atomic_write_bytes(path, sealed)
    except FileWriteError as exc:  # a full disk stops no training for a cache's sake
        _warn(path, f"not written ({exc})")
        return False
    return True


def load(path: Path, key: str) -> bool:
    """Put the cache in `path` where torch looks before compiling; True when it did. A
    missing file is silently False; an unusable one (other torch, Python, machine or spec,
    another user's, damaged, truncated) is False with one warning line on stderr."""
    if not path.is_file():
        return False
    RECORDER.install()
    try:
        contents = unseal(path.read_bytes())
    except (OSError, SealError) as exc:
        _warn(path, f"not used: {exc.strerror if isinstance(exc, OSError) else exc}")
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(contents)) as archive:
            problem = _mismatch(archive, key)
            if problem is not None:
                _warn(path, problem)
                return False
            artifacts = archive.read(_ARTIFACTS)
            kernels = {
                info.filename[len(_KERNELS) :]: archive.read(info)
                for info in archive.infolist()
                if info.filename.startswith(_KERNELS)
            }
    except Exception as exc:  # zipfile's and json's many ways to refuse: compile as usual
        _warn(path, f"unreadable ({type(exc).__name__}: {exc})")
        return False
    if any(not _KERNEL_NAME.fullmatch(name) for name in kernels):
        _warn(path, "unreadable (a kernel named outside torch's cache folder)")
        return False
    try:
        with _quiet("torch.compiler._cache"):  # its own warning is a traceback
            read = torch.compiler.load_cache_artifacts(artifacts) if artifacts else True
        if read is None:
            _warn(path, "torch could not read its compile cache entries")
            return False
        root = _cache_dir()
        if root is not None:
            for name, data in kernels.items():
                _restore(Path(root) / name, data)
    except Exception as exc:  # torch's internals, or a full disk: compile as usual
        _warn(path, f"not loaded ({type(exc).__name__}: {exc})")
        return False
    return True


def _mismatch(archive: zipfile.ZipFile, key: str) -> str | None:
    header = json.loads(archive.read(_HEADER))
    if not isinstance(header, dict):
        raise ValueError("the header is not an object")
    here = _identity()
    for field in ("format", "torch", "python", "machine"):
        if header.get(field) != here[field]:
            return f"written for {field} {header.get(field)}, this is {here[field]}"
    if header.get("key") != key:
        return "written for a different spec"
    return None


def _restore(target: Path, data: bytes) -> None:
    """A kernel library into torch's cache folder, unless one is there (torch's names are
    hashes of the source and compiler flags: an existing file is the same kernel)."""
    if target.exists():
        return
    with atomic_file(target, mode=0o755) as temporary:  # a library the loader maps
        temporary.write_bytes(data)


@contextlib.contextmanager
def _quiet(name: str):
    logger = logging.getLogger(name)
    before, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = before


def _warn(path: Path, problem: str) -> None:
    print(f"warning: {path}: compile cache {problem}; compiling as usual", file=sys.stderr)


class CompileCacheKeeper:
    """The `fit` callback that loads `directory`'s cache before the step compiles and
    saves it after; it adds `compile_cached` (whether the compile started from the run's
    cache) beside the first epoch's `compile_seconds`. Added before the history writer."""

    wants_batches = False

    def __init__(self, directory: Path, spec: S.Spec):
        self.path = directory / CACHE_FILE
        self.key = spec_key(spec)
        self.loaded = False

    def on_fit_start(self, run: Any, state: Any) -> None:
        self.loaded = False
        if run.program.compile_pending:
            _forget_earlier()
            RECORDER.install()
            self.loaded = load(self.path, self.key)

    def on_epoch_end(self, run: Any, state: Any, logs: dict[str, Any]) -> None:
        if "compile_seconds" not in logs:
            return
        logs["compile_cached"] = self.loaded
        if logs["compile_seconds"] > 0:  # also after a load: what still compiled is added
            save(self.path, self.key)
