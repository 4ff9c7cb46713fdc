# One command each: `make demo` runs the service locally end to end; `make test` runs the whole suite.
# Both install what they need (a virtualenv in .venv, and the archive tools the tests open archives with).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# checkov pins a boto3 of its own that clashes with the project's: it gets a virtualenv of its own.
CHECKOV := $(VENV)/checkov/bin/checkov

.PHONY: install tools demo serve test test-fast test-limits bench bench-quick bench-scale bench-load big-export openapi iam-proofs test-iam clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(CHECKOV): | $(STAMP)
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install --quiet checkov

# unzip, 7z, bsdtar and Java's jar open every archive the tests build; Chromium runs the web page's test.
tools:
	@missing=""; \
	command -v unzip  >/dev/null || missing="$$missing unzip"; \
	command -v 7z     >/dev/null || missing="$$missing p7zip-full"; \
	command -v bsdtar >/dev/null || missing="$$missing libarchive-tools"; \
	command -v jar    >/dev/null || missing="$$missing default-jdk-headless"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "please install:$$missing (tests needing them are skipped)"; fi; \
	fi

demo: install
	$(BIN)/data-export demo --format zip
	$(BIN)/data-export demo --format tar.gz

serve: install
	$(BIN)/data-export local serve --seed ../shared/spec/example-org.yaml --seed tests/fixtures/empty-org.yaml

test: install tools $(CHECKOV)
	$(BIN)/ruff check layers functions cli tests
	$(BIN)/mypy layers/shared/data_export cli/data_export_cli functions
	$(BIN)/pytest -n 2 --dist worksteal -q -m 'not scale and not iam_proof'
	$(BIN)/pytest -n 2 -q -m scale
	$(BIN)/pytest -q tests/limits
	$(BIN)/pytest -n 2 -q -m iam_proof tests/infra/test_least_privilege.py

# The service under AWS's limits, lowered so that contention shows (a local stack of its own: tests/limits
# is collected only when named, never by the runs above; see tests/limits/conftest.py).
test-limits: install
	$(BIN)/pytest -q tests/limits

test-fast: install
	$(BIN)/pytest -n 2 --dist worksteal -q -m 'not slow and not iam_proof'

bench: install
	$(BIN)/python -m benchmarks.run

bench-quick: install
	$(BIN)/python -m benchmarks.run --quick

bench-scale: install
	$(BIN)/python -m benchmarks.scale

bench-load: install
	$(BIN)/python -m benchmarks.load

# Issue 11 from outside: 22,000 products x 3 images seeded by `local serve`, exported in both formats over
# HTTP and verified byte for byte (docs/scaling.md, "A big organization through local serve"; ~40 min).
big-export: install
	$(BIN)/python -m benchmarks.big_org --results benchmarks/big-org-results.json

# For every action the template grants, the quickest test that uses it (tests/infra/iam-proofs.json): the
# integration, end-to-end and security tests run once recording what each was allowed.
iam-proofs: install
	rm -rf .iam-trace && mkdir -p .iam-trace
	DATA_EXPORT_IAM_TRACE=$(CURDIR)/.iam-trace $(BIN)/pytest -n 2 --dist worksteal -q -m 'not scale' \
	  tests/integration tests/e2e tests/security
	$(BIN)/python -m tests.infra.iam_proofs .iam-trace

# Least privilege by mutation: each granted action taken out in turn must fail the test that proves it.
test-iam: install
	$(BIN)/pytest -n 2 -q -m iam_proof tests/infra/test_least_privilege.py

openapi: install
	$(BIN)/data-export openapi --output docs/openapi.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam out
