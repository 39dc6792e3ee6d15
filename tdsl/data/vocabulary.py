"""A language-model source's vocabulary: how text becomes token ids and ids become text
again (for prompts and generated tokens). It lives in the run's fitted transforms as
`tokens` (the text of each id; null for the unknown id), `unknown`, and the tokenizer's
settings."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from tdsl.data.base import DataError

UNKNOWN_TEXT = "\N{REPLACEMENT CHARACTER}"


def split_tokens(text: str, tokenizer: str, pattern: str, lowercase: bool) -> list[str]:
    if lowercase:
        text = text.lower()
    if tokenizer == "char":
        return list(text)
    if tokenizer == "whitespace":
        return text.split()
    return re.findall(pattern, text)


@attrs.frozen
class Vocabulary:
    tokens: tuple[str | None, ...]  # the text of each id
    unknown: int | None  # the id of tokens not in the vocabulary; None: there is none
    tokenizer: str = "char"
    pattern: str = ""
    lowercase: bool = False

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Vocabulary:
        return cls(
            tuple(state["tokens"]),
            state.get("unknown"),
            state.get("tokenizer", "char"),
            state.get("pattern", ""),
            bool(state.get("lowercase", False)),
        )

    def state(self) -> dict[str, Any]:
        return {
            "tokens": list(self.tokens),
            "unknown": self.unknown,
            "tokenizer": self.tokenizer,
            "pattern": self.pattern,
            "lowercase": self.lowercase,
        }

    @property
    def ids(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens) if t is not None}

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; a token the vocabulary lacks is the unknown id, or an error
        where there is none."""
        ids, out = self.ids, []
        for token in split_tokens(text, self.tokenizer, self.pattern, self.lowercase):
            found = ids.get(token, self.unknown)
            if found is None:
                known = "".join(t for t in self.tokens if t is not None)
                raise DataError.at((), f"{token!r} is not in the vocabulary ({known!r})")
            out.append(found)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        texts = [
            self.tokens[i] if 0 <= i < len(self.tokens) and self.tokens[i] is not None else None
            for i in ids
        ]
        unknown = UNKNOWN_TEXT if self.tokenizer == "char" else "<unk>"
        joiner = "" if self.tokenizer == "char" else " "
        return joiner.join(unknown if t is None else t for t in texts)
