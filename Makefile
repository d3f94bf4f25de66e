# Two commands a fresh machine needs: `make demo` (the main job) and `make test`.
# Both create or reuse .venv; reinstalling only happens when pyproject.toml or a lock file changes.
# requirements.lock pins the runtime (what production installs), requirements-dev.lock the dev extra's tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DENO := node_modules/.bin/deno
CHROMIUM := /usr/bin/chromium

.PHONY: venv deno browser demo console test test-e2e bench chaos clean

$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -c requirements-dev.lock -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/outbound demo

# The operator console on this machine's database (after `make demo`: its data), launches run here too.
console: venv
	$(BIN)/outbound serve --run-launches

# Deno (for the Supabase Edge Function tests) comes from npm, pinned in package-lock.json.
$(DENO): package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	touch $(DENO)

deno: $(DENO)

# The console's browser tests drive Debian's Chromium through Playwright (browser vendors' own
# downloads are not reachable here); installing it needs root or passwordless sudo.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make browser: installing Debian's chromium needs root or passwordless sudo (or set CHROMIUM_PATH)" >&2; exit 1; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null

browser:
	@if [ -n "$$CHROMIUM_PATH" ] && [ -x "$$CHROMIUM_PATH" ]; then echo "browser: $$CHROMIUM_PATH"; else $(MAKE) --no-print-directory $(CHROMIUM); fi

test: venv deno browser
	$(BIN)/python -m pytest

test-e2e: venv deno
	$(BIN)/python -m pytest -m e2e

bench: venv
	$(BIN)/python -m bench

# Kill, restart and misbehave at full size against real processes; prints the table that
# docs/reliability.md keeps (`$(BIN)/python -m chaos --write-docs` updates it there).
chaos: venv
	$(BIN)/python -m chaos

clean:
	rm -rf $(VENV) .data node_modules
