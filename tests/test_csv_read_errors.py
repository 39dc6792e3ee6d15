"""A CSV file read in parallel parts that changes or fails under the reader: the file cut
shorter between the scan and the parts' reads, gone, or an OSError from a read. Each is a
located tdsl error naming the file, never a traceback (a reader or scan thread's included),
a raw Arrow message or rows read from a file that was no longer the one scanned; and the
threads are joined (the read ends)."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from tdsl.data import arrow_stream, arrow_text, csv_cuts, csvfile
from tdsl.data.base import DataError


def _write(path, quotes: bool) -> None:
    """300 rows; with `quotes`, quoted cells from the first line on (some with line breaks),
    so the scan runs beside the first part."""
    lines = ["x,s,label"]
    for i in range(300):
        text = f'"line {i}\nwith ""quotes"", and a comma"' if i % 7 == 0 else f'"t{i % 4}"'
        lines.append(f"{i * 0.5},{text if quotes else f't{i % 4}'},{i % 3}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def parts(monkeypatch):
    """Files read in three parts; thread exceptions recorded (they would print a traceback)."""
    monkeypatch.setattr(arrow_stream, "PART_BYTES", 1)
    monkeypatch.setattr(arrow_stream, "cores", lambda: 3)
    monkeypatch.setattr(arrow_text, "BLOCK_SIZE", 512)
    monkeypatch.setattr(csv_cuts, "SCAN_BYTES", 1000)
    unhandled = []
    monkeypatch.setattr(threading, "excepthook", unhandled.append)
    return unhandled


def _outcome(path) -> list[str] | int:
    """The problems' messages reading `path` (or its rows), on a thread that must end."""
    threads, found = threading.active_count(), []

    def read():
        try:
            found.append(len(csvfile.read_csv(path, ",", (), text={"s"}, numbers={"x"})))
        except DataError as exc:
            found.append([p.message for p in exc.problems])
        except BaseException as exc:  # noqa: BLE001 (the test's failure, on this thread)
            found.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(30)
    assert not reader.is_alive(), "the read hangs"
    assert threading.active_count() == threads  # every reader and scan thread joined
    (result,) = found
    assert not isinstance(result, BaseException), result
    return result


def _after_plan(monkeypatch, change) -> None:
    """`change()` once the scan has planned the parts, before they are read."""
    plan = csv_cuts.plan

    def planned(*args, **kwargs):
        found = plan(*args, **kwargs)
        change()
        return found

    monkeypatch.setattr(csv_cuts, "plan", planned)  # the scan beside the first part
    monkeypatch.setattr(arrow_stream, "plan", planned)  # the scan before the parts


@pytest.mark.parametrize("quotes", [True, False])
@pytest.mark.parametrize("kept", [0.1, 0.5, 0.8, 0.95])
def test_a_file_cut_shorter_after_the_scan_is_an_error(tmp_path, monkeypatch, parts, quotes, kept):
    path = tmp_path / "d.csv"
    _write(path, quotes)
    assert _outcome(path) == 300
    size = path.stat().st_size
    _after_plan(monkeypatch, lambda: os.truncate(path, int(size * kept)))
    assert _outcome(path) == [f"cannot read {path}: it got shorter while it was read"]
    assert parts == []


@pytest.mark.parametrize("quotes", [True, False])
def test_a_file_gone_after_the_scan_is_an_error(tmp_path, monkeypatch, parts, quotes):
    path = tmp_path / "d.csv"
    _write(path, quotes)
    _after_plan(monkeypatch, path.unlink)
    assert _outcome(path) == [f"cannot read {path}: No such file or directory"]
    assert parts == []


@pytest.mark.parametrize("quotes", [True, False])
@pytest.mark.parametrize("part", [0, 1, 2])
def test_an_oserror_reading_a_part_is_an_error(tmp_path, monkeypatch, parts, quotes, part):
    path = tmp_path / "d.csv"
    _write(path, quotes)
    seen, readinto = [], arrow_stream._Range.readinto

    def failing(self, buffer):
        if self not in seen:
            seen.append(self)
        if seen.index(self) == part:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return readinto(self, buffer)

    monkeypatch.setattr(arrow_stream._Range, "readinto", failing)
    assert _outcome(path) == [f"cannot read {path}: {os.strerror(errno.EIO)}"]
    assert parts == []


@pytest.mark.parametrize("quotes", [True, False])
@pytest.mark.parametrize("failing", ["first", "later"])
def test_an_oserror_in_the_scan_is_an_error(tmp_path, monkeypatch, parts, quotes, failing):
    path = tmp_path / "d.csv"
    _write(path, quotes)
    preadv, middle = os.preadv, path.stat().st_size // 2

    def read(fd, buffers, at):
        # The first range is scanned on the calling thread, the later ones on their own.
        if (at <= len("x,s,label\n")) if failing == "first" else at > middle:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return preadv(fd, buffers, at)

    monkeypatch.setattr(csv_cuts.os, "preadv", read)
    assert _outcome(path) == [f"cannot read {path}: {os.strerror(errno.EIO)}"]
    assert parts == []
