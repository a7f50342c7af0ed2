# skinscan: every target installs what it needs first, so any one of them works alone on a fresh clone.
#
# One environment, .venv, that grows with what each target needs: `make serve` installs the server alone
# (no torch, a few hundred MB), `make gui` adds the desktop app, `make test` everything. One environment
# because the README's `.venv/bin/skinscan ...` commands then hold after any target, and because a second one
# would hold a second copy of everything `make test` needs: the side that serves never imports torch whether
# or not it is installed (the import contracts in pyproject.toml), so a grown environment serves the same.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# make serve HOST=0.0.0.0 PORT=9000; unset, `skinscan serve` reads SKINSCAN_HOST and SKINSCAN_PORT, else 127.0.0.1:9889
HOST   ?=
PORT   ?=
# Where pip finds torch==2.13.0. Empty: pip's own configuration (the project's machines: a CPU build on disk).
# Elsewhere PyPI's is a multi-GB CUDA build; TORCH_INDEX=https://download.pytorch.org/whl/cpu gets the CPU one.
TORCH_INDEX ?=

# Debian packages. The desktop app's: the libraries that PyQt5's xcb platform plugin and Qt's own libraries
# link (readelf -d on PyQt5/Qt5/plugins/platforms/libqxcb.so and Qt5/lib; tests/test_install.py keeps the
# list whole), and a font. The tests': Chromium for the web client, and the same for offscreen Qt.
GUI_DEBS := fonts-dejavu-core libdbus-1-3 libegl1 libfontconfig1 libfreetype6 libgl1 libglib2.0-0 libx11-6 \
	libx11-xcb1 libxcb1 libxcb-glx0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render0 \
	libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxcb-xinerama0 libxcb-xkb1 \
	libxext6 libxkbcommon0 libxkbcommon-x11-0
TEST_DEBS := chromium $(GUI_DEBS)

# the real dermoscopy beside the repository (README "Data"), for the screenshots and `make train`; the tests and
# experiments/bundled-2.toml read it there too
DATA := ../shared/data

.PHONY: install install-serve install-gui system-deps gui-deps test lint serve gui screenshots screenshot-data bench \
	train train-data evaluate evaluate-data clean

# Debian's Python has venv's pip in a package of its own, python3-venv.
$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || sh scripts/debian-packages.sh python3-venv
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "could not make $(VENV): on Debian/Ubuntu install python3-venv" >&2; exit 1; }
	$(PIP) install -q --upgrade pip

$(VENV)/.installed-serve: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[serve]'
	touch $@

$(VENV)/.installed-gui: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[gui]'
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	# the CPU build of torch first: a bare "torch" would pull a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e '.[train,serve,gui,dev]'
	touch $@ $(VENV)/.installed-serve $(VENV)/.installed-gui

install: $(VENV)/.installed
install-serve: $(VENV)/.installed-serve
install-gui: $(VENV)/.installed-gui

system-deps:
	@sh scripts/debian-packages.sh $(TEST_DEBS)

gui-deps:
	@sh scripts/debian-packages.sh $(GUI_DEBS)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install system-deps lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

serve: install-serve
	$(BIN)/skinscan serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

gui: install-gui gui-deps
	$(BIN)/skinscan gui

# docs/*.png, drawn by the app and the web client themselves: the bundled model on real dermoscopy only, so
# that no synthetic picture replaces them (the tests fall back to synthetic lesions without the data).
SCREENSHOT_PHOTOS := $(DATA)/isic-mvb/test/malignant/1.jpg $(DATA)/isic-mvb/test/benign/1.jpg

# checked before anything is installed or drawn
screenshot-data:
	@for f in $(SCREENSHOT_PHOTOS) models/model.onnx; do \
		[ -f "$$f" ] || { echo "make screenshots: $$f is missing; the screenshots show the bundled model on the" \
			"real dermoscopy of $(DATA) (README \"Data\" says where to get it). Nothing was drawn." >&2; exit 1; }; \
	done

screenshots: screenshot-data install system-deps
	SKINSCAN_SCREENSHOTS=1 QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/test_web_client.py tests/test_gui.py -k screenshot

bench: install
	$(BIN)/python benchmarks/run_all.py

# The bundled model's recipe, as in models/README.md: model 2.0 is 1.2.0 (rebuilt from its export) fine-tuned on
# all four collections of ../shared/data (about an hour on a 2-core CPU), then exported and quantised.
# a commit whose models/ holds the bundled 1.2.0, the starting point of 2.0
V1_2_0 := 3e16fca

train-data evaluate-data:
	@for d in ham10000 isic-mvb isic2017 isic2020; do \
		[ -d "$(DATA)/$$d" ] || { echo "make $(@:-data=): $(DATA)/$$d is missing; README \"Data\" says where to" \
			"get each collection and how to lay it out." >&2; exit 1; }; \
	done

# The bundled model on every test split (the model card's numbers): reports/bundled-<collection>/report.html
evaluate: evaluate-data install
	@for d in ham10000 isic-mvb isic2017 isic2020; do \
		$(BIN)/skinscan evaluate $(DATA)/$$d --split test --out reports/bundled-$$d || exit 1; \
	done

train: train-data install
	mkdir -p runs/v1.2.0
	git show $(V1_2_0):models/model.onnx > runs/v1.2.0/model.onnx
	git show $(V1_2_0):models/model.json > runs/v1.2.0/model.json
	$(BIN)/python experiments/onnx_to_checkpoint.py runs/v1.2.0 --data $(DATA)/ham10000 --out runs/v1.2.0.pt
	$(BIN)/skinscan train --config experiments/bundled-2.toml --out runs/v2
	$(BIN)/skinscan export runs/v2/best.pt --version 2.0.0 --out runs/v2/export
	$(BIN)/skinscan quantize runs/v2/export --checkpoint runs/v2/best.pt --out runs/v2/export-int8

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
