"""The vocabularies every stage reads: ops, losses, metrics, optimizers and schedules, each
entry's builder beside what it expects. Importing this package registers the ops tdsl ships
(`layer_ops`, `graph_ops`); `ops` holds the op registry itself."""

from tdsl.registry import graph_ops, layer_ops  # noqa: F401  (imported to register their ops)
