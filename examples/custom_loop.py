"""Build a spec in Python (no YAML), validate it, compile it, and drive train_step by hand.

Run: python examples/custom_loop.py
"""

import tdsl
from tdsl.compile import compile
from tdsl.data import load_data
from tdsl.loops import evaluate


def build_spec() -> tdsl.Spec:
    return tdsl.Spec(
        name="rings_custom_loop",
        seed=0,
        data=tdsl.Rings(n_positive=1000, n_negative=1000, split=tdsl.Split(train=0.7, val=0.3)),
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
        train=tdsl.Train(epochs=10, batch_size=100),
    )


def main(epochs: int = 10) -> dict[str, float]:
    spec = build_spec()
    report = tdsl.validate(spec)
    if not report.ok:
        raise SystemExit(report.format())
    print(tdsl.summary(spec))

    program = compile(spec)
    data = load_data(spec)
    state = program.init(seed=0)
    for epoch in range(epochs):
        for batch in data.train.batches(spec.train.batch_size, order_seed=epoch):
            # Pure step: `state` is not modified; the new state comes back.
            state, metrics = program.train_step(state, batch)
        state = program.end_epoch(state, {"loss": float(metrics["loss"])})
        scores = evaluate(program, state, data.val)
        loss, accuracy = scores["loss"], scores["accuracy"]
        print(f"epoch {epoch + 1}: val_loss={loss:.4f} val_accuracy={accuracy:.4f}")
    return scores


if __name__ == "__main__":
    main()
