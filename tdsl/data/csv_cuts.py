"""Where a CSV body can be cut into parts that separate Arrow readers read as one would.

A quoted cell may hold a line break, so a line break is a safe cut only outside quotes.
Arrow's parser (quote `"`, doubled quotes, no escape character) opens a quoted field only at
a field's start, reads `""` inside one as a quote, and ends it at any other quote. Let k be
the number of quotes before a given quote. If every quote with an even k follows a delimiter,
a line break, a quote or the body's start, and every quote with an odd k comes before one of
those or the end, then "an odd number of quotes before this byte" is exactly "inside a quoted
field" as Arrow reads it, by induction over the quotes:
- even k, outside: a quote after a delimiter or line break starts a field, so it opens one;
  after a quote (the one before has odd k: inside), Arrow took the two as a doubled quote.
- odd k, inside: a quote before a quote is the first of a doubled pair (the pair keeps the
  parity, and Arrow stays inside); before a delimiter, line break or the end it closes the
  field, which then ends there.
So a line break with an even number of quotes before it is a row's end. A file where the
check fails (`ab"c`, `"ab"x`), or whose quotes are odd in number, is read by one reader.

The body is scanned once, a range per part on its own thread (reads and numpy's comparisons
let go of the GIL): each range's quote count, whether the check holds in it for either parity
at its start, and its first line break after an even and after an odd number of its quotes.
The counts' running sums then say which parity each range starts with.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

SCAN_BYTES = 1 << 19  # bytes a thread reads and checks at a time: small, so that the
# temporaries stay in the cache and malloc keeps none of them afterwards
QUOTE, LF, CR = 34, 10, 13
# While the scan runs beside the first part, only that part is read: it is made longer by
# about what the scan costs (some 0.8 CPU-seconds per GB against some 11 for parsing), so
# that the parts end together.
FIRST_MORE = 0.04


class _Range:
    """One range's scan: `bytes [lo, hi)` of the file."""

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi
        self.count = 0  # quotes in the range
        self.ok = [True, True]  # the check holds, if the range starts after even / odd quotes
        self.error: BaseException | None = None  # a failed read: raised again by `plan`

    def scan(self, fd: int, start: int, separators: np.ndarray, stop: threading.Event) -> None:
        try:
            self._scan(fd, start, separators, stop)
        except BaseException as exc:  # noqa: BLE001 (this may run on a thread of its own)
            self.error = exc
            stop.set()  # its count is not known: no cut is, the others may stop

    def _scan(self, fd: int, start: int, separators: np.ndarray, stop: threading.Event) -> None:
        buffer = bytearray(SCAN_BYTES + 2)
        whole = memoryview(buffer)
        at = self.lo
        while at < self.hi and (self.ok[0] or self.ok[1]) and not stop.is_set():
            size = min(SCAN_BYTES, self.hi - at)
            # buffer[0] and buffer[size + 1] are the block's neighbours, so every quote has
            # both; the body's start and the file's end act as a line break.
            if at > start:
                got = os.preadv(fd, [whole[: size + 2]], at - 1)
            else:
                buffer[0] = LF
                got = 1 + os.preadv(fd, [whole[1 : size + 2]], at)
            if got < size + 2:  # the file's end
                size = min(size, got - 1)
                buffer[size + 1] = LF
            if size <= 0:  # the file got shorter while read: no cut is sure
                self.ok = [False, False]
                break
            self._block(buffer, size, separators)
            at += size
        if not (self.ok[0] or self.ok[1]):
            stop.set()  # the check failed whatever came before: the other ranges may stop

    def _block(self, buffer: bytearray, size: int, separators: np.ndarray) -> None:
        """Bytes buffer[1 : size + 1], with buffer[0] and buffer[size + 1] their neighbours."""
        view = np.frombuffer(buffer, np.uint8, size + 2)
        inner = view[1 : size + 1]
        quotes = np.empty(0, np.intp)
        if buffer.find(b'"', 1, size + 1) >= 0:  # memchr: a file without quotes costs little
            quotes = np.flatnonzero(inner == QUOTE) + 1
        if len(quotes):
            # take: half the time of fancy indexing
            before = separators.take(view.take(quotes - 1))
            after = separators.take(view.take(quotes + 1))
            even = self.count & 1  # where the quotes with an even local count start
            self.ok[0] = self.ok[0] and before[even::2].all() and after[1 - even :: 2].all()
            self.ok[1] = self.ok[1] and before[1 - even :: 2].all() and after[even::2].all()
        self.count += len(quotes)


def has_quotes(path: Path, start: int) -> bool:
    """Whether the body holds a quote at all."""
    with path.open("rb") as handle:
        handle.seek(start)
        while block := handle.read(16 << 20):
            if b'"' in block:
                return True
    return False


