# Weir: two commands do everything on a fresh machine.
#   make run   - install into .venv and run the whole stack on the quickstart config
#   make test  - install into .venv and run lint, type checks and the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=
BUF_VERSION := 1.75.0
BUF    := .tools/node_modules/.bin/buf

.PHONY: install system-deps run test lint typecheck pytest proto bench docs crds clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/weir up --config examples/quickstart $(ARGS)

test: install system-deps lint typecheck pytest

# Servers the tests run for real, from Debian packages: redis-server (shared rate limits)
# and postgresql (the key store shared by control plane replicas; its binaries live in
# /usr/lib/postgresql/N/bin, not on PATH).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	{ command -v postgres >/dev/null || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; } \
		|| missing="$$missing postgresql"; \
	[ -z "$$missing" ] || { \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
			$$missing; }

lint: install $(BUF)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BUF) lint

# buf (proto lint) ships as a binary inside its npm package; installed under .tools/.
$(BUF):
	mkdir -p .tools
	cd .tools && npm install --silent --no-audit --no-fund @bufbuild/buf@$(BUF_VERSION)

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -p no:cacheprovider -q $(PYTEST_ARGS)

# Regenerate weir/config/v1 from proto/ (the generated code is checked in; a test
# fails when it is stale).
proto: install
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. \
		proto/weir/config/v1/*.proto

bench: install
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) .tools .weir .mypy_cache .ruff_cache .pytest_cache

# Regenerate the config reference in README.md from the schemas (a test fails when stale).
docs: install
	$(BIN)/python -c "from pathlib import Path; from controlplane.schema_docs import splice; \
p = Path('README.md'); p.write_text(splice(p.read_text()))"

# Regenerate the CRDs in deploy/crds/ from the schemas (a test fails when stale).
crds: install
	$(BIN)/python -c "from controlplane.crds import write_all; write_all('deploy/crds')"
