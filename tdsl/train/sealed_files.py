"""Files only this user on this machine wrote: contents behind an HMAC-SHA256 under a
secret key kept in the user's cache folder ($XDG_CACHE_HOME or ~/.cache, tdsl/, mode 0600).

A run's compile cache holds compiled code, which runs when it is loaded; checkpoints hold
only tensors (read with `weights_only=True`). Sealing keeps that so for run directories
from elsewhere: their compile cache does not unseal here, and the step compiles as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

_MAGIC = b"TDSLSEAL"
_KEY_BYTES = 32
_TAG_BYTES = hashlib.sha256().digest_size


class SealError(Exception):
    """Contents that cannot be trusted here: damaged, or sealed by another user or machine."""


def key_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tdsl" / "seal.key"


def _key() -> bytes | None:
    """This user's key, made on first use; None where it can be neither read nor made."""
    path = key_path()
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:  # made whole beside it, then linked in: a reader never sees half a key
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".seal.", dir=path.parent)
    except OSError:
        return None
    try:
        with os.fdopen(descriptor, "wb") as handle:  # mkstemp's mode: 0600
            handle.write(secrets.token_bytes(_KEY_BYTES))
        with contextlib.suppress(FileExistsError):  # another process made one first
            os.link(temporary, path)
        return _read_key(path)
    except OSError:
        return None
    finally:
        Path(temporary).unlink(missing_ok=True)


def _read_key(path: Path) -> bytes | None:
    key = path.read_bytes()
    return key if len(key) == _KEY_BYTES else None


def seal(data: bytes) -> bytes | None:
    """`data` sealed, or None where this user has no key (an unwritable home)."""
    key = _key()
    if key is None:
        return None
    return _MAGIC + hmac.new(key, data, hashlib.sha256).digest() + data


def unseal(sealed: bytes) -> bytes:
    """The data `seal` sealed here; raises `SealError` saying why not."""
    key = _key()
    if key is None:
        raise SealError(f"no key to check it with ({key_path()} cannot be read or made)")
    head = len(_MAGIC) + _TAG_BYTES
    if len(sealed) < head or not sealed.startswith(_MAGIC):
        raise SealError("not a sealed file")
    data = sealed[head:]
    if not hmac.compare_digest(
        sealed[len(_MAGIC) : head], hmac.new(key, data, hashlib.sha256).digest()
    ):
        raise SealError("damaged, or written by another user or machine")
    return data
