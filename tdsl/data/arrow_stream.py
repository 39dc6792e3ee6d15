"""Streaming a CSV file's rows through Arrow into numpy, in parallel parts.

Arrow's streaming reader parses on the thread that asks for the next batch, so a single
reader uses one core however many it is allowed. A large file is therefore cut at line
breaks outside quotes (csv_cuts) into a part per core, each streamed by its own reader on
its own thread (Arrow lets go of the GIL while it parses); the parts are joined in
file order. Each batch's number columns are copied into numpy arrays sized for the most
rows the part can hold (untouched pages cost nothing) and the batch let go of, so memory is
the numbers themselves, and a column let go of later goes back to the system at once.
A file that gets shorter than where its parts were planned is refused (`Shrunk`): a part
would end early, or at a cell, without an error of its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import math
import os
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from tdsl.data.csv_cuts import Background, plan, quote_soon

NUMBERS = (pa.int64(), pa.float64())
PIECE_BYTES = 16 << 20  # text a column holds in Arrow's allocator before it is compacted
PART_BYTES = 64 << 20  # the least a part holds: smaller files are read by one reader


class Pieces:
    """A text column's batches, compacted (`compact`) every `PIECE_BYTES` as they come,
    so the batches are not held twice at the end and Arrow's allocator reuses their memory
    for the next ones."""

    def __init__(self, kind: pa.DataType):
        self.kind, self.pieces, self.pending, self.size = kind, [], [], 0

    def add(self, chunk: pa.Array) -> None:
        self.pending.append(chunk)
        self.size += chunk.nbytes
        if self.size >= PIECE_BYTES:
            self.pieces.extend(compact(self.pending, self.kind).chunks)
            self.pending, self.size = [], 0

    def done(self) -> list[pa.Array]:
        if self.pending:
            self.pieces.extend(compact(self.pending, self.kind).chunks)
            self.pending = []
        return self.pieces


def compact(chunks: list, kind: pa.DataType) -> pa.ChunkedArray:
    """The chunks as one array outside Arrow's own allocator: left among the batches' freed
    buffers, they would keep the allocator's segments (and so all of that memory) resident."""
    if not chunks:
        return pa.chunked_array([], kind)
    return pa.chunked_array([pa.concat_arrays(chunks, memory_pool=pa.system_memory_pool())])


class Shrunk(OSError):
    """The file ends before where its parts were planned to: it changed while it was read,
    and the rows read are not the file's."""

    def __init__(self) -> None:
        super().__init__("it got shorter while it was read")


