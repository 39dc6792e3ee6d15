"""Text: lines of `label<delimiter>text` -> token ids of a fixed length, and the label's
target; split and checked here, the ids made (or found in the run's token cache) by
`text_encoding`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tdsl import spec as S
from tdsl.data import text_encoding as encoding
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
from tdsl.data.text_encoding import FILES, encode
from tdsl.registry.ops import DTYPES
from tdsl.special_files import require_regular_file

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


def _read_bytes(path: Path, key: str) -> tuple[bytes, str | None]:
    """The file's bytes, and their SHA-256 where a token cache is in use."""
    try:
        require_regular_file(path)  # a FIFO would block the read forever
        return token_cache.read_bytes(path)
    except OSError as exc:
        raise DataError.at((key,), f"cannot read {path}: {exc.strerror or exc}") from None


def _lines(data: bytes, path: Path, key: str) -> list[tuple[int, str]]:
    """The numbered lines that hold more than spaces."""
    try:
        text = token_cache.decode(data)
    except UnicodeDecodeError:
        raise DataError.at((key,), f"{path} is not UTF-8 text") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _read(source: S.Text, path: Path, key: str, problems: Problems, data: bytes):
    labels, texts, lines = [], [], []
    for number, line in _lines(data, path, key):
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
    raw = {}
    for key, path in paths.items():
        try:
            raw[key] = _read_bytes(path, key)
        except DataError as exc:
            problems.extend(exc)
    problems.check()
    if fitted is not None:
        fitted.expect("text", "vocab")
    cache_key = encoding.cache_key(source, ctx, {k: digest for k, (_, digest) in raw.items()})
    cached, whole = encoding.cached(cache_key, fitted)
    kept = None if cached is None else encoding.kept_labels(source, cached, fitted, whole)
    if kept is not None:
        # The very bytes these labels came from, read with the same settings: no line is
        # parsed again (the ids are the entry's too).
        targets, target_spec, classes = kept
        texts, vocab, ids = None, dict(cached.vocabulary), cached.arrays
        counted = {key: len(targets[key]) for key in raw}
    else:
        texts, (targets, target_spec, classes) = _read_files(source, paths, raw, fitted)
        counted = {key: len(rows) for key, rows in texts.items()}
    rows = sum(counted.values())
    if rows * source.length > MAX_IDS:
        problems.add(
            ("length",), f"{rows} texts of {source.length} ids are more than fit in memory"
        )
    problems.check()
    count = counted["file"]
    strata = targets["file"].reshape(count, -1)[:, 0].long() if source.split.stratify else None
    own = ("val_file" in raw, "test_file" in raw)
    generator = torch.Generator().manual_seed(ctx.seed)
    index = split_index(count, source.split, generator, strata, own)
    if texts is not None:
        if cached is None:
            vocab, ids = encoding.ids(source, texts, index, fitted)
        else:
            vocab = dict(cached.vocabulary)
            ids = {k: v for k, v in cached.arrays.items() if ":" not in k}
        # Kept with the labels, so that a later load of the same bytes parses no line; an
        # entry written before entries kept them gets them now.
        if cache_key is not None and (cached is None or whole and cached.labels is None):
            encoding.keep(cache_key, vocab, ids, (targets, target_spec, classes))
    if fitted is None:
        fitted = Fitted("text", {"vocab": vocab, "classes": classes})
    dtype = _id_dtype(ctx)
    rows = TensorData((torch.from_numpy(ids["file"]).to(dtype),), targets["file"])
    splits = [rows.subset(index.train)]
    for which, key in ((index.val, "val_file"), (index.test, "test_file")):
        if key in raw:
            splits.append(TensorData((torch.from_numpy(ids[key]).to(dtype),), targets[key]))
        else:
            splits.append(None if which is None else rows.subset(which))
    counts = {
        n: len(s) for n, s in zip(("train", "val", "test"), splits, strict=True) if s is not None
    }
    feature = FeatureInfo((source.length,), str(dtype).removeprefix("torch."))
    signature = DataSignature((feature,), target_spec, counts, id_limit=source.vocab_size)
    return Splits(*splits, fitted=fitted), signature


def _read_files(source: S.Text, paths: dict[str, Path], raw: dict, fitted: Fitted | None):
    """Each file's texts, and (`read_targets`) the targets, their spec and class names."""
    problems, read = Problems(), {}
    for key, path in paths.items():
        try:
            read[key] = _read(source, path, key, problems, raw[key][0])
        except DataError as exc:
            problems.extend(exc)
    problems.check()
    labels = read_targets(
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
    return {key: texts for key, (_, texts, _) in read.items()}, labels


def read_input(source: S.Text, ctx: Context, fitted: Fitted, path: Path):
    """Prediction texts, one per line; on a line with the delimiter, the text after it (so
    a labelled file works too)."""
    vocab = fitted.expect("text", "vocab")
    texts = []
    for _, line in _lines(_read_bytes(path, "file")[0], path, "file"):
        _, found, text = line.partition(source.delimiter)
        texts.append(text if found else line)
    return (encode(source, vocab, texts, _id_dtype(ctx)),)
