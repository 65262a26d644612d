#!/usr/bin/env bash
# The end-to-end test of CI, against a real Harbor (not run in CI: no Harbor can run here).
#   HARBOR_URL=https://harbor.example.com HARBOR_PASSWORD=… harbor-dev/e2e-real-harbor.sh
# Needs docker (compose), skopeo, docker-registry (for the keys' test registry), node 20.
# It runs the same mocha case as CI, test/worker/harbor-end-to-end.test.ts ("when a group is
# created, replicated and a satellite registers…"), with E2E_HARBOR_URL set, so the case
# drives this Harbor instead of the double: images pushed into Harbor, `groups create
# --replicate` through the admin API of a running `satellite serve`, Harbor itself
# replicating to the endpoint and sending its webhooks, a signed state published into
# Harbor, `satellites register`, and Harbor's own token service asked what the robot may pull
# (its images' projects and the state project, nothing else; a new project once the group
# lists an image from it). Everything it creates has a unique name and is removed after.
# Harbor must reach this machine at E2E_ENDPOINT_HOST (default: first address of hostname -I).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${HARBOR_URL:?set HARBOR_URL to a Harbor you may change}"
: "${HARBOR_PASSWORD:?set HARBOR_PASSWORD (of HARBOR_USERNAME, default admin)}"
export HARBOR_USERNAME="${HARBOR_USERNAME:-admin}" HARBOR_PASSWORD
export E2E_HARBOR_URL="$HARBOR_URL"
host=$(hostname -I 2>/dev/null | awk '{print $1}')
export E2E_ENDPOINT_HOST="${E2E_ENDPOINT_HOST:-${host:-127.0.0.1}}"
# The test's Postgres and Redis: those of harbor-dev/compose.yaml.
export TEST_DATABASE_ADMIN_URL=postgres://postgres:satellite@127.0.0.1:55432/postgres TEST_REDIS_URL=redis://127.0.0.1:56379

docker compose -f harbor-dev/compose.yaml up -d --wait
npm run --silent build
exec npx mocha dist/test/worker/harbor-end-to-end.test.js -g 'when a group is created, replicated and a satellite registers'
