# The commands README and .ci/run use. Each target first creates or refreshes .venv from
# pyproject.toml (only when pyproject.toml changed since the last install). Training needs the
# base stack; the tests add the [torch] extra (torch, torchvision, timm: the reference libraries).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
WORKDIR ?= runs/lenet5_digits

.PHONY: train test bench lint clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,torch]'
	touch $(TEST_STAMP)

# The default job: LeNet-5 on the embedded digits dataset (README, first command).
train: $(STAMP)
	$(PY) -m jaxconv.main --config=configs/lenet5_digits.py --workdir=$(WORKDIR)

# The test suite on CPU, with 8 virtual devices for the multi-device tests (tests/conftest.py).
test: $(TEST_STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q tests

# README's benchmark tables and chart; wall-clock timings, so run it alone on the machine.
# Needs the [torch] extra (the PyTorch and timm sides).
bench: $(TEST_STAMP)
	$(PY) -m jaxconv.bench --models resnet50,efficientnet_b0 --batch 32 --resolution 224 \
		--steps 10 --compare torch --torch-modes eager,channels_last --profile runs/bench_profile \
		--json benchmarks/cpu_float32.json
	$(PY) -m jaxconv.bench --models resnet50,efficientnet_b0 --batch 32 --resolution 224 \
		--steps 10 --dtype bfloat16 --compare torch --torch-modes eager,channels_last \
		--json benchmarks/cpu_bfloat16.json
	$(PY) -m jaxconv.bench --models '' --pipeline --pipeline-cores 1 --json benchmarks/pipeline.json
	$(PY) -m jaxconv.bench --models '' --chart benchmarks

lint: $(STAMP)
	$(PY) -m ruff check .

clean-venv:
	rm -rf $(VENV)
