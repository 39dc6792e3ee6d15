"""Model building: a spec's layers resolved into a graph (blocks, repeats, shared and tied
layers included) and built into modules, on the meta device for checking or for real."""
