# Two entry points: `make demo` and `make test`. Both set up everything first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch and torchvision are pinned as one pair whose compiled ops load together (PyPI's x86-64 wheels of
# both, same CUDA build): `import torchvision` and `import sentence_transformers` then work in a plain
# interpreter, in any order (tests/journeys/test_journey_setup.py checks it). A CPU-only torch beside
# PyPI's torchvision cannot load torchvision::nms; install the two in one pip command.
TORCH_PIN := torch==2.14.1
TORCHVISION_PIN := torchvision==0.29.1
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
STAMP := $(VENV)/.installed
WORDNET := /usr/share/wordnet/data.noun

.PHONY: setup data bench-data browser demo test clean

setup: $(STAMP) data browser

# Torch (and the torchvision release built for it) are pinned in the same pip call as the package so
# nothing pulls a CUDA build of torch.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_PIN)" "$(TORCHVISION_PIN)" -e ".[test,text,scale,serve]"
	touch $(STAMP)

data:
	@if [ ! -f "$(FMNIST)" ] && [ -z "$$MRL_FASHION_MNIST" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist' or set MRL_FASHION_MNIST"; exit 1; fi; \
	fi
	@if [ ! -f "$(WORDNET)" ] && [ -z "$$MRL_WORDNET" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wordnet-base; \
	  else echo "WordNet 3.0 missing: run 'sudo apt-get install wordnet-base' or set MRL_WORDNET"; exit 1; fi; \
	fi
	@if ! command -v mandoc >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq mandoc; \
	  else echo "mandoc missing (man-page tests skip): run 'sudo apt-get install mandoc'"; fi; \
	fi

# Sources of the benchmark data sets (benchmarks/build_ood_sets.py, benchmarks/build_text_corpus.py;
# emoji font, icon themes and SVG rasteriser for benchmarks/build_image_text.py); the tests do not need them.
BENCH_PKGS := mandoc python3.11-doc linux-doc perl-doc postgresql-doc-15 erlang-doc openjdk-17-doc python-django-doc \
  llvm-14-doc nodejs-doc sqlite3-doc git-doc qtbase5-doc-html python-scipy-doc python-sklearn-doc python-sympy-doc \
  python-statsmodels-doc gimp-help-en python-astropy-doc rust-doc gnu-standards dict-gcide \
  fonts-noto-color-emoji papirus-icon-theme adwaita-icon-theme librsvg2-bin
bench-data: data
	@missing=$$(for p in $(BENCH_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "run: sudo apt-get install --no-install-recommends $$missing"; exit 1; fi; \
	fi

# The page test of `mrl serve` drives Debian's chromium through chromium-driver (selenium).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium chromium-driver; \
	  else echo "chromium + chromium-driver missing: the page test of mrl serve will be skipped; run 'sudo apt-get install chromium chromium-driver'"; fi; \
	fi

demo: setup
	$(VENV)/bin/mrl demo --out demo-output --overwrite

test: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo-output
