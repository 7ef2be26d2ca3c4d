# The two commands of the README: `make demo` and `make test`. Both create .venv if absent.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_STAMP := $(VENV)/.torch-stamp
WORKDIR ?= workdir/demo

# A caching malloc, when installed (Debian/Ubuntu: libtcmalloc-minimal4): XLA:CPU allocates its
# buffers afresh at every step and glibc hands large blocks back to the kernel, which then
# zero-fills them again; TCMalloc keeps them (bdjax/allocator.py; 1.1-1.3x on the train step).
TCMALLOC := $(firstword $(wildcard $(addsuffix /libtcmalloc_minimal.so.4,/usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib)))
RUN := $(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC) )

.PHONY: demo test install install-torch format clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The `torch` extra (PyTorch + open_clip) for the parity tests and the speed comparison.
install-torch: $(TORCH_STAMP)

$(TORCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,torch]'
	touch $(TORCH_STAMP)

demo: $(STAMP)
	$(RUN)$(BIN)/python -m bdjax.main --config=configs/demo.py --workdir=$(WORKDIR)

test: $(STAMP) $(TORCH_STAMP)
	$(RUN)$(BIN)/python -m pytest -q --durations=25 tests

format: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff format bdjax tests configs bench launch && $(BIN)/ruff check --select F bdjax tests configs bench launch

clean:
	rm -rf $(VENV) workdir *.egg-info
