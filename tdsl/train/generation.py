"""Autoregressive generation from a language model: feed the tokens so far (cropped to the
model's block size), take the last position's scores, pick the next token, repeat.

Greedy (the argmax) by default; with a temperature, sampled from softmax(scores / t),
optionally among the `top_k` best only, from a generator seeded by `seed`."""

from __future__ import annotations

from typing import Any

import torch

from tdsl.errors import TdslError
from tdsl.registry.ops import DTYPES
from tdsl.train.state import TrainState


class GenerationError(TdslError):
    """The program is not a language model, or the arguments cannot work."""


def block_size(program: Any) -> int:
    """The longest context the model takes: its one integer input's length. Raises
    `GenerationError` for a program that is not a language model."""
    spec = program.spec
    inputs = spec.model.inputs
    dense = program.class_dim
    single = len(inputs) == 1 and len(inputs[0].shape) == 1
    if not single or DTYPES[inputs[0].dtype].is_floating_point or dense is None:
        raise GenerationError(
            f"spec {spec.name!r} is not a language model: generation needs one input of "
            "token ids [T] and a class per position as the target (data kind text_lm or "
            "addition)"
        )
    return int(inputs[0].shape[0])


@torch.no_grad()
def generate(
    program: Any,
    state: TrainState,
    ids: torch.Tensor | list[int],
    n: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """`ids` ([T] or [B, T] token ids) followed by `n` generated tokens."""
    size = block_size(program)
    if n < 0:
        raise GenerationError(f"the number of tokens to generate must be >= 0, got {n}")
    if temperature < 0:
        raise GenerationError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise GenerationError(f"top_k must be >= 1, got {top_k}")
    tokens = torch.as_tensor(ids, dtype=torch.long)
    single = tokens.dim() == 1
    tokens = tokens.reshape(1, -1) if single else tokens
    if tokens.shape[1] == 0:
        raise GenerationError("generation needs at least one token to start from")
    dtype = DTYPES[program.spec.model.inputs[0].dtype]
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    class_dim = program.class_dim
    for _ in range(n):
        context = tokens[:, -size:].to(program.device, dtype)
        output = program.predict_step(state, (context,)).float()
        scores = (output[:, -1, :] if class_dim == -1 else output[:, :, -1]).cpu()
        tokens = torch.cat([tokens, _pick(scores, temperature, top_k, generator)], dim=1)
    return tokens[0] if single else tokens


def _pick(
    scores: torch.Tensor, temperature: float, top_k: int | None, generator: Any
) -> torch.Tensor:
    if temperature == 0:
        return scores.argmax(dim=-1, keepdim=True)
    scores = scores / temperature
    if top_k is not None and top_k < scores.shape[-1]:
        cutoff = scores.topk(top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < cutoff, float("-inf"))
    return torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)
