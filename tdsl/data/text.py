"""Text: lines of `label<delimiter>text` -> token ids of a fixed length.

Tokens are the matches of a regex (or whitespace-separated words), optionally lowercased.
The vocabulary is fitted on the training texts only: the most frequent tokens (ties in
alphabetical order) with at least `min_freq` occurrences get the ids left free by the
reserved padding and unknown ids, up to `vocab_size` ids in all.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
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
from tdsl.data.labels import read_targets
from tdsl.data.tensors import Splits, TensorData, split_index
from tdsl.data.token_ids import counts as token_counts
from tdsl.data.token_ids import fixed_length, lookup, tokenized_rows
from tdsl.registry.ops import DTYPES
from tdsl.special_files import require_regular_file

FILES = ("file", "val_file", "test_file")
MAX_IDS = 2**31  # token ids held in memory


def static_problems(source: S.Text, problems: Problems) -> None:
    if source.tokenizer == "regex":
        try:
            re.compile(source.pattern)
        except re.error as exc:
            problems.add(("pattern",), f"not a regular expression: {exc}")
    if source.pad_id == source.unknown_id:
        problems.add(("pad_id",), f"pad_id and unknown_id are both {source.pad_id}")
    for key in ("pad_id", "unknown_id"):
        if getattr(source, key) >= source.vocab_size:
            problems.add((key,), f"must be below vocab_size ({source.vocab_size})")
    if source.vocab_size < 3:
        problems.add(("vocab_size",), "must leave room for tokens besides the reserved ids")
    if source.num_classes is not None and source.target_kind != "class":
        problems.add(("num_classes",), "num_classes applies to class targets")
    if not source.delimiter:
        problems.add(("delimiter",), "must not be empty")


def tokenize(source: S.Text, text: str) -> list[str]:
    return tokenizer(source)(text)


def tokenizer(source: S.Text) -> Callable[[str], list[str]]:
    """The source's tokenizer as one function of a text (looked up once, called per line)."""
    split = str.split if source.tokenizer == "whitespace" else re.compile(source.pattern).findall
    if source.lowercase:  # per text, as a whole: lowercasing a final sigma depends on context
        return lambda text: split(text.lower())
    return split


def _read_lines(path: Path, key: str) -> tuple[list[tuple[int, str]], str]:
    """The numbered lines that hold more than spaces, and the SHA-256 of the file's bytes."""
    try:
        require_regular_file(path)  # a FIFO would block the read forever
        text, digest = token_cache.read_text(path)
    except UnicodeDecodeError:
        raise DataError.at((key,), f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise DataError.at((key,), f"cannot read {path}: {exc.strerror or exc}") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()], digest


def _read(source: S.Text, path: Path, key: str, problems: Problems):
    labels, texts, lines = [], [], []
    numbered, digest = _read_lines(path, key)
    for number, line in numbered:
        label, found, text = line.partition(source.delimiter)
        if not found:
            problems.add(
                (key,),
                f"line {number} of {path} has no {source.delimiter!r} between label and text",
                "each line is: label, delimiter, text",
            )
            break
        labels.append(label)
        texts.append(text)
        lines.append(number)
    if not labels and not problems.items:
        problems.add((key,), f"{path} holds no labelled lines")
    return labels, texts, lambda row: f"line {lines[row]} of {path}", digest


def fit_vocab(source: S.Text, texts: list[str]) -> dict[str, int]:
    codes, uniques, _ = tokenized_rows(texts, tokenizer(source))
    return ranked_vocab(source, token_counts(codes, uniques))


def ranked_vocab(source: S.Text, counted: Mapping[str, int]) -> dict[str, int]:
    """The most frequent tokens (ties in alphabetical order) with ids, around the reserved."""
    ranked = sorted(
        (t for t, c in counted.items() if c >= source.min_freq), key=lambda t: (-counted[t], t)
    )
    reserved = {source.pad_id, source.unknown_id}
    ranked = ranked[: max(0, source.vocab_size - len(reserved))]
    free = (i for i in itertools.count() if i not in reserved)
    return dict(zip(ranked, free, strict=False))


def encode(
    source: S.Text, vocab: dict[str, int], texts: list[str], dtype: torch.dtype
) -> torch.Tensor:
    rows = encoded(source, vocab, *tokenized_rows(texts, tokenizer(source)))
    return torch.from_numpy(rows).to(dtype)


def encoded(
    source: S.Text,
    vocab: Mapping[str, int],
    codes: np.ndarray,
    uniques: list[str],
    lengths: np.ndarray,
) -> np.ndarray:
    """Rows of `source.length` ids (int64) from tokenized texts (`token_ids.tokenized_rows`)."""
    table = lookup(uniques, vocab, source.unknown_id)
    return fixed_length(
        codes, table, lengths, source.length, source.pad_id, source.padding, source.truncation
    )


def _id_dtype(ctx: Context) -> torch.dtype:
    if len(ctx.inputs) == 1 and ctx.inputs[0].dtype in ("int32", "int64"):
        return DTYPES[ctx.inputs[0].dtype]
    return torch.int64


