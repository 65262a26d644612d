# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

NODE_MODULES := node_modules/.package-lock.json
PORT ?= 8080
ENDPOINT_USERNAME ?= harbor

.PHONY: help deps build run test bench typecheck clean

help:
	@echo "make run    start Postgres and Redis if needed, then the Satellite endpoint on :$(PORT)"
	@echo "make test   start what the tests need, then run them"
	@echo "make bench  run the ingest benchmark (skopeo into the endpoint vs docker-registry)"

$(NODE_MODULES): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps:
	@harbor-dev/deps.sh up

build: $(NODE_MODULES)
	npm run --silent build

typecheck: $(NODE_MODULES)
	npm run --silent typecheck

# The endpoint's secret: ENDPOINT_PASSWORD if set, else one generated once into .dev/ and
# reused, so Harbor's registered endpoint keeps working across restarts.
run: deps build
	@mkdir -p .dev
	@if [ -z "$$ENDPOINT_PASSWORD" ] && [ ! -s .dev/endpoint-password ]; then \
	  node -e "process.stdout.write(require('crypto').randomBytes(18).toString('base64url'))" > .dev/endpoint-password; \
	  chmod 600 .dev/endpoint-password; fi
	@export ENDPOINT_PASSWORD="$${ENDPOINT_PASSWORD:-$$(cat .dev/endpoint-password)}" PORT=$(PORT) ENDPOINT_USERNAME=$(ENDPOINT_USERNAME); \
	  echo ""; \
	  echo "  Register this endpoint in Harbor (Administration > Registries > New Endpoint):"; \
	  echo "    Provider:   Docker Registry"; \
	  echo "    URL:        http://$$(hostname -I 2>/dev/null | awk '{print $$1}' || echo 127.0.0.1):$(PORT)"; \
	  echo "    Access ID:  $$ENDPOINT_USERNAME"; \
	  echo "    Secret:     $$ENDPOINT_PASSWORD"; \
	  echo ""; \
	  exec node dist/cli/main.js serve

test: deps build
	npx mocha

bench: deps build
	node dist/bench/ingest.js

clean:
	rm -rf dist
