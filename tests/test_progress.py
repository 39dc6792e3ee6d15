"""Training progress: the live bar on a terminal, one plain line per epoch elsewhere."""

import fcntl
import io
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import attrs
import pytest
from helpers import ring_spec

import tdsl
from tdsl.data import load_data
from tdsl.train.loops import fit
from tdsl.train.program import compile
from tdsl.train.progress import ProgressPrinter, end_live_bars

ROOT = Path(__file__).resolve().parent.parent


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def spec(epochs: int) -> tdsl.Spec:
    ring = ring_spec(tdsl.Optimizer("adam", lr=0.01))  # 160 training rows: 5 steps of 32
    return attrs.evolve(ring, train=tdsl.Train(epochs=epochs, batch_size=32))


def play(raw: str, columns: int) -> list[str]:
    """The lines a terminal `columns` wide shows after `raw`. Fails where a redraw leaves
    characters of the text it replaces, or a line that is redrawn would not fit the width."""
    lines: list[str] = []
    line: list[str] = []
    cursor, drawn, i = 0, "", 0
    while i < len(raw):
        if raw.startswith("\x1b[2K", i):  # erase the line
            line, drawn, i = [], "", i + 4
            continue
        char = raw[i]
        i += 1
        assert char != "\x1b", f"unexpected escape sequence {raw[i - 1 : i + 5]!r}"
        if char in "\r\n":
            shown = "".join(line).rstrip()
            assert shown == drawn.rstrip(), f"stale characters: {shown!r} after drawing {drawn!r}"
            if char == "\r":
                assert len(drawn) < columns, f"a redrawn line wider than {columns}: {drawn!r}"
                cursor = 0
            else:
                lines.append(shown)
                line, cursor = [], 0
            drawn = ""
            continue
        if cursor < len(line):
            line[cursor] = char
        else:
            line.append(char)
        cursor += 1
        drawn += char
    return [*lines, "".join(line).rstrip()] if line else lines


def test_play_catches_stale_characters_and_wrapping_redraws():
    with pytest.raises(AssertionError, match="stale"):
        play("\rloss 2.816\rloss 2.64\n", 60)
    with pytest.raises(AssertionError, match="wider"):
        play("\r" + "x" * 60 + "\r", 60)
    assert play("\rloss 2.816\rloss 2.64  \r\x1b[2Kdone\nnext", 60) == ["done", "next"]


def test_the_first_rate_shown_counts_the_whole_first_step():
    """The rate was measured from the end of an epoch's first step: 100,000 it/s."""

    class SlowSteps:
        def on_batch_end(self, run, metrics):
            time.sleep(0.02)

    screen = FakeTerminal()
    program = compile(spec(epochs=2))
    printer = ProgressPrinter(screen, refresh_seconds=0.0)
    fit(program, program.init(), load_data(program.spec), callbacks=[SlowSteps(), printer])
    shown = re.findall(r"([\d.]+)(k?) ?it/s", screen.getvalue())
    rates = [float(number) * (1000 if kilo else 1) for number, kilo in shown]
    assert len(rates) >= 8 and max(rates) <= 50 * 1.1  # a step takes 20 ms at least
    assert screen.getvalue().count("?it/s") == 2  # each epoch's bar before its first step


def test_a_bar_cut_by_an_error_ends_its_line(monkeypatch):
    class Fails:
        steps = 0

        def on_batch_end(self, run, metrics):
            self.steps += 1
            if self.steps == run.steps_per_epoch + 3:  # after the bar has shown step 3
                raise RuntimeError("boom")

    monkeypatch.setenv("COLUMNS", "60")
    screen = FakeTerminal()
    program = compile(spec(epochs=3))
    printer = ProgressPrinter(screen, refresh_seconds=0.0)
    with pytest.raises(RuntimeError):
        fit(program, program.init(), load_data(program.spec), callbacks=[printer, Fails()])
    end_live_bars()
    lines = play(screen.getvalue(), 60)
    assert lines[0].startswith("epoch 1/3 loss=") and lines[0].endswith("s)")
    assert lines[1].startswith("epoch 2/3 [") and " 3/5 loss " in lines[1]
    assert screen.getvalue().endswith("\n")  # what is printed next starts a line of its own
    end_live_bars()  # nothing left to end
    assert play(screen.getvalue(), 60) == lines


def test_off_a_terminal_one_plain_line_per_epoch():
    stream = io.StringIO()
    program = compile(spec(epochs=3))
    fit(program, program.init(), load_data(program.spec), callbacks=[ProgressPrinter(stream)])
    lines = stream.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == 4
    for number, line in enumerate(lines[:-1], start=1):
        logs = r"loss=\S+ accuracy=\S+ val_loss=\S+ val_accuracy=\S+ lr=0\.01"
        assert re.fullmatch(rf"epoch {number}/3 {logs} \(\d+\.\d\ds\)", line)


def _run_in_a_terminal(args: list[str], columns: int, interrupt_at: str) -> tuple[int, str]:
    """Run `python -m tdsl ARGS` on a pseudo-terminal `columns` wide; send SIGINT once the
    output matches `interrupt_at`. Returns the exit status and everything written."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    modes = termios.tcgetattr(follower)
    modes[1] &= ~termios.OPOST  # the bytes as written: no "\n" -> "\r\n"
    termios.tcsetattr(follower, termios.TCSANOW, modes)
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tdsl", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        cwd=ROOT,
    )
    os.close(follower)
    raw, sent, deadline = b"", False, time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([leader], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            raw += chunk
            if not sent and re.search(interrupt_at, raw.decode(errors="replace")):
                process.send_signal(signal.SIGINT)
                sent = True
    finally:
        os.close(leader)
        code = process.wait(timeout=30)
    assert sent, raw.decode(errors="replace")
    return code, raw.decode()


def test_on_a_narrow_terminal_the_bar_redraws_cleanly_and_an_interrupt_starts_a_line(tmp_path):
    args = ["run", "specs/ring_dnn.yaml", "--out", str(tmp_path / "run")]
    args += ["--set", "train.epochs=50", "--set", "train.early_stopping=null"]
    # Interrupted once epoch 2's bar has moved.
    code, raw = _run_in_a_terminal(args, 60, r"epoch 2/50 \[[^\]]*\] [1-9]")
    assert code == 130
    lines = play(raw, 60)  # no stale characters, no redrawn line wrapping
    assert lines[0].startswith("device: cpu")
    *epochs, kept, message = lines[1:]
    assert len(epochs) >= 1
    for number, line in enumerate(epochs, start=1):  # the bars erased, one line per epoch
        assert line.startswith(f"epoch {number}/50 loss=") and line.endswith("s)")
    # The bar the interrupt cut stays, and the message starts the next line.
    assert re.match(rf"epoch {len(epochs) + 1}/50 \[.*\] \d+/28 loss \S+ \S+it/s eta ", kept)
    resume = f"tdsl resume {tmp_path / 'run'}"
    assert message == f"interrupted; continue from the last finished epoch with: {resume}"
