"""Training: `compile` -> `Program` (a module and pure step functions over `TrainState`),
compiled steps, loops, callbacks, checkpoint writes and data-parallel training."""
