"""Text: lines of `label<delimiter>text` -> token ids of a fixed length.

Tokens are the matches of a regex (or whitespace-separated words), optionally lowercased.
The vocabulary is fitted on the training texts only: the most frequent tokens (ties in
alphabetical order) with at least `min_freq` occurrences get the ids left free by the
reserved padding and unknown ids, up to `vocab_size` ids in all.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path

import torch

from tdsl import spec as S
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
    if source.lowercase:
        text = text.lower()
    if source.tokenizer == "whitespace":
        return text.split()
    return re.findall(source.pattern, text)


def _read_lines(path: Path, key: str) -> list[tuple[int, str]]:
    try:
        require_regular_file(path)  # a FIFO would block the read forever
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError.at((key,), f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise DataError.at((key,), f"cannot read {path}: {exc.strerror or exc}") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _read(source: S.Text, path: Path, key: str, problems: Problems):
    labels, texts, lines = [], [], []
    for number, line in _read_lines(path, key):
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
    return labels, texts, lambda row: f"line {lines[row]} of {path}"


def fit_vocab(source: S.Text, texts: list[str]) -> dict[str, int]:
    counts = Counter(token for text in texts for token in tokenize(source, text))
    ranked = sorted(
        (t for t, c in counts.items() if c >= source.min_freq), key=lambda t: (-counts[t], t)
    )
    reserved = {source.pad_id, source.unknown_id}
    ranked = ranked[: max(0, source.vocab_size - len(reserved))]
    free = (i for i in itertools.count() if i not in reserved)
    return dict(zip(ranked, free, strict=False))


def encode(
    source: S.Text, vocab: dict[str, int], texts: list[str], dtype: torch.dtype
) -> torch.Tensor:
    out = torch.full((len(texts), source.length), source.pad_id, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [vocab.get(token, source.unknown_id) for token in tokenize(source, text)]
        if len(ids) > source.length:
            ids = ids[-source.length :] if source.truncation == "pre" else ids[: source.length]
        if ids:
            if source.padding == "pre":
                out[row, source.length - len(ids) :] = torch.tensor(ids)
            else:
                out[row, : len(ids)] = torch.tensor(ids)
    return out.to(dtype)


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
        {key: (labels, where) for key, (labels, _, where) in read.items()},
        frozenset(),
        None if fitted is None else fitted.state.get("classes"),
        problems,
        where=("target_kind",),
        fitted=fitted is not None,
    )
    problems.check()
    rows = sum(len(texts) for _, texts, _ in read.values())
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
    if fitted is None:
        vocab = fit_vocab(source, [texts[i] for i in index.train.tolist()])
        fitted = Fitted("text", {"vocab": vocab, "classes": classes})
    vocab = fitted.expect("text", "vocab")
    dtype = _id_dtype(ctx)
    rows = TensorData((encode(source, vocab, texts, dtype),), targets["file"])
    splits = [rows.subset(index.train)]
    for which, key in ((index.val, "val_file"), (index.test, "test_file")):
        if key in read:
            splits.append(TensorData((encode(source, vocab, read[key][1], dtype),), targets[key]))
        else:
            splits.append(None if which is None else rows.subset(which))
    counts = {
        n: len(s) for n, s in zip(("train", "val", "test"), splits, strict=True) if s is not None
    }
    feature = FeatureInfo((source.length,), str(dtype).removeprefix("torch."))
    signature = DataSignature((feature,), target_spec, counts, id_limit=source.vocab_size)
    return Splits(*splits, fitted=fitted), signature


def read_input(source: S.Text, ctx: Context, fitted: Fitted, path: Path):
    """Prediction texts, one per line; on a line with the delimiter, the text after it (so
    a labelled file works too)."""
    vocab = fitted.expect("text", "vocab")
    texts = []
    for _, line in _read_lines(path, "file"):
        _, found, text = line.partition(source.delimiter)
        texts.append(text if found else line)
    return (encode(source, vocab, texts, _id_dtype(ctx)),)
