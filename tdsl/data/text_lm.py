"""A text file as a language-model task: token windows in, the next tokens out.

The whole text is tokenized once (characters, regex matches or words) and cut by position:
the first `split.train` of the tokens train, the next `split.val` validate, the rest test,
so no window of held-out text was seen in training (random rows of overlapping windows
would leak). The vocabulary is fitted on the training part: for characters every one seen
in sorted order, for words the most frequent first (ties in alphabetical order); id 0 stands
for tokens the vocabulary lacks. Windows are views into the token sequence (`unfold`), so a
stride of 1 costs no more memory than the text itself. Under a run's token cache
(`token_cache`) the ids and the vocabulary come from the run directory when they were made
from these very bytes with these settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import attrs
import numpy as np
import torch

from tdsl import spec as S
from tdsl.data import token_cache
from tdsl.data.base import (
    Context,
    DataError,
    DataSignature,
    FeatureInfo,
    Problems,
    check_exists,
)
from tdsl.data.fitted import Fitted
from tdsl.data.tensors import Splits, TensorData
from tdsl.data.token_ids import (
    char_counts,
    counts,
    encode_chars,
    factorize,
    factorize_words,
    lookup,
)
from tdsl.data.vocabulary import Vocabulary, split_tokens
from tdsl.special_files import require_regular_file

SPLITS = ("train", "val", "test")
_NAMES = {"train": "training", "val": "validation", "test": "test"}


def static_problems(source: S.TextLM, problems: Problems) -> None:
    if source.tokenizer == "regex":
        try:
            re.compile(source.pattern)
        except re.error as exc:
            problems.add(("pattern",), f"not a regular expression: {exc}")
    if source.vocab_size is not None and source.vocab_size < 2:
        problems.add(("vocab_size",), "must leave room for tokens besides the unknown id 0")
    if source.split.stratify:
        problems.add(
            ("split", "stratify"),
            "does not apply to text_lm: the text is split by position",
            "remove stratify",
        )


class _Tokens:
    """The text's tokens, held as cheaply as the tokenizer allows: characters as the text
    itself (a character is a token), other tokens as indices into their distinct values."""

    def __init__(self, source: S.TextLM, text: str):
        self.chars = source.tokenizer == "char"
        if self.chars:
            self.text = text.lower() if source.lowercase else text
            self.count = len(self.text)
        elif source.tokenizer == "whitespace":
            self.codes, self.uniques = factorize_words(text.lower() if source.lowercase else text)
            self.count = len(self.codes)
        else:  # a regex may match across any cut: the whole text at once
            tokens = split_tokens(text, source.tokenizer, source.pattern, source.lowercase)
            self.codes, self.uniques = factorize(tokens)
            self.count = len(tokens)

    def counts(self, start: int, end: int) -> dict[str, int]:
        if self.chars:
            return char_counts(self.text[start:end])
        return counts(self.codes[start:end], self.uniques)

    def ids(self, vocab: Mapping[str, int], unknown: int) -> np.ndarray:
        if self.chars:
            return encode_chars(self.text, vocab, unknown)
        return lookup(self.uniques, vocab, unknown)[self.codes]


def fit_vocabulary(source: S.TextLM, counts: Mapping[str, int]) -> Vocabulary:
    """The vocabulary of tokens counted (`counts`: token -> occurrences in training)."""
    kept = [t for t, c in counts.items() if c >= source.min_freq]
    if source.tokenizer == "char":
        kept.sort()
    else:
        kept.sort(key=lambda t: (-counts[t], t))
    if source.vocab_size is not None:
        if source.tokenizer == "char":  # the rarest characters become unknown
            frequent = set(sorted(kept, key=lambda t: (-counts[t], t))[: source.vocab_size - 1])
            kept = [t for t in kept if t in frequent]
        kept = kept[: source.vocab_size - 1]
    return Vocabulary((None, *kept), 0, source.tokenizer, source.pattern, source.lowercase)


def num_tokens(source: S.TextLM, vocabulary: Vocabulary) -> int:
    return source.vocab_size or len(vocabulary.tokens)


def _bounds(n: int, split: S.Split) -> dict[str, tuple[int, int]]:
    train_end = round(n * split.train)
    val_end = train_end + round(n * split.val)
    ends = {"train": (0, train_end), "val": (train_end, val_end), "test": (val_end, n)}
    return {k: v for k, v in ends.items() if k == "train" or getattr(split, k) > 0}


def _windows(ids: torch.Tensor, source: S.TextLM) -> TensorData:
    size = source.block_size
    inputs = ids[:-1].unfold(0, size, source.stride)
    targets = ids[1:].unfold(0, size, source.stride)
    return TensorData((inputs,), targets)


def _read(path: Path, problems: Problems) -> tuple[bytes, str | None] | None:
    """The file's bytes and their SHA-256 (the token cache's key; None without a cache)."""
    try:
        require_regular_file(path)  # a FIFO would block the read forever
        return token_cache.read_bytes(path)
    except OSError as exc:
        problems.add(("file",), f"cannot read {path}: {exc.strerror or exc}")
    return None


def _decode(path: Path, data: bytes) -> str:
    try:
        return token_cache.decode(data)
    except UnicodeDecodeError:
        raise DataError.at(("file",), f"{path} is not UTF-8 text") from None


# Settings that do not change the ids: a cached entry serves any windows.
_WINDOWS_ONLY = ("file", "block_size", "stride")


def _cache_key(source: S.TextLM, digest: str) -> dict:
    settings = attrs.asdict(source, filter=lambda a, _: a.name not in _WINDOWS_ONLY)
    return token_cache.key("text_lm", settings, {"file": digest})


def prepare(source: S.TextLM, ctx: Context, fitted: Fitted | None = None):
    problems = Problems()
    static_problems(source, problems)
    path = ctx.path(source.file)
    missing = check_exists(path, ("file",))
    if missing:
        problems.items.append(missing)
    problems.check()
    read = _read(path, problems)
    problems.check()
    data, digest = read
    del read
    key = None if digest is None else _cache_key(source, digest)
    given = None if fitted is None else Vocabulary.from_state(fitted.state).state()
    cached = None if key is None else token_cache.find("text_lm", key, given)
    if cached is not None:  # the very bytes these ids were made from: no need to decode
        del data
        tokens, count = None, len(cached.arrays["ids"])
    else:
        text = _decode(path, data)
        del data
        tokens = _Tokens(source, text)
        count = tokens.count
        del text  # the characters are kept lowercased, or the tokens as indices
    bounds = _bounds(count, source.split)
    need = source.block_size + 1  # a window and the token after it
    for which, (start, end) in bounds.items():
        if end - start < need:
            part = f"the {_NAMES[which]} part ({getattr(source.split, which):g} of the text)"
            where = ("block_size",) if which == "train" else ("split", which)
            hint = (
                "lower block_size, or use a longer text"
                if which == "train"
                else f"raise split.{which}, lower block_size, or use a longer text"
            )
            problems.add(
                where,
                f"{part} of {path} has {end - start} tokens, fewer than one window of "
                f"block_size + 1 = {need}",
                hint,
            )
    problems.check()
    if fitted is None and cached is not None:
        vocabulary = Vocabulary.from_state(cached.vocabulary)
        fitted = Fitted("text_lm", vocabulary.state())
    elif fitted is None:
        start, end = bounds["train"]
        vocabulary = fit_vocabulary(source, tokens.counts(start, end))
        fitted = Fitted("text_lm", vocabulary.state())
    else:
        fitted.expect("text_lm", "tokens")
        vocabulary = Vocabulary.from_state(fitted.state)
    if cached is not None:
        values = cached.arrays["ids"]
    else:
        values = tokens.ids(vocabulary.ids, vocabulary.unknown)
        if key is not None:
            token_cache.keep("text_lm", key, token_cache.Entry(vocabulary.state(), {"ids": values}))
    ids = torch.from_numpy(values)
    splits = {which: _windows(ids[start:end], source) for which, (start, end) in bounds.items()}
    counts = {which: len(rows) for which, rows in splits.items()}
    classes = num_tokens(source, vocabulary)
    signature = DataSignature(
        (FeatureInfo((source.block_size,), "int64"),),
        S.Target(kind="class", num_classes=classes, shape=(source.block_size,)),
        counts,
        id_limit=classes,
        tokens=True,
    )
    return Splits(splits["train"], splits.get("val"), splits.get("test"), fitted), signature


def declared_target(source: S.TextLM) -> S.Target:
    return S.Target(kind="class", num_classes=source.vocab_size, shape=(source.block_size,))
