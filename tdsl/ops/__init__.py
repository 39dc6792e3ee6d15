"""The op registry and the ops tdsl ships; importing this package registers them."""

from tdsl.ops import graph_ops, torch_layers  # noqa: F401  (imported to register their ops)
from tdsl.ops.registry import OpDef, OpError, all_op_names, lookup, register, registered_names

__all__ = ["OpDef", "OpError", "all_op_names", "lookup", "register", "registered_names"]
