"""The seeds' DNN ring classifier as an embedding program: load specs/ring_dnn.yaml, change
it with attrs.evolve (learning rate, epochs), and train it with `fit` and callbacks, as the
seed's high-level chapter trains its network with `KerasModel.fit`.

Run: python examples/evolve_and_fit.py [path/to/spec.yaml]
"""

import sys
from pathlib import Path

import attrs

import tdsl
from tdsl.data import load_data
from tdsl.train.callbacks import EarlyStopping, ProgressPrinter
from tdsl.train.loops import fit
from tdsl.train.program import compile

DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "specs" / "ring_dnn.yaml"


def main(spec_path: Path = DEFAULT_SPEC, epochs: int = 8) -> list[dict[str, float]]:
    spec = tdsl.load(spec_path)
    # Specs are immutable: evolve returns a changed copy.
    spec = attrs.evolve(
        spec,
        optimizer=attrs.evolve(spec.optimizer, lr=0.02),
        train=attrs.evolve(spec.train, epochs=epochs),
    )
    print(tdsl.dump(spec))
    program = compile(spec)
    result = fit(
        program,
        program.init(),
        load_data(spec),
        callbacks=[EarlyStopping(monitor="val_loss", patience=3), ProgressPrinter()],
    )
    best = min(row["val_loss"] for row in result.history)
    print(f"{len(result.history)} epochs, best val_loss {best:.4f}")
    return result.history


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SPEC)
