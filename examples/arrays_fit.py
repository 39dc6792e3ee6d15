"""Training on arrays the program already holds: a spec built in Python around
`tdsl.Arrays`, trained with `tdsl.fit` the way `tdsl run` trains (the spec's early stopping,
the best epoch's weights kept), then a second model started from those weights.

The data: two interleaved half-moons made with numpy, 0/1 labels; a 2-16-16-1 MLP on logits.

Run: python examples/arrays_fit.py
"""

import numpy as np

import tdsl


def moons(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(angle), 1 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], axis=1) + rng.normal(0, noise, (n, 2))
    return points.astype(np.float32), upper.astype(np.float32)


def build_spec(x: np.ndarray, y: np.ndarray, epochs: int) -> tdsl.Spec:
    return tdsl.Spec(
        name="moons",
        seed=0,
        data=tdsl.Arrays(x, y, target_kind="binary", split=tdsl.Split(train=0.75, val=0.25)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])],
            layers=[
                tdsl.Layer("linear", out_features=16),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=16),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=1),
            ],
        ),
        loss=tdsl.Loss("bce_with_logits"),
        optimizer=tdsl.Optimizer("adam", lr=0.02),
        metrics=[tdsl.Metric("accuracy")],
        train=tdsl.Train(
            epochs=epochs,
            batch_size=32,
            early_stopping=tdsl.EarlyStopping(monitor="val_accuracy", patience=8),
            checkpoint=tdsl.Checkpoint(monitor="val_accuracy"),
        ),
        device=tdsl.Device("cpu"),
    )


def main(epochs: int = 200) -> tdsl.FitResult:
    x, y = moons(1000, noise=0.15, seed=0)
    spec = build_spec(x, y, epochs)
    program = tdsl.compile(spec)  # validates the arrays against the model first
    data = tdsl.load_data(spec)
    result = tdsl.fit(program, program.init(), data)  # quiet; progress=True prints epochs
    best = tdsl.evaluate(program, result.best_state, data.val)
    print(f"{len(result.history)} epochs; {result.stop_reason or 'ran every epoch'}")
    print(f"best epoch {result.best_state.epoch}: val accuracy {best['accuracy']:.3f}")
    # Start again from the best weights (say, to fine-tune with a smaller learning rate).
    again = program.init(from_module=program.module_for(result.best_state))
    print(f"restarted: val accuracy {tdsl.evaluate(program, again, data.val)['accuracy']:.3f}")
    return result


if __name__ == "__main__":
    main()
