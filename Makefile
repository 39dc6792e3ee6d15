# Developer shortcuts. The test suite itself is `python -m pytest -q` (see README).
PYTHON ?= .venv/bin/python
SEED_RUNS ?= runs/seeds

.PHONY: examples plot test digits-weights test-export

# Train every spec in specs/ to completion and check the numbers its seed reports
# (about a minute on 2 cores); prints a markdown table, fails on a miss.
examples:
	rm -rf $(SEED_RUNS)
	$(PYTHON) tools/check_seeds.py --out $(SEED_RUNS)

# specs/data/digits_cnn.pt, the trained digits CNN that specs/finetune_digits.yaml starts
# from (committed; this remakes it from specs/digits_cnn.yaml, about a minute).
digits-weights:
	$(PYTHON) tools/digits_weights.py

# The README gallery picture: the ring classifier's curves from `make examples`.
plot: examples
	$(PYTHON) -m tdsl plot $(SEED_RUNS)/ring_dnn --out docs/ring_dnn_curves.png

test:
	$(PYTHON) -m pytest -q

# Export every gallery spec in every format (TorchScript, torch.export, ONNX) and check
# each file against tdsl's outputs (a few minutes; the default suite runs a subset).
test-export:
	TDSL_EXPORT_ALL=1 $(PYTHON) -m pytest -q tests/test_export.py
