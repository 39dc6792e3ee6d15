"""The seeds' low-level linear regression as an embedding program: the spec built in Python
(no YAML), validated, compiled, and trained by a hand-written loop over the pure
`train_step`, printing the weights every 20 epochs as the seed does.

The seed: 400 points x uniform in [-5, 5)^2, y = x·[2, -3] + 10 + N(0, 2), one linear layer,
loss mean((ŷ - y)² / 2), SGD lr 0.001 on shuffled batches of 10, 200 epochs; it prints
w = [1.953, -3.005], b = 9.962 at the end.

Run: python examples/custom_loop.py
"""

import tdsl
from tdsl.data import load_data
from tdsl.train.program import compile


def build_spec(epochs: int = 200) -> tdsl.Spec:
    return tdsl.Spec(
        name="linear_regression_custom_loop",
        seed=0,
        data=tdsl.LinearRegression(
            n=400, weights=[2.0, -3.0], bias=10.0, noise=2.0, split=tdsl.Split(train=1.0, val=0.0)
        ),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])], layers=[tdsl.Layer("linear", out_features=1)]
        ),
        # Half the mean squared error, as the seed's loss_fn.
        loss=tdsl.Loss("sum", terms=[tdsl.LossTerm("mse", weight=0.5)]),
        optimizer=tdsl.Optimizer("sgd", lr=0.001),
        train=tdsl.Train(epochs=epochs, batch_size=10),
    )


def main(epochs: int = 200) -> dict[str, list[float]]:
    spec = build_spec(epochs)
    report = tdsl.validate(spec)
    if not report.ok:
        raise SystemExit(report.format())
    print(tdsl.summary(spec))

    program = compile(spec)
    rows = load_data(spec).train
    state = program.init(seed=spec.seed)
    for epoch in range(1, epochs + 1):
        for batch in rows.batches(spec.train.batch_size, order_seed=epoch):
            # Pure step: `state` is not modified; the new state comes back.
            state, metrics = program.train_step(state, batch)
        state = program.end_epoch(state, {"loss": float(metrics["loss"])})
        if epoch % 20 == 0 or epoch == epochs:
            weight, bias = state.params["linear1.weight"], state.params["linear1.bias"]
            print(f"epoch = {epoch} loss = {float(metrics['loss']):.4f}")
            print(f"model.w = {[round(v, 4) for v in weight.flatten().tolist()]}")
            print(f"model.b = {[round(v, 4) for v in bias.tolist()]}")
    return {
        "w": state.params["linear1.weight"].flatten().tolist(),
        "b": state.params["linear1.bias"].tolist(),
    }


if __name__ == "__main__":
    main()
