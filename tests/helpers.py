"""Small pieces several test modules share."""


class Interrupt:
    """A callback that simulates Ctrl-C right after the checkpoint of epoch `after` is
    written, so a test can resume the run from it."""

    def __init__(self, after: int = 1):
        self.after = after

    def on_epoch_end(self, run, state, logs):
        if logs["epoch"] == self.after:
            raise KeyboardInterrupt
