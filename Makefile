# Entry points on a fresh Debian/Ubuntu machine. Each sets up what it needs once, in a
# virtual environment inside the clone (.venv), and skips the set-up while pyproject.toml
# and this Makefile are unchanged:
#   make run CHART=examples/blues.yaml   -> melodyflowd on the embedded model (runtime only)
#   make test                            -> lint, then the whole test suite (what CI runs)
#   make test-fast                       -> the tests without JACK and without slow ones
PYTHON ?= python3
VENV ?= .venv
CHART ?= examples/blues.yaml
ARGS ?=
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# What the tests need from Debian (add new ones here). Running needs only JACK, and that
# only where there is no ALSA sequencer.
APT_PACKAGES := jackd2 fluidsynth fluid-soundfont-gm systemd chromium chromium-driver
RUN_APT_PACKAGES := $(if $(wildcard /dev/snd/seq),,jackd2)
# torch first and pinned: the CPU build; a bare `torch` would pull CUDA wheels. Where a
# local wheel of the CPU build is found it is taken, else PyTorch's own CPU index.
TORCH := torch==2.13.0
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu

VPY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
SETUP_INPUTS := pyproject.toml Makefile

.PHONY: setup run test test-fast lint clean-venv

setup: $(TEST_STAMP)

# Shell: install those of the Debian packages $(1) that are missing.
apt_install = missing=""; for p in $(1); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing" >&2; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi

$(VPY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "melodyflowd needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V)" >&2; exit 1; }
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { $(call apt_install,python3-venv); }
	$(PYTHON) -m venv $(VENV)

# The package is installed editable into the venv: code changes need no new set-up.
$(RUN_STAMP): $(SETUP_INPUTS) | $(VPY)
	@$(call apt_install,$(RUN_APT_PACKAGES))
	$(VPY) -m pip install -q $(TORCH)+cpu 2>/dev/null || \
	  $(VPY) -m pip install -q $(TORCH) --extra-index-url $(TORCH_CPU_INDEX)
	$(VPY) -m pip install -q -e .
	@touch $@

$(TEST_STAMP): $(RUN_STAMP) $(SETUP_INPUTS)
	@$(call apt_install,$(APT_PACKAGES))
	$(VPY) -m pip install -q -e '.[test]'
	@touch $@

# melodyflowd picks ALSA where there is a sequencer, else JACK (--backend auto). Without
# either, a dummy JACK server runs for as long as melodyflowd does: in its own session, so
# that Ctrl-C reaches melodyflowd (which sends its note-offs) and not the server under it.
export JACK_RUNNING := from melodyflowd.live.ports import jack_running; raise SystemExit(not jack_running())
run: $(RUN_STAMP)
	@if [ -e /dev/snd/seq ] || $(VPY) -c "$$JACK_RUNNING"; then \
	  exec $(VENV)/bin/melodyflowd --chart $(CHART) $(ARGS); fi; \
	echo "no ALSA sequencer and no JACK server: a dummy JACK server runs until melodyflowd stops" >&2; \
	setsid jackd --no-realtime -d dummy -r 48000 -p 256 >/dev/null 2>&1 & jack=$$!; \
	trap 'kill $$jack 2>/dev/null; wait $$jack 2>/dev/null' EXIT; trap : INT TERM; \
	for i in $$(seq 50); do jack_lsp >/dev/null 2>&1 && break; \
	  kill -0 $$jack 2>/dev/null || { echo "jackd did not start" >&2; exit 1; }; sleep 0.1; done; \
	$(VENV)/bin/melodyflowd --chart $(CHART) $(ARGS)

lint: $(TEST_STAMP)
	$(VPY) -m ruff check .

test: lint
	HF_HUB_OFFLINE=1 $(VPY) -m pytest -q

# No JACK server, no model, nothing slow: the quick loop while editing (under a minute).
test-fast: $(TEST_STAMP)
	HF_HUB_OFFLINE=1 $(VPY) -m pytest -q -m "not jack and not slow and not model"

clean-venv:
	rm -rf $(VENV)
