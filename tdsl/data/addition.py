"""Generated additions as character sequences, for training a small language model without
downloading anything.

A problem `a + b` with `digits`-digit operands is written `a+b=s`: operands zero-padded, the
sum zero-padded to digits + 1 digits and, when `reverse`, least significant digit first (as
minGPT's adder: a causal model then writes each digit after the carries it depends on).
The input is the sequence without its last character and the target the sequence shifted
by one; targets inside the prompt are IGNORE, so the loss and the metrics see only the sum's
digits. The vocabulary is fixed: the digits, `+` and `=`.
"""

from __future__ import annotations

import torch

from tdsl import spec as S
from tdsl.data.base import Context, DataSignature, FeatureInfo, Problems
from tdsl.data.fitted import Fitted
from tdsl.data.tensors import Splits, TensorData, split_index, split_rows
from tdsl.data.vocabulary import Vocabulary

VOCAB = "0123456789+="
PLUS, EQUALS = 10, 11
IGNORE = -100  # torch's default ignore_index for cross_entropy and nll
MAX_DIGITS = 9  # sums stay well inside int64


def length(source: S.Addition) -> int:
    """Characters per model input: both operands, `+`, `=`, and the sum but its last."""
    return 3 * source.digits + 2


def vocabulary() -> Vocabulary:
    return Vocabulary(tuple(VOCAB), None, "char")


def static_problems(source: S.Addition, problems: Problems) -> None:
    if source.digits > MAX_DIGITS:
        problems.add(("digits",), f"must be at most {MAX_DIGITS} (got {source.digits})")
        return
    total = 10 ** (2 * source.digits)
    if source.n > total:
        problems.add(
            ("n",),
            f"there are only {total} distinct {source.digits}-digit additions (n is {source.n})",
            f"set n to at most {total}, or raise digits",
        )
    if source.split.stratify:
        problems.add(("split", "stratify"), "does not apply to addition", "remove stratify")


def _problems(source: S.Addition, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` distinct (a, b) pairs drawn with `g`."""
    base = 10**source.digits
    if base * base <= 2**24:
        pairs = torch.randperm(base * base, generator=g)[: source.n]
    else:  # too many to permute: draw, drop repeats, draw again
        pairs = torch.empty(0, dtype=torch.long)
        while len(pairs) < source.n:
            more = torch.randint(0, base * base, (2 * source.n,), generator=g)
            merged = torch.cat([pairs, more])
            first = _first_occurrences(merged)
            pairs = merged[first.sort().values]
        pairs = pairs[: source.n]
    return pairs // base, pairs % base


def _first_occurrences(values: torch.Tensor) -> torch.Tensor:
    """The index of each distinct value's first occurrence."""
    unique, inverse = torch.unique(values, return_inverse=True)
    positions = torch.arange(len(values))
    first = torch.full((len(unique),), len(values), dtype=torch.long)
    first.scatter_reduce_(0, inverse, positions, reduce="amin")
    return first


def _digits(values: torch.Tensor, count: int) -> torch.Tensor:
    """[n, count] decimal digits, most significant first."""
    powers = 10 ** torch.arange(count - 1, -1, -1)
    return values[:, None] // powers % 10


def sequences(source: S.Addition, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[n, 3 * digits + 3] token ids of `a+b=s`."""
    n, d = len(a), source.digits
    total = _digits(a + b, d + 1)
    if source.reverse:
        total = total.flip(1)
    plus = torch.full((n, 1), PLUS)
    equals = torch.full((n, 1), EQUALS)
    return torch.cat([_digits(a, d), plus, _digits(b, d), equals, total], dim=1)


def prepare(source: S.Addition, ctx: Context, fitted: Fitted | None = None):
    problems = Problems()
    static_problems(source, problems)
    problems.check()
    generator = torch.Generator().manual_seed(ctx.seed)
    a, b = _problems(source, generator)
    full = sequences(source, a, b)
    inputs, targets = full[:, :-1], full[:, 1:].clone()
    targets[:, : 2 * source.digits + 1] = IGNORE  # the prompt: only the sum is learned
    rows = TensorData((inputs,), targets)
    index = split_index(len(rows), source.split, generator)
    train, val, test = split_rows(rows, index)
    named = zip(("train", "val", "test"), (train, val, test), strict=True)
    counts = {name: len(part) for name, part in named if part is not None}
    signature = DataSignature(
        (FeatureInfo((length(source),), "int64"),),
        declared_target(source),
        counts,
        id_limit=len(VOCAB),
        tokens=True,
        ignore_index=IGNORE,
    )
    return Splits(train, val, test, Fitted("addition", vocabulary().state())), signature


def declared_target(source: S.Addition) -> S.Target:
    return S.Target(kind="class", num_classes=len(VOCAB), shape=(length(source),))
