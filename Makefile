# Two entry points do all the set-up on a fresh Debian/Ubuntu machine:
#   make run CHART=examples/blues.yaml   -> melodyflowd on the embedded model
#   make test                            -> the whole test suite (what CI runs)
#   make test-fast                       -> the edit loop: no JACK, nothing marked slow
PYTHON ?= python3
CHART ?= examples/blues.yaml
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_PACKAGES := jackd2 fluidsynth fluid-soundfont-gm systemd chromium chromium-driver

.PHONY: setup system-packages python-packages run test test-fast lint

setup: system-packages python-packages

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi

# torch first and pinned: the CPU build; a bare `torch` would pull CUDA wheels.
python-packages:
	$(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e '.[test]'

# Without an ALSA sequencer (containers, CI) the ports live on a JACK server.
run: setup
	@if [ -e /dev/snd/seq ]; then exec melodyflowd --chart $(CHART); fi; \
	echo "no /dev/snd/seq here: using JACK (starting a dummy JACK server if none runs)" >&2; \
	jack_lsp >/dev/null 2>&1 || { jackd --no-realtime -d dummy -r 48000 -p 256 >/dev/null 2>&1 & sleep 2; }; \
	exec melodyflowd --chart $(CHART) --backend jack

lint:
	$(PYTHON) -m ruff check .

test: setup lint
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q

# No JACK server, nothing marked slow; no setup step (run `make setup` once).
test-fast: lint
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q -m "not jack and not slow"
