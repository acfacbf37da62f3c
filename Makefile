# Everything a newcomer needs: `make run` and `make test`.
# Both install into .venv on first use and honour DATABASE_URL when it is set;
# without it they start a private embedded Postgres under .data/.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/ueba/v1/*.proto)
STUBS := $(patsubst protos/%.proto,%_pb2.py,$(PROTOS))

.PHONY: install protos run test test-fast bench eval soak clean

install: $(STAMP) $(STUBS)

$(STAMP): pyproject.toml deploy/tools/requirements.txt deploy/tools/install.py services/console/assets.py services/console/install_browser.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) deploy/tools/install.py
	$(PY) -m services.console.assets
	sh services/console/install_browser.sh
	@touch $@

# Stubs are generated, never edited or committed; tests/test_protos.py fails on stale ones.
protos: $(STAMP)
	$(PY) -m ueba.protos

$(STUBS) &: $(PROTOS) $(STAMP)
	$(PY) -m ueba.protos

run: install
	$(PY) -m ueba.cli.main up $(ARGS)

# pytest exits 5 when it collected nothing: that is a failure here, never a pass. The slowest
# tests are listed at the end, so a run shows what eats the CI budget (15 minutes with the install).
test: install
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

bench: install
	$(PY) -m bench $(BENCH_ARGS)

# Three seeds at 200 and 500 users; a quick subset: make eval EVAL_ARGS='--seeds 4242 --users 200'
eval: install
	$(PY) -m bench.evaluation $(EVAL_ARGS)

soak: install
	$(PY) -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .data ueba/v1/*_pb2*.py ueba/v1/*_pb2*.pyi
