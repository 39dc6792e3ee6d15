"""Validation: every problem in a spec in one pass, with shapes inferred and nothing
allocated; how data, model, losses, metrics and run settings fit; the summary."""
