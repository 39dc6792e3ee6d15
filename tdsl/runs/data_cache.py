"""A run directory's token cache (`data_cache/`): the ids a text source made, kept so that
`resume`, `eval` and loading the run's data again need not tokenize the text again.

See `tdsl.data.token_cache` for what an entry holds and when it is used; here the run
directory is named and the writes go through `atomic_write_bytes` (temporary file, fsync,
rename), so a reader never sees half an entry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tdsl.data import token_cache
from tdsl.train.atomic_files import atomic_write_bytes


@contextmanager
def run_data_cache(
    directory: str | os.PathLike, write: bool = True, keep_new: bool = True
) -> Iterator[None]:
    """Text sources loaded inside use (and, with `write`, fill) `directory`'s token cache;
    a read-only use keeps what it made until a writing use of the same directory.
    `keep_new=False`: only read (other data scored with the run: not the run's ids)."""
    cache = token_cache.TokenCache(
        Path(directory).absolute() / token_cache.FOLDER,
        atomic_write_bytes if write else None,
        keep_new,
    )
    with token_cache.using(cache):
        yield
        token_cache.flush()


def keep_token_ids(directory: str | os.PathLike) -> None:
    """Write the ids that a read-only use of `directory`'s cache made: a new run tokenizes
    while it validates, before its directory is claimed (and may be written)."""
    with run_data_cache(directory):
        pass