def quote_soon(path: Path, start: int) -> bool:
    """Whether the body's first MB holds a quote: then the file is read as quoted whatever
    the scan finds, and its first part can be read while the scan runs."""
    with path.open("rb") as handle:
        handle.seek(start)
        return b'"' in handle.read(1 << 20)


class Background(threading.Thread):
    """`plan` on a thread of its own while the first part is read; `then` (set, and `go`
    set, once the parts' types are known) gets the cuts there, to start the other parts."""

    def __init__(self, path: Path, start: int, delimiter: str, parts: int):
        super().__init__(daemon=True)
        self.args = (path, start, delimiter, parts, FIRST_MORE)
        self.end = path.stat().st_size
        self.bound = bounds(start, self.end, parts, FIRST_MORE)[1]  # the first cut, or later
        self.then = lambda cuts: None
        self.go = threading.Event()  # `then` is set: it may be called
        self.cuts: list[int] = [start, self.end]
        self.error: BaseException | None = None
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            self.cuts = plan(*self.args)[1]
        except BaseException as exc:  # noqa: BLE001 (raised again by first_end)
            self.error = exc
        finally:
            self.ready.set()
        self.go.wait()
        if self.error is None:
            self.then(self.cuts)

    def first_end(self) -> int:
        """Where the first part ends, once the scan has said."""
        self.ready.wait()
        if self.error is not None:
            raise self.error
        return self.cuts[1]


def bounds(start: int, end: int, parts: int, first_more: float = 0.0) -> list[int]:
    """Where `parts` ranges of [start, end) start (and `end`): as long, but the first longer
    by `first_more` of the whole."""
    first = min(end - start, int((end - start) * (1 / parts + first_more)))
    rest = end - start - first
    return [start, *(start + first + rest * i // (parts - 1) for i in range(parts))]


def plan(
    path: Path, start: int, delimiter: str, parts: int, first_more: float = 0.0
) -> tuple[bool, list[int]]:
    """(whether the body holds a quote, where `parts` parts start and the file ends): each
    cut just after a line break outside quotes; no cut where the quote check fails."""
    end = path.stat().st_size
    if parts <= 1 or len(delimiter.encode()) != 1:
        return has_quotes(path, start), [start, end]
    separators = np.zeros(256, dtype=bool)
    separators[[delimiter.encode()[0], LF, CR, QUOTE]] = True
    where = bounds(start, end, parts, first_more)
    ranges = [_Range(lo, hi) for lo, hi in zip(where, where[1:], strict=False)]
    stop = threading.Event()
    fd = os.open(path, os.O_RDONLY)
    try:
        threads = [
            threading.Thread(target=one.scan, args=(fd, start, separators, stop))
            for one in ranges[1:]
        ]
        for thread in threads:
            thread.start()
        try:
            ranges[0].scan(fd, start, separators, stop)
        finally:
            for thread in threads:
                thread.join()
    finally:
        os.close(fd)
    for one in ranges:
        if one.error is not None:
            raise one.error
    if stop.is_set():  # a range failed the check
        return True, [start, end]
    cuts, before = [start], 0
    for one in ranges:
        if not one.ok[before & 1]:
            return True, [start, end]
        if one is not ranges[0]:
            at = _cut_after(path, one.lo, before & 1, end)
            if cuts[-1] < at < end:
                cuts.append(at)
        before += one.count
    if before & 1:  # the file ends inside a quoted cell: Arrow's own error or reading of it
        return True, [start, end]
    return before > 0, [*cuts, end]


def _cut_after(path: Path, at: int, parity: int, end: int) -> int:
    """Just past the first line break at or after `at` with an even number of quotes before
    it (`parity`: the quotes' before `at`), or the file's end."""
    size = 1 << 16  # a line or a few: then more while a cell goes on
    with path.open("rb") as handle:
        while at < end:
            handle.seek(at)
            view = np.frombuffer(handle.read(size + 1), np.uint8)  # and the next byte
            inner = view[: min(size, end - at)]
            quotes = np.flatnonzero(inner == QUOTE)
            breaks = np.flatnonzero((inner == LF) | (inner == CR))
            following = np.append(view, LF)[breaks + 1]  # the file's end: as a line break
            # A `\r` right before a `\n` is not a line's end: the `\n` is.
            breaks = breaks[(inner[breaks] != CR) | (following != LF)]
            even = ((parity + np.searchsorted(quotes, breaks)) & 1) == 0
            if even.any():
                return at + int(breaks[even][0]) + 1
            parity, at, size = (parity + len(quotes)) & 1, at + len(inner), min(size * 4, 16 << 20)
    return end