class _Range(io.RawIOBase):
    """The bytes [start, end) of a file, as a stream Arrow reads; with `scan`, the end is
    the first cut the scan finds, waited for only when a read would pass `scan.bound`."""

    def __init__(self, path: Path, start: int, end: int, scan: Background | None = None):
        self.handle = path.open("rb", buffering=0)
        self.handle.seek(start)
        self.at, self.left, self.scan = start, end - start, scan

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.scan is not None and self.at + len(buffer) > self.scan.bound:
            self.left = self.scan.first_end() - self.at
            self.scan = None
        size = min(len(buffer), self.left)
        if size <= 0:
            return 0
        got = self.handle.readinto(memoryview(buffer)[:size]) or 0
        if got == 0:
            raise Shrunk()
        self.at += got
        self.left -= got
        return got

    def close(self) -> None:
        self.handle.close()
        super().close()


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def cuts(path: Path, start: int, delimiter: str = ",") -> tuple[bool, list[int]]:
    """(whether the body holds a quote, where the parts start and the file ends): a part per
    core for a file that large, each starting just after a line break outside quotes."""
    count = min(cores(), (path.stat().st_size - start) // PART_BYTES)
    return plan(path, start, delimiter, count)


def prepare(raw: Any) -> None:
    """`raw.quoted` and `raw.cuts`; or, for a large file with a quote in its first MB, the
    quote scan (`raw.scan`) that `stream` runs while it reads the first part: the scan holds
    the GIL most of its time, and the parsing of that part lets go of it."""
    count = min(cores(), (raw.path.stat().st_size - raw.start) // PART_BYTES)
    raw.scan = None
    if count > 1 and quote_soon(raw.path, raw.start):
        raw.quoted, raw.cuts = True, []
        raw.scan = Background(raw.path, raw.start, raw.delimiter, count)
    else:
        raw.quoted, raw.cuts = plan(raw.path, raw.start, raw.delimiter, count)


class Part:
    """One part's rows: its number columns as float64 arrays, its text columns as pieces."""

    def __init__(
        self, raw: Any, start: int, end: int, whole: bool, room: int, scan: Background | None
    ):
        self.raw, self.start, self.end, self.whole, self.scan = raw, start, end, whole, scan
        self.room = room  # bytes the number arrays have room for: the later parts' too
        self.rows = 0
        self.numbers: dict[int, np.ndarray] = {}
        self.texts: dict[int, Pieces] = {}
        self.unclean: set[int] = set()
        self.error: BaseException | None = None

    def open(self, read, parse, convert):
        if self.whole:  # the file from `start` on: Arrow's own reads
            source = pa.OSFile(str(self.raw.path))
            source.seek(self.start)
        else:
            source = _Range(self.raw.path, self.start, self.end, self.scan)
            source = pa.PythonFile(source, mode="r")
        return pacsv.open_csv(source, read, parse, convert)

    def run(self, reader) -> None:
        bound = self.room // max(self.raw.width, 2) + 1  # a row takes a byte per cell
        names = reader.schema.names
        for i, name in enumerate(names):
            if reader.schema.field(i).type in NUMBERS:  # int64 too: floats() gives float64
                self.numbers[int(name)] = np.empty(bound, dtype=np.float64)
            else:
                self.texts[int(name)] = Pieces(reader.schema.field(i).type)
        for batch in reader:
            count, rows = batch.num_rows, self.rows
            for i, name in enumerate(names):
                column, at = batch.column(i), int(name)
                if at in self.numbers:
                    values = self.numbers[at][rows : rows + count]
                    values[...] = column.to_numpy(zero_copy_only=False)
                    # Nulls are NaN; any other NaN or infinity was written out as such. A
                    # finite sum (one pass, no temporary) says there is none of either.
                    with np.errstate(over="ignore", invalid="ignore"):  # then checked
                        total = values.sum()
                    if (column.null_count or not math.isfinite(total)) and int(
                        count - np.isfinite(values).sum()
                    ) != column.null_count:
                        self.unclean.add(at)
                else:
                    self.texts[at].add(column)
            self.rows += count
            del batch

    def run_after(self, read, parse, convert) -> None:
        """Open and read, keeping an error for the caller (this runs on a thread)."""
        try:
            self.run(self.open(read, parse, convert))  # blank lines only: no rows
        except BaseException as exc:  # noqa: BLE001 (raised again on the caller's thread)
            self.error = exc
        # Arrow's allocator (mimalloc) gives back only the calling thread's free memory:
        # this thread's, before it ends and leaves it held.
        pa.default_memory_pool().release_unused()


def stream(raw: Any, read, parse, convert) -> tuple[int, dict[int, Any], set[int]]:
    """(rows, columns, number columns with 'nan' or 'inf' written out) of `raw`'s file."""
    scan, raw.scan = raw.scan, None
    end = raw.cuts[-1] if scan is None else scan.end
    try:
        found = _stream(raw, scan, read, parse, convert)
    except BaseException:
        _same_length(raw.path, end)  # a shorter file: the cause of whatever failed
        raise
    _same_length(raw.path, end)
    return _join(found)


def _same_length(path: Path, end: int) -> None:
    """Refuse the rows of a file that got shorter than when its parts were planned (a
    part's read might have ended at the new end without noticing)."""
    try:
        size = path.stat().st_size
    except OSError:
        return  # gone once read: what was read is the file's (a part that was not, failed)
    if size < end:
        raise Shrunk()


def _stream(raw: Any, scan: Background | None, read, parse, convert) -> list[Part]:
    """The parts, read; their errors raised once all have ended."""
    if scan is None:
        where = raw.cuts
        first = Part(raw, where[0], where[1], len(where) == 2, where[-1] - where[0], None)
    else:  # the scan says where the first part ends while it is read
        first = Part(raw, raw.start, scan.end, False, scan.end - raw.start, scan)
    parts, threads = [first], []

    def start_others(where: list[int]) -> None:
        for a, b in zip(where[1:], where[2:], strict=False):
            parts.append(Part(raw, a, b, False, b - a, None))
            run = parts[-1].run_after
            threads.append(threading.Thread(target=run, args=(read, parse, fixed), daemon=True))
            threads[-1].start()

    if scan is not None:
        scan.start()  # the first block may wait for it
    try:
        # Every part, the first too, takes the types the first block gives, as one reader
        # would (a cell they cannot hold fails as it would have there): Arrow converts given
        # types a third faster than types it infers. A first part of blank lines only gives
        # null types: a later cell then fails and the caller reads again with number or
        # text types, as for one reader.
        once = pickle.loads(pickle.dumps(read))
        once.use_threads = False  # the first block only, without reading ahead
        fixed = pickle.loads(pickle.dumps(convert))
        fixed.column_types = {f.name: f.type for f in first.open(once, parse, convert).schema}
        reader = first.open(read, parse, fixed)
        if scan is None:
            start_others(where)
        else:
            scan.then = start_others
            scan.go.set()
        first.run(reader)
    finally:
        if scan is not None:
            scan.go.set()  # the first part failed to open: the scan starts nothing
            scan.join()  # then every other part has started
            raw.cuts = scan.cuts
        for thread in threads:
            thread.join()
    for part in parts[1:]:
        if part.error is not None:
            raise part.error
    return parts


def _join(parts: list[Part]) -> tuple[int, dict[int, Any], set[int]]:
    """The parts' columns end to end: each later part's numbers copied after the first's
    (into room the first's arrays have, untouched until now) and let go of at once."""
    first = parts[0]
    rows = sum(part.rows for part in parts)
    arrays: dict[int, Any] = {}
    for at in list(first.numbers):
        column, done = first.numbers.pop(at), first.rows
        for part in parts[1:]:
            if part.rows:
                column[done : done + part.rows] = part.numbers.pop(at)[: part.rows]
            done += part.rows
        arrays[at] = column[:rows]
    for at, texts in first.texts.items():
        chunks = [c for part in parts if part.rows or part is first for c in part.texts[at].done()]
        arrays[at] = pa.chunked_array(chunks, texts.kind)
    unclean = set().union(*(part.unclean for part in parts))
    pa.default_memory_pool().release_unused()  # what parsing used and let go of
    if len(parts) > 1:
        _trim()
    return rows, arrays, unclean


def _trim() -> None:
    """Give back what the reader threads' malloc arenas hold free (glibc keeps a thread's
    freed memory for reuse, and these threads are gone); nothing elsewhere."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
