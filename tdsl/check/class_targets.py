"""Class targets with positions (tokens [B, T], pixels [B, H, W]): which output axis holds
the classes, what the loss ignores, and whether a model's position table covers its
sequences. Each check appends diagnostics; none raises."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tdsl import spec as S
from tdsl.data import DataSignature
from tdsl.errors import Diagnostics, SpecPath
from tdsl.model.graph import Graph
from tdsl.registry.losses import ignored_target
from tdsl.registry.ops import shape_text


def has_positions(target: S.Target, per_sample: Sequence[int]) -> bool:
    """Whether class targets name a class per position, not one per row ([B, C])."""
    return not (len(per_sample) == 1 and tuple(target.shape) in ((), (1,)))


def _fits(target: S.Target, per_sample: tuple[int, ...], axis: int) -> bool:
    """Whether a [B, *per_sample] output has the classes at `axis` (1 or -1) and the
    target's positions elsewhere."""
    classes = per_sample[0] if axis == 1 else per_sample[-1]
    rest = per_sample[1:] if axis == 1 else per_sample[:-1]
    return rest == tuple(target.shape) and target.num_classes in (None, classes)


def class_axis(
    loss: S.Loss, target: S.Target, output_shape: Sequence[int]
) -> tuple[int | None, str | None, str | None]:
    """(1 or -1, None, None): the output axis of the classes of class targets with
    positions; (None, None, None) for one class per row; (None, message, hint) when the
    output cannot fit or the axis is ambiguous."""
    per_sample = tuple(output_shape[1:])
    if not has_positions(target, per_sample):
        return None, None, None
    rank = len(per_sample) + 1
    want = shape_text(("B", *target.shape))
    classes = target.num_classes or "C"
    last = shape_text(("B", *target.shape, classes))
    first = shape_text(("B", classes, *target.shape))
    if loss.class_dim is not None:
        place = loss.class_dim % rank if -rank <= loss.class_dim < rank else None
        axis = {1: 1, rank - 1: -1}.get(place) if place is not None else None
        if axis is None or rank < 3:
            return None, f"class_dim must be 1 or -1 (the last axis), got {loss.class_dim}", None
        if not _fits(target, per_sample, axis):
            wanted = last if axis == -1 else first
            message = (
                f"class targets of shape {want} over {classes} classes with class_dim "
                f"{loss.class_dim} need an output of shape {wanted}, got "
                f"{shape_text(output_shape)}"
            )
            return None, message, None
        return axis, None, None
    fits = [axis for axis in (-1, 1) if len(per_sample) >= 2 and _fits(target, per_sample, axis)]
    if len(fits) == 1:
        return fits[0], None, None
    if fits:
        message = (
            f"the output {shape_text(output_shape)} has {classes} classes on axis 1 and on "
            f"the last axis: which holds the classes is ambiguous"
        )
        return None, message, "set loss.class_dim: -1 (classes last) or 1"
    message = (
        f"class targets of shape {want} over {classes} classes need an output of shape "
        f"{last} (classes last) or {first}, got {shape_text(output_shape)}"
    )
    return None, message, None


def check_ignore_index(
    spec: S.Spec, signature: DataSignature, diags: Diagnostics, allow_imports: Sequence[str]
) -> None:
    """For language-model data, whose targets are token ids and the source's own marker for
    unlabelled positions: the loss must skip that marker, and a written ignore_index that
    is neither skips nothing. Masks with an unlabelled value need a loss that skips it."""
    if not signature.tokens:
        _check_mask_ignore_index(spec, signature, diags, allow_imports)
        return
    classes = signature.target.num_classes
    marker = signature.ignore_index
    ignored = ignored_target(spec.loss, allow_imports)
    written = _written_ignore_index(spec.loss)
    if written is None and (marker is None or ignored == marker):
        return
    path: SpecPath = ("loss", *written[0]) if written else ("loss", "kind")
    value = written[1] if written else ignored
    is_token = isinstance(value, int) and classes is not None and 0 <= value < classes
    if marker is not None and value != marker:
        what = f"ignore_index {value}" if value is not None else f"loss {spec.loss.kind!r}"
        diags.error(
            path,
            f"the data marks its prompt positions with {marker}, but {what} does not skip "
            f"them: they would be targets of a class that does not exist",
            f"use ignore_index: {marker}" if written else "use cross_entropy",
        )
    elif marker is None and not is_token and written:
        vocabulary = f"token ids 0..{classes - 1}" if classes else "token ids"
        diags.error(
            path,
            f"ignore_index {value} is outside the vocabulary ({vocabulary}): no target has "
            "it, so it skips nothing",
            "remove ignore_index, or give a token id to skip (a padding token)",
        )


def _check_mask_ignore_index(
    spec: S.Spec, signature: DataSignature, diags: Diagnostics, allow_imports: Sequence[str]
) -> None:
    marker = signature.ignore_index
    ignored = ignored_target(spec.loss, allow_imports)
    if marker is None or ignored == marker:
        return
    written = _written_ignore_index(spec.loss)
    path: SpecPath = ("loss", *written[0]) if written else ("loss", "kind")
    what = f"ignore_index {ignored}" if ignored is not None else f"loss {spec.loss.kind!r}"
    diags.error(
        path,
        f"the masks mark unlabelled pixels with {marker} (data.ignore_index), but {what} "
        "does not skip them: they would be targets of a class that does not exist",
        f"use loss: {{kind: cross_entropy, ignore_index: {marker}}}",
    )


def _written_ignore_index(loss: S.Loss) -> tuple[SpecPath, Any] | None:
    if "ignore_index" in loss.args:
        return ("ignore_index",), loss.args["ignore_index"]
    for index, term in enumerate(loss.terms):
        if "ignore_index" in term.args:
            return ("terms", index, "ignore_index"), term.args["ignore_index"]
    return None


def check_position_tables(
    spec: S.Spec, graph: Graph | None, values: dict[str, Any], diags: Diagnostics
) -> None:
    """An `embedding` fed by a `positions` op needs a row for every position of the
    sequences it reads; embeddings do not check their ids on the meta device."""
    if graph is None:
        return
    by_name = {node.name: node for node in graph.nodes}
    for node in graph.nodes:
        rows = node.args.get("num_embeddings")
        if not node.op.startswith("embedding") or not isinstance(rows, int):
            continue
        for source in node.inputs:
            feeder = by_name.get(source)
            value = values.get(source)
            if feeder is None or feeder.op != "positions" or not isinstance(value, torch.Tensor):
                continue
            length = int(value.shape[-1])  # positions are [1, T]
            needed = length + int(feeder.args.get("offset", 0) or 0)
            if needed <= rows:
                continue
            if isinstance(spec.data, S.TextLM):
                diags.error(
                    ("data", "block_size"),
                    f"block_size {spec.data.block_size} is larger than the position table: "
                    f"embedding {node.name!r} has {rows} rows",
                    f"set block_size to at most {rows - needed + length}, or num_embeddings: "
                    f"{needed}",
                )
            else:
                diags.error(
                    (*node.path, "num_embeddings"),
                    f"positions go up to {needed - 1} (sequences of {length}), but embedding "
                    f"{node.name!r} has {rows} rows",
                    f"set num_embeddings: {needed}",
                )
