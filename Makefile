# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

NODE_MODULES := node_modules/.package-lock.json
PORT ?= 8080
HARBOR_DOUBLE_PORT ?= 8090

.PHONY: help deps build run test bench typecheck clean harbor-double

help:
	@echo "make run    start what is needed (Postgres, Redis, a local registry), then endpoint and worker on :$(PORT)"
	@echo "make test   start what the tests need, then run them"
	@echo "make bench  run the benchmarks (bench:ingest, bench:state and bench:agent)"
	@echo "make harbor-double  a stateful Harbor API double on :$(HARBOR_DOUBLE_PORT) (admin / Harbor12345)"

$(NODE_MODULES): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps:
	@harbor-dev/deps.sh up

build: $(NODE_MODULES)
	npm run --silent build

typecheck: $(NODE_MODULES)
	npm run --silent typecheck

# Starts Postgres, Redis and a registry for states if they do not answer, generates the
# endpoint's secret and a cosign key pair once into .dev/, prints what to enter in Harbor,
# then runs the endpoint and the worker (harbor-dev/run.sh).
run: build
	@harbor-dev/run.sh

test: deps build
	npx mocha 'dist/test/**/*.test.js'

# The Harbor API double (harbor-dev/harbor-double.ts) on its own: every request checked
# against Harbor's swagger.yaml, what is created listed afterwards. Ctrl-C stops it.
harbor-double: build
	node dist/harbor-dev/harbor-double-main.js --port $(HARBOR_DOUBLE_PORT)

bench: deps build
	node dist/bench/ingest.js
	node dist/bench/state.js
	node dist/bench/endpoint.js
	node dist/bench/agent.js

clean:
	rm -rf dist
