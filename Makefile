# Two commands do all the set-up:
#   make demo   create .venv, install, and start the demo on the bundled default weights
#   make test   create .venv, install (including headless Chromium for the browser tests), run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install browser system-packages clean training-assets

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python app.py $(ARGS)

# what the tests need from the system: Chromium (browser tests) and a C++ compiler (torch.compile)
system-packages:
	@pkgs=""; command -v chromium >/dev/null 2>&1 || pkgs="chromium"; command -v g++ >/dev/null 2>&1 || pkgs="$$pkgs g++"; \
	[ -z "$$pkgs" ] || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null; fi; }

browser: system-packages

test: $(STAMP) system-packages
	$(BIN)/python -m pytest -q $(ARGS)

# fonts and photos of the default model's training data (Debian packages, configs/training-packages.txt)
training-assets:
	@pkgs=$$(awk '!/^#/ && NF==2 {print $$2}' configs/training-packages.txt); \
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null; \
	else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null; fi

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache
