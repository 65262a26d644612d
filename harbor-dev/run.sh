#!/usr/bin/env bash
# `make run`: everything the service needs, started locally, then `satellite serve`.
# Secrets generated here are kept in .dev/ (mode 600) and reused on the next run, so the
# endpoint registered in Harbor and the public key handed to satellites stay valid.
set -euo pipefail
cd "$(dirname "$0")/.."

harbor-dev/deps.sh up
mkdir -p .dev
chmod 700 .dev

answers() { node -e "fetch(process.argv[1]).then((r) => process.exit(r.status < 500 ? 0 : 1), () => process.exit(1))" "$1"; }
secret() { node -e "process.stdout.write(require('crypto').randomBytes(18).toString('base64url'))"; }

# ENDPOINT_PASSWORD or ENDPOINT_PASSWORD_FILE as given (the service refuses both); else the
# generated one.
if [ -n "${ENDPOINT_PASSWORD_FILE:-}" ] && [ -z "${ENDPOINT_PASSWORD:-}" ]; then
  shown_secret="(in $ENDPOINT_PASSWORD_FILE)"
else
  if [ -z "${ENDPOINT_PASSWORD:-}" ]; then
    [ -s .dev/endpoint-password ] || { secret > .dev/endpoint-password; chmod 600 .dev/endpoint-password; }
    ENDPOINT_PASSWORD=$(cat .dev/endpoint-password)
  fi
  export ENDPOINT_PASSWORD
  shown_secret=$ENDPOINT_PASSWORD
fi
export ENDPOINT_USERNAME="${ENDPOINT_USERNAME:-harbor}" PORT="${PORT:-8080}"

# The generated key's password is read from its file (COSIGN_PASSWORD_FILE), so a
# COSIGN_PASSWORD or COSIGN_PASSWORD_FILE meant for another key does not apply to it.
if [ -z "${COSIGN_KEY:-}" ]; then
  [ -s .dev/cosign-password ] || { secret > .dev/cosign-password; chmod 600 .dev/cosign-password; }
  unset COSIGN_PASSWORD
  export COSIGN_PASSWORD_FILE="$PWD/.dev/cosign-password"
  [ -s .dev/cosign.key ] || node dist/cli/main.js keys generate --dir .dev >/dev/null
  export COSIGN_KEY="$PWD/.dev/cosign.key"
fi

# Without a Harbor to publish to, states go to a local docker-registry on
# 127.0.0.1:$LOCAL_REGISTRY_PORT (5000 unless set), started here and stopped with the service.
registry_pid=""
if [ -z "${STATE_REGISTRY:-}" ]; then
  LOCAL_REGISTRY_PORT="${LOCAL_REGISTRY_PORT:-5000}"
  export STATE_REGISTRY="http://127.0.0.1:$LOCAL_REGISTRY_PORT"
  if ! answers "$STATE_REGISTRY/v2/"; then
    mkdir -p .dev/registry
    cat > .dev/registry.yml <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $PWD/.dev/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$LOCAL_REGISTRY_PORT
YML
    docker-registry serve .dev/registry.yml > .dev/registry.log 2>&1 &
    registry_pid=$!
    for _ in $(seq 1 50); do answers "$STATE_REGISTRY/v2/" && break; sleep 0.1; done
    echo "harbor-dev: docker-registry for states on $STATE_REGISTRY (log: .dev/registry.log)" >&2
  fi
fi

host=$(hostname -I 2>/dev/null | awk '{print $1}')
cat <<MSG

  Register this endpoint in Harbor (Administration > Registries > New Endpoint):
    Provider:   Docker Registry
    URL:        http://${host:-127.0.0.1}:$PORT
    Access ID:  $ENDPOINT_USERNAME
    Secret:     $shown_secret

  States are signed with $COSIGN_KEY$( [ -s .dev/cosign-password ] && [ "$COSIGN_KEY" = "$PWD/.dev/cosign.key" ] && echo " (its password is in $PWD/.dev/cosign-password)")
  and published to $STATE_REGISTRY.
  Satellites and CI verify them with ${COSIGN_KEY%.key}.pub:
    satellite verify ${STATE_REGISTRY#*://}/satellite/group-state/<group>/state:latest --key ${COSIGN_KEY%.key}.pub$( [ "${STATE_REGISTRY%%://*}" = http ] && echo " --plain-http")

  To try it without Harbor, in another terminal:
    harbor-dev/try-it.sh docker-archive:my-image.tar edge-eu/library/my-image:1.0

MSG
# Not exec: this shell stays to stop the registry it started once the service is gone. A
# SIGTERM or SIGINT sent to this shell (or to `make`, which passes SIGTERM on) is passed to
# the service, whose own shutdown is bounded; a Ctrl-C reaches both, and the service stops
# once. The registry goes when the service has gone.
stop_registry() { if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi; }
trap stop_registry EXIT
MALLOC_ARENA_MAX=2 node --max-semi-space-size=8 dist/cli/main.js serve &
service_pid=$!
trap 'kill -TERM "$service_pid" 2>/dev/null || true' TERM INT HUP
status=0
# `wait` returns early when a trapped signal arrives: wait again until the service has exited.
while kill -0 "$service_pid" 2>/dev/null; do
  wait "$service_pid" && status=0 || status=$?
done
exit "$status"
