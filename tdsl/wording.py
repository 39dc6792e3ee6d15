"""How messages word what the user wrote: values echoed as YAML on one line, cut to a
length and made safe for a terminal, did-you-mean hints, and plain reasons read from
exceptions (never Python's or torch's internals).

The bottom of the package: `tdsl.errors` and every stage word their messages with it.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Iterator, Mapping

# Characters of a user's value that a message echoes: a 1 MB name is cut, not printed whole.
MAX_SHOWN = 80


def shorten(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` cut to `limit` characters, ending in `...` when something was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show(value: object, limit: int = MAX_SHOWN) -> str:
    """A value as the user wrote it in YAML, on one line: `[-2]` for a list or tuple,
    `.inf`, `true`, `null`, `{a: 1}`; strings quoted. Cut to `limit` characters."""
    text = ""
    for piece in _pieces(value, limit, depth=0):
        text += piece
        if len(text) > limit:
            break
    if len(text) <= limit:
        return text
    if isinstance(value, str):  # keep the closing quote: the cut is visibly inside the value
        return text[: limit - 4] + "..." + text[0]
    return shorten(text, limit)


def _pieces(value: object, limit: int, depth: int) -> Iterator[str]:
    """The text of `value` in pieces, so that a huge value is only rendered as far as shown."""
    if depth > 16:
        yield "..."
    elif isinstance(value, str) and depth > 0 and _plain_word(value):
        yield value  # inside a list or mapping, as YAML would write it: [rings], {op: relu}
    elif isinstance(value, str):
        yield repr(value[: limit + 1])
    elif value is None or isinstance(value, bool):
        yield {None: "null", True: "true", False: "false"}[value]
    elif isinstance(value, float) and not math.isfinite(value):
        yield ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    elif isinstance(value, int) and abs(value) >= 10**limit:
        # Python will not even write out an integer past 4300 digits.
        yield f"an integer of about {int(abs(value).bit_length() * math.log10(2)) + 1} digits"
    elif isinstance(value, int | float):
        yield repr(value)
    elif isinstance(value, Mapping):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            plain = isinstance(key, str) and _plain_word(key)
            yield (", " if index else "") + (key if plain else repr(key)) + ": "
            yield from _pieces(item, limit, depth + 1)
        yield "}"
    elif isinstance(value, list | tuple):
        yield "["
        for index, item in enumerate(value):
            yield ", " if index else ""
            yield from _pieces(item, limit, depth + 1)
        yield "]"
    else:
        yield shorten(str(value), limit)


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}


def _plain_word(text: str) -> bool:
    """Whether YAML reads `text` unquoted as this same string."""
    return (
        len(text) <= MAX_SHOWN and bool(_WORD.fullmatch(text)) and text.lower() not in _YAML_WORDS
    )


# A quoted value longer than MAX_SHOWN: quotes that open after a space or bracket and close
# before one (so the apostrophes of "can't ... don't" are not taken for quotes); or an
# unquoted run of several times that length (a huge number), but not a long file path.
_LONG = f"{{{MAX_SHOWN},}}"
_LONG_RUN = f"{{{3 * MAX_SHOWN},}}"
_LONG_QUOTED = re.compile(
    rf"""(?<![\w'"])(?:'[^'\n]{_LONG}'|"[^"\n]{_LONG}")(?!\w)|[^\s'"]{_LONG_RUN}"""
)


def shorten_quoted(text: str | None) -> str | None:
    """A message with every long quoted value (and any huge unbroken run of characters) cut
    short: messages echo names with `{name!r}` all over, and this catches them in one
    place."""
    if text is None or len(text) <= MAX_SHOWN:
        return text

    def cut(match: re.Match) -> str:
        found = match.group()
        if found[0] in "'\"":
            return found[: MAX_SHOWN - 4] + "..." + found[0]
        return shorten(found)

    return _LONG_QUOTED.sub(cut, text)


# What Python's or torch's internals sound like: never shown to the user as a reason.
INTERNAL_WORDING = re.compile(
    r"Traceback|division|modulo|has no attribute|unsupported operand|NoneType|"
    r"unexpected keyword|positional argument|must be divisible by|but got|[Ee]xpected .*got|"
    r"\bargument #?\d|__\w+__|<class |object of type|not subscriptable|not callable|"
    r"\bself\b|\bTensor\b|\bdtype=|aten::|c10::"
)


def plain_reason(exc: BaseException) -> str | None:
    """Why an operation failed, as a plain rule: an OS error's own words ("No such file or
    directory"), else the exception's first line unless it reads as Python's or torch's
    internals (then None)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    lines = str(exc).strip().splitlines()
    first = lines[0].strip() if lines else ""
    if not first or INTERNAL_WORDING.search(first) or len(first) > 200:
        return None
    return first.rstrip(".")


def file_reason(exc: BaseException) -> str:
    """Why a file could not be read, in plain words (never a library's internals)."""
    return plain_reason(exc) or f"the reader refused it ({type(exc).__name__})"


def printable(text: str, lines: bool = True) -> str:
    """`text` with every character a terminal would act on instead of showing (control
    bytes, ANSI escapes, bidirectional overrides, line separators) written as its escape,
    `\\x1b`: a spec's keys, paths and a CSV file's header reach the terminal through
    messages, and must not clear the screen or fake a line. Line breaks stay with `lines`."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or (lines and c == "\n") else _escape(c) for c in text)


def _escape(character: str) -> str:
    code = ord(character)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def install_hint(package: str, extra: str) -> str:
    """How to install an optional dependency: by its own name, which works wherever tdsl
    came from (an extra like `tdsl[plot]` resolves only where tdsl is a known package)."""
    return f"pip install {package} (or pip install -e '.[{extra}]' in a tdsl checkout)"


def did_you_mean(word: str, choices: Iterable[str], listing_limit: int = 12) -> str | None:
    """A hint naming the closest choices, or listing them when few exist."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(show(c) for c in close) + "?"
    if choices and len(choices) <= listing_limit:
        return "expected one of: " + ", ".join(shorten(c) for c in choices)
    return None


def describe_value(value: object) -> str:
    """`'fast' (str)`, `true (bool)` — a received value as the user wrote it, and its type."""
    if value is None:
        kind = "null"
    elif isinstance(value, Mapping):
        kind = "mapping"
    elif isinstance(value, list | tuple):
        kind = "list"
    else:
        kind = type(value).__name__
    return f"{show(value)} ({kind})"
