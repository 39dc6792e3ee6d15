"""The vocabularies every stage reads: ops, losses, metrics, optimizers and schedules, each
entry's builder beside what it expects. Importing this package registers the ops tdsl ships
(`layer_ops`, `graph_ops`, `attention_ops`, `transformer_ops`, `tensor_ops`, `einsum_op`,
`source_ops`); `ops` holds the op registry itself."""

from tdsl.registry import (  # noqa: F401  (imported to register their ops)
    attention_ops,
    einsum_op,
    graph_ops,
    layer_ops,
    source_ops,
    tensor_ops,
    transformer_ops,
)
