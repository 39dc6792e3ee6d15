"""`tdsl predict RUN --generate N`: text from a language-model run, decoded with the
vocabulary its data source fitted (kept in the run directory's transforms)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tdsl.data import DataError, Fitted
from tdsl.data.vocabulary import Vocabulary
from tdsl.runs.directories import RunError, _program_and_state
from tdsl.train.generation import GenerationError

LANGUAGE_MODEL_SOURCES = ("text_lm", "addition")


def run_vocabulary(directory: Path) -> Vocabulary:
    """The vocabulary a language-model run fitted; RunError for any other run."""
    fitted = Fitted.load(directory)
    if fitted is None or fitted.kind not in LANGUAGE_MODEL_SOURCES:
        source = f"a {fitted.kind!r} source" if fitted is not None else "no vocabulary"
        raise RunError(
            f"{directory} is not a language-model run ({source}): --generate needs a run "
            "of data kind text_lm or addition"
        )
    return Vocabulary.from_state(fitted.state)


def default_prompt(vocabulary: Vocabulary) -> str:
    """Where generation starts without a prompt: a new line, else the first token."""
    if "\n" in vocabulary.tokens:
        return "\n"
    return next(t for t in vocabulary.tokens if t is not None)


def generate_run(
    directory: Path,
    n: int,
    prompt: str | None = None,
    which: str = "best",
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
    allow_imports: Sequence[str] = (),
) -> str:
    """The prompt followed by `n` generated tokens, as text."""
    directory = Path(directory)
    vocabulary = run_vocabulary(directory)
    text = prompt if prompt else default_prompt(vocabulary)
    try:
        ids = vocabulary.encode(text)
    except DataError as exc:
        raise RunError(f"--prompt: {exc.problems[0].message}") from None
    if not ids:
        raise RunError(f"--prompt {text!r} holds no tokens")
    program, state = _program_and_state(directory, which, allow_imports)
    try:
        tokens = program.generate(state, ids, n, temperature=temperature, top_k=top_k, seed=seed)
    except GenerationError as exc:
        raise RunError(str(exc)) from None
    continuation = vocabulary.decode(tokens[len(ids) :].tolist())
    gap = " " if vocabulary.tokenizer != "char" and continuation else ""  # between words
    return text + gap + continuation
