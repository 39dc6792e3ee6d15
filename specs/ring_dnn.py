"""specs/ring_dnn.yaml written in Python: `tdsl run specs/ring_dnn.py` trains the same
model to the same result (same seed, same splits, same weights).

A Python spec file defines `spec` (a tdsl.Spec) or `def spec() -> tdsl.Spec`; tdsl runs the
file (it is your code) and validates what it builds, locating mistakes at these lines.
"""

import tdsl


def spec() -> tdsl.Spec:
    return tdsl.Spec(
        name="ring_dnn",
        seed=0,
        data=tdsl.Rings(n_positive=2000, n_negative=2000, split=tdsl.Split(train=0.7, val=0.3)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])],
            layers=[
                tdsl.Layer("linear", out_features=4),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=8),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=1),
            ],
        ),
        loss=tdsl.Loss("bce_with_logits"),
        optimizer=tdsl.Optimizer("adam", lr=0.01),
        metrics=[tdsl.Metric("accuracy")],
        train=tdsl.Train(
            epochs=100,
            batch_size=100,
            early_stopping=tdsl.EarlyStopping(monitor="val_accuracy", patience=10),
            checkpoint=tdsl.Checkpoint(monitor="val_accuracy"),
        ),
        device=tdsl.Device("auto"),
    )
