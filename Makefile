# skinscan: every target installs what it needs first, so any one of them works alone on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 9889

.PHONY: install system-deps test lint serve gui bench train evaluate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the CPU build of torch lies on local disk; a bare "torch" would pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,serve,gui,dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests use: Chromium for the web client, fonts and GL/X libraries for offscreen Qt.
system-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s libxkbcommon-x11-0 libgl1 libegl1 fonts-dejavu-core >/dev/null 2>&1; then \
		echo "installing Debian packages for the tests (chromium, Qt runtime libraries)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
			chromium fonts-dejavu-core libgl1 libegl1 libxkbcommon-x11-0 libdbus-1-3 libfontconfig1 >/dev/null; \
	fi

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install system-deps lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

serve: install
	$(BIN)/skinscan serve --host $(HOST) --port $(PORT)

gui: install
	$(BIN)/skinscan gui

bench: install
	$(BIN)/python benchmarks/run_all.py

# The bundled model's recipe, as in models/README.md: model 2.0 is 1.2.0 (rebuilt from its export) fine-tuned on
# all four collections of ../shared/data (about an hour on a 2-core CPU), then exported and quantised.
# a commit whose models/ holds the bundled 1.2.0, the starting point of 2.0
V1_2_0 := 3e16fca

train: install
	mkdir -p runs/v1.2.0
	git show $(V1_2_0):models/model.onnx > runs/v1.2.0/model.onnx
	git show $(V1_2_0):models/model.json > runs/v1.2.0/model.json
	$(BIN)/python experiments/onnx_to_checkpoint.py runs/v1.2.0 --data ../shared/data/ham10000 --out runs/v1.2.0.pt
	$(BIN)/skinscan train --config experiments/bundled-2.toml --out runs/v2
	$(BIN)/skinscan export runs/v2/best.pt --version 2.0.0 --out runs/v2/export
	$(BIN)/skinscan quantize runs/v2/export --checkpoint runs/v2/best.pt --out runs/v2/export-int8

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
