# Two commands do all the work (README.md, "Quick start"):
#
#     make book    build the HTML book into _build/html (from a clean _build, warnings are errors)
#     make test    run the whole test suite: unit tests, doctests, nbval over every chapter, the claims on
#                  other seeds and on wrong variants, assignments, the browser test, ... (exactly what CI
#                  runs: .ci/run calls `make test`; a plain `pytest -n 2` leaves out the slow tests)
#
# Both create the environment .venv (pip install -r requirements.txt, one resolve) when it is
# missing or older than requirements.txt / pyproject.toml.  More targets: `make env`, `make lint`,
# `make check` (everything CI checks), `make flower` (the federated methods on Flower's simulation
# engine, in Flower's own environment .venv-flower from requirements-flower.txt), `make clean`.
#
# On a Linux machine without an NVIDIA GPU, install PyTorch's CPU-only build (about 200 MB instead
# of several GB of CUDA libraries) by naming its index the first time:
#     make test TORCH_INDEX=https://download.pytorch.org/whl/cpu

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_INDEX ?=
TORCH_PIN := $(shell grep -E '^torch==' requirements.txt)

# One thread for every numeric library: float sums are reproducible, and small problems run faster.
export OMP_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export NUMEXPR_NUM_THREADS := 1
# nbgrader calls `alembic`, which lives in the environment's bin/.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: env book test lint check clean flower

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(BIN)/pip install "$(TORCH_PIN)" --index-url $(TORCH_INDEX))
	$(BIN)/pip install -r requirements.txt
	touch $@

book: env
	rm -rf _build/html _build/.doctrees _build/jupyter_execute
	$(BIN)/jupyter-book build . -W --keep-going
	@echo "The book: open _build/html/chapters/intro.html in a browser."

test: env
	$(BIN)/pytest -n 2 -m "not pdf" --durations=25

# Flower pins its own Ray and protobuf: a separate environment, never the book's (requirements-flower.txt).
.venv-flower/.installed: requirements-flower.txt
	test -x .venv-flower/bin/python || $(PYTHON) -m venv .venv-flower
	.venv-flower/bin/pip install -q -r requirements-flower.txt
	touch $@

flower: .venv-flower/.installed
	PYTHONPATH=$(CURDIR) .venv-flower/bin/python -m pytest -p no:cacheprovider -o addopts="" -m flower \
	    tests/federated/test_flower.py tests/federated/test_diff2.py

lint: env
	$(BIN)/ruff check .

check: lint test book
	$(BIN)/python tools/check_book.py --strict
	$(BIN)/python tools/oldest_deps.py

clean:
	rm -rf _build
