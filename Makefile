# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

NODE_MODULES := node_modules/.package-lock.json
PORT ?= 8080
HARBOR_DOUBLE_PORT ?= 8090

.PHONY: help deps build run test bench typecheck clean harbor-double image install uninstall deb

help:
	@echo "make run    start what is needed (Postgres, Redis, a local registry), then endpoint and worker on :$(PORT)"
	@echo "make test   start what the tests need, then run them"
	@echo "make bench  run the benchmarks, one after the other: $(patsubst %,bench:%,$(BENCHES))"
	@echo "           (TEST_DATABASE_ADMIN_URL, TEST_DATABASE_PREFIX, TEST_REDIS_URL, TEST_REDIS_PREFIX, TEST_PORTS=lo-hi: see the README's Benchmark)"
	@echo "make harbor-double  a stateful Harbor API double on :$(HARBOR_DOUBLE_PORT) (admin / Harbor12345)"
	@echo "make install  put \`satellite\` in \$$PREFIX/bin (PREFIX=$(PREFIX)), running this checkout's build"
	@echo "make deb    build the satellite-agent Debian package into $(DEB_DIR)/ (dpkg-deb; needs nodejs >= 20 where installed)"
	@echo "make image  build the images satellite-for-harbor and satellite-agent (buildah or docker; BASE_IMAGE=… to change the Node 20 base)"

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

# The import rules of .dependency-cruiser.cjs first (after the build: @harbor-api/client
# resolves to its compiled types), then the tests.
test: deps build
	npm run --silent depcheck
	npx mocha 'dist/test/**/*.test.js'

# The Harbor API double (harbor-dev/harbor-double.ts) on its own: every request checked
# against Harbor's swagger.yaml, what is created listed afterwards. Ctrl-C stops it.
harbor-double: build
	node dist/harbor-dev/harbor-double-main.js --port $(HARBOR_DOUBLE_PORT)

# What `make bench` runs (and `make help` lists), in this order: dist/bench/<name>.js.
BENCHES := ingest state endpoint agent site dashboard

bench: deps build
	@set -e; for b in $(BENCHES); do echo "== bench:$$b"; node dist/bench/$$b.js; done

# The two images of deploy/images/ (see the README's "Deploy"), with buildah where it exists,
# else docker. BASE_IMAGE, when set, replaces the Containerfiles' default Node 20 base (e.g.
# the one deploy/images/local-base.sh makes where nothing can be pulled). The labels come
# from package.json's version, the git commit and the git remote. npm's cafile, if one is
# configured, is handed to the build's `npm ci` as a secret (a TLS-inspecting proxy's CA).
IMAGE_TOOL ?= $(shell command -v buildah >/dev/null 2>&1 && echo buildah || { command -v docker >/dev/null 2>&1 && echo docker; })
IMAGE_PREFIX ?= localhost/
IMAGE_VERSION ?= $(shell node -p "require('./package.json').version" 2>/dev/null)
IMAGE_TAG ?= $(IMAGE_VERSION)
IMAGE_REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE_SOURCE ?= $(shell git remote get-url origin 2>/dev/null)
NPM_CA ?= $(shell f=$$(npm config get cafile 2>/dev/null); [ -f "$$f" ] && echo "$$f")
BUILDAH_ISOLATION ?= chroot
comma := ,
IMAGE_ARGS = $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) --build-arg VERSION=$(IMAGE_VERSION) \
	--build-arg REVISION=$(IMAGE_REVISION) --build-arg SOURCE=$(IMAGE_SOURCE) $(if $(NPM_CA),--secret id=npm-ca$(comma)src=$(NPM_CA))
# buildah: docker format, because the OCI image config has no place for HEALTHCHECK (Docker
# and compose use it; Kubernetes has probes of its own). --layers shares the dependency
# install between the two builds.
IMAGE_BUILD = $(if $(filter buildah,$(IMAGE_TOOL)),buildah bud --isolation $(BUILDAH_ISOLATION) --layers --format docker,docker build)

image:
	@[ -n "$(IMAGE_TOOL)" ] || { echo "make image needs buildah or docker (apt-get install buildah)" >&2; exit 1; }
	$(IMAGE_BUILD) $(IMAGE_ARGS) -f deploy/images/service.Containerfile -t $(IMAGE_PREFIX)satellite-for-harbor:$(IMAGE_TAG) .
	$(IMAGE_BUILD) $(IMAGE_ARGS) -f deploy/images/agent.Containerfile -t $(IMAGE_PREFIX)satellite-agent:$(IMAGE_TAG) .

# The edge agent as a Debian package (deploy/debian/, README "Installing on devices"):
# the bundle, /usr/bin/satellite-agent, a hardened systemd unit, /etc/satellite/agent.yaml
# as a conffile. Built with dpkg-deb alone (no debhelper), Architecture: all.
DEB_DIR ?= dist/deb
deb: build
	@deploy/debian/build.sh "$(DEB_DIR)"

# `satellite` on PATH: a two-line wrapper in $(PREFIX)/bin that runs this checkout's build
# with the node that built it (an absolute path, so sudo and services with another PATH find
# it too). A wrapper rather than `npm link`: npm link writes into npm's global prefix, which
# needs root on a Debian node, and links a file that is not executable until chmod.
PREFIX ?= /usr/local
NODE ?= $(shell command -v node)

install: build
	@[ -n "$(NODE)" ] || { echo "make install needs node on PATH" >&2; exit 1; }
	install -d "$(DESTDIR)$(PREFIX)/bin"
	printf '#!/bin/sh\n# Installed by make install from %s (V8 and malloc settings: cli/runtime.ts)\nMALLOC_ARENA_MAX=2 exec "%s" --max-semi-space-size=8 "%s/dist/cli/main.js" "$$@"\n' "$(CURDIR)" "$(NODE)" "$(CURDIR)" > "$(DESTDIR)$(PREFIX)/bin/satellite.tmp"
	chmod 755 "$(DESTDIR)$(PREFIX)/bin/satellite.tmp"
	mv -f "$(DESTDIR)$(PREFIX)/bin/satellite.tmp" "$(DESTDIR)$(PREFIX)/bin/satellite"
	@echo "installed $(DESTDIR)$(PREFIX)/bin/satellite (runs $(CURDIR)/dist/cli/main.js)"

uninstall:
	rm -f "$(DESTDIR)$(PREFIX)/bin/satellite"

clean:
	rm -rf dist
