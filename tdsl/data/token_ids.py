"""Token ids at the scale of a large text: tokens counted and encoded with NumPy and Arrow,
not a Python loop per token.

Python's own `re.findall` and `str.split` still cut the text (Arrow's regular expressions
and whitespace differ from Python's, and the ids must not change); everything after them is
vectorized: the tokens become indices into their distinct values (Arrow hashes them), the
vocabulary is fitted on `np.bincount` of those indices, and ids are one table lookup.
Characters skip the token strings altogether: the text's code points (its UTF-32) index a
table of ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

CHUNK = 1 << 20  # tokens (or characters) handled at a time: bounds the temporaries
CODE_POINTS = 0x110000
PYTHON_TOKENS = 1 << 18  # tokens held as Python strings at a time (~50 bytes each)


def factorize(tokens: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Each token as an index into the distinct tokens (in order of first use), and those."""
    chunks: list[pa.Array] = []
    for at in range(0, len(tokens), CHUNK):
        _append(chunks, tokens[at : at + CHUNK])
    return _codes(chunks)


def factorize_words(text: str) -> tuple[np.ndarray, list[str]]:
    """`factorize(text.split())` without a Python string for every word of the text at once:
    the text is split a piece at a time, each piece ending just before a whitespace
    character (so no word is cut)."""
    chunks: list[pa.Array] = []
    at, size = 0, CHUNK * 4  # characters: about PYTHON_TOKENS words of a few letters
    while at < len(text):
        cut = min(len(text), at + size)
        while cut < len(text) and not text[cut].isspace():
            cut += 1
        _append(chunks, text[at:cut].split())
        at = cut
    return _codes(chunks)


def _append(chunks: list[pa.Array], tokens: Sequence[str]) -> None:
    # Imported here: pyarrow takes 0.2 s to import, which validating a spec without text
    # (this module comes with every `tdsl.data`) should not pay.
    import pyarrow as pa

    part = pa.array(tokens, type=pa.string())
    # More than 2 GiB of text in one part comes back already cut into chunks.
    chunks.extend(part.chunks if isinstance(part, pa.ChunkedArray) else [part])


def _codes(chunks: list[pa.Array]) -> tuple[np.ndarray, list[str]]:
    if not chunks:
        return np.zeros(0, dtype=np.int64), []
    import pyarrow as pa

    from tdsl.data.arrow_text import codes_of

    return codes_of(pa.chunked_array(chunks, pa.string()))


def counts(codes: np.ndarray, uniques: list[str], weights: np.ndarray | None = None):
    """How often each distinct token occurs (weighted: `weights` per token), as a dict."""
    found = np.bincount(codes, weights=weights, minlength=len(uniques))
    return {token: int(n) for token, n in zip(uniques, found.tolist(), strict=True) if n}


def lookup(uniques: list[str], vocab: Mapping[str, int], unknown: int) -> np.ndarray:
    """The id of each distinct token (`unknown` where the vocabulary lacks it)."""
    get = vocab.get
    return np.fromiter((get(t, unknown) for t in uniques), dtype=np.int64, count=len(uniques))


def code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def char_counts(text: str) -> dict[str, int]:
    """How often each character of `text` occurs."""
    total = np.zeros(0, dtype=np.int64)
    for at in range(0, len(text), CHUNK):
        found = np.bincount(code_points(text[at : at + CHUNK]))
        if len(found) > len(total):
            found[: len(total)] += total
            total = found
        else:
            total[: len(found)] += found
    (present,) = np.nonzero(total)
    return {chr(c): int(n) for c, n in zip(present.tolist(), total[present].tolist(), strict=True)}


def encode_chars(text: str, vocab: Mapping[str, int], unknown: int) -> np.ndarray:
    """The id of each character of `text` (int64)."""
    table = np.full(CODE_POINTS, unknown, dtype=np.int64)
    for token, i in vocab.items():
        if len(token) == 1:  # only a single character can ever match one
            table[ord(token)] = i
    out = np.empty(len(text), dtype=np.int64)
    for at in range(0, len(text), CHUNK):
        out[at : at + CHUNK] = table[code_points(text[at : at + CHUNK])]
    return out


def tokenized_rows(
    texts: Sequence[str], tokenize: Callable[[str], list[str]]
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Each text's tokens: (indices into the distinct tokens, those, tokens per text). The
    tokens go into Arrow arrays a chunk at a time: a Python string per token of a large
    file would take several times the file's size."""
    lengths = np.zeros(len(texts), dtype=np.int64)
    chunks: list[pa.Array] = []
    flat: list[str] = []
    for row, text in enumerate(texts):
        tokens = tokenize(text)
        lengths[row] = len(tokens)
        flat += tokens
        if len(flat) >= PYTHON_TOKENS:
            _append(chunks, flat)
            flat = []
    if flat:
        _append(chunks, flat)
    return (*_codes(chunks), lengths)


ROWS = 1 << 14  # texts made into rows at a time: bounds the index temporaries


def fixed_length(
    codes: np.ndarray,
    table: np.ndarray,
    lengths: np.ndarray,
    length: int,
    pad_id: int,
    padding: str,
    truncation: str,
) -> np.ndarray:
    """Rows of `length` ids, one per text: the ids are `table[codes]`, `lengths` of them per
    text one text after another, cut to `length` (keeping the last ids with truncation
    `pre`) and padded with `pad_id` (at the front with padding `pre`)."""
    out = np.full((len(lengths), length), pad_id, dtype=np.int64)
    ends = np.cumsum(lengths)
    for first in range(0, len(lengths), ROWS):
        last = min(len(lengths), first + ROWS)
        start = int(ends[first - 1]) if first else 0
        ids = table[codes[start : int(ends[last - 1])]]
        _fill(out[first:last], ids, lengths[first:last], padding, truncation)
    return out


def _fill(out: np.ndarray, ids: np.ndarray, lengths: np.ndarray, padding: str, truncation: str):
    rows, length = out.shape
    kept = np.minimum(lengths, length)
    total = int(kept.sum())
    if total == 0:
        return
    starts = np.cumsum(lengths) - lengths
    if truncation == "pre":
        starts = starts + lengths - kept
    first_column = length - kept if padding == "pre" else np.zeros(rows, dtype=np.int64)
    row_of = np.repeat(np.arange(rows), kept)
    within = np.arange(total) - np.repeat(np.cumsum(kept) - kept, kept)
    out[row_of, np.repeat(first_column, kept) + within] = ids[np.repeat(starts, kept) + within]