def prepare(source: S.Text, ctx: Context, fitted: Fitted | None = None):
    problems = Problems()
    static_problems(source, problems)
    paths = {k: ctx.path(getattr(source, k)) for k in FILES if getattr(source, k) is not None}
    for key, path in paths.items():
        found = check_exists(path, (key,))
        if found:
            problems.items.append(found)
    problems.check()
    read = {}
    for key, path in paths.items():
        try:
            read[key] = _read(source, path, key, problems)
        except DataError as exc:
            problems.extend(exc)
    problems.check()
    targets, target_spec, classes = read_targets(
        source.target_kind,
        source.num_classes,
        {key: (labels, where) for key, (labels, _, where, _) in read.items()},
        frozenset(),
        None if fitted is None else fitted.state.get("classes"),
        problems,
        where=("target_kind",),
        fitted=fitted is not None,
    )
    problems.check()
    rows = sum(len(texts) for _, texts, *_ in read.values())
    if rows * source.length > MAX_IDS:
        problems.add(
            ("length",), f"{rows} texts of {source.length} ids are more than fit in memory"
        )
    problems.check()
    texts = read["file"][1]
    strata = targets["file"].reshape(len(texts), -1)[:, 0].long() if source.split.stratify else None
    own = ("val_file" in read, "test_file" in read)
    generator = torch.Generator().manual_seed(ctx.seed)
    index = split_index(len(texts), source.split, generator, strata, own)
    if fitted is not None:
        fitted.expect("text", "vocab")
    vocab, ids = _ids(source, ctx, {k: (r[1], r[3]) for k, r in read.items()}, index, fitted)
    if fitted is None:
        fitted = Fitted("text", {"vocab": vocab, "classes": classes})
    dtype = _id_dtype(ctx)
    rows = TensorData((torch.from_numpy(ids["file"]).to(dtype),), targets["file"])
    splits = [rows.subset(index.train)]
    for which, key in ((index.val, "val_file"), (index.test, "test_file")):
        if key in read:
            splits.append(TensorData((torch.from_numpy(ids[key]).to(dtype),), targets[key]))
        else:
            splits.append(None if which is None else rows.subset(which))
    counts = {
        n: len(s) for n, s in zip(("train", "val", "test"), splits, strict=True) if s is not None
    }
    feature = FeatureInfo((source.length,), str(dtype).removeprefix("torch."))
    signature = DataSignature((feature,), target_spec, counts, id_limit=source.vocab_size)
    return Splits(*splits, fitted=fitted), signature


def _ids(
    source: S.Text, ctx: Context, read: dict[str, tuple[list[str], str]], index, fitted
) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """The vocabulary (fitted's, or fitted on the training rows) and each file's rows of ids
    (int64), from the run's token cache where it holds them for these files and settings.
    `read`: each file key's texts and the SHA-256 of its bytes."""
    key = None
    if token_cache.active() is not None and all(digest for _, digest in read.values()):
        settings = attrs.asdict(source, filter=lambda a, _: a.name not in FILES)
        digests = {k: digest for k, (_, digest) in read.items()}
        key = token_cache.key("text", {**settings, "seed": ctx.seed}, digests)
        given = None if fitted is None else fitted.state["vocab"]
        cached = token_cache.find("text", key, given)
        if cached is None and given is not None:
            # With the vocabulary known, a file's ids do not depend on the split or seed:
            # the run's entry serves its files read another way (`eval --data`).
            cached = token_cache.find_files("text", key, given, ("split", "seed"))
        if cached is not None:
            return dict(cached.vocabulary), cached.arrays
    split = tokenizer(source)
    tokens = tokenized_rows(read["file"][0], split)  # once: for the vocabulary and the ids
    if fitted is None:
        codes, uniques, lengths = tokens
        # Each token counted as often as its text is drawn for training.
        drawn = np.bincount(index.train.numpy(), minlength=len(lengths))
        counted = token_counts(codes, uniques, np.repeat(drawn.astype(np.float64), lengths))
        vocab = ranked_vocab(source, counted)
    else:
        vocab = fitted.state["vocab"]
    ids = {"file": encoded(source, vocab, *tokens)}
    for other in ("val_file", "test_file"):
        if other in read:
            ids[other] = encoded(source, vocab, *tokenized_rows(read[other][0], split))
    if key is not None:
        token_cache.keep("text", key, token_cache.Entry(vocab, ids))
    return vocab, ids


def read_input(source: S.Text, ctx: Context, fitted: Fitted, path: Path):
    """Prediction texts, one per line; on a line with the delimiter, the text after it (so
    a labelled file works too)."""
    vocab = fitted.expect("text", "vocab")
    texts = []
    for _, line in _read_lines(path, "file")[0]:
        _, found, text = line.partition(source.delimiter)
        texts.append(text if found else line)
    return (encode(source, vocab, texts, _id_dtype(ctx)),)
