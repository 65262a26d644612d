#!/usr/bin/env bash
# Tries the whole path without Harbor, next to a running `make run`: an image goes where
# satellites pull images from, then into the endpoint as Harbor's replication would send it,
# the worker publishes the group's signed state, and an edge agent applies it.
#
#   harbor-dev/try-it.sh <image> <group>/<repository>:<tag>
#   harbor-dev/try-it.sh docker-archive:my-image.tar edge-eu/library/my-image:1.0
#
# <image> is anything skopeo copies from (docker-archive:…, oci:<dir>:<tag>, docker://…).
#
# Why two copies: the endpoint keeps no layer bytes, and a state tells satellites to pull
# each image by digest from IMAGE_REGISTRY (by default the registry `make run` publishes
# states to). So the image must be there first, as in production it is in Harbor, and the
# endpoint must get the very manifest that registry holds. Pushing a docker-archive straight
# to the endpoint records a manifest skopeo made up on the way, which no registry holds.
#
# Reads what `make run` uses: PORT, ENDPOINT_USERNAME, ENDPOINT_PASSWORD or
# ENDPOINT_PASSWORD_FILE (else .dev/endpoint-password), STATE_REGISTRY (else the local
# registry on LOCAL_REGISTRY_PORT), IMAGE_REGISTRY, COSIGN_PUBLIC_KEY (else
# .dev/cosign.pub), DATABASE_URL. AGENT_LISTEN is where the agent will serve
# (127.0.0.1:8585); DEV_DIR where this writes the agent's configuration and store (.dev).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ne 2 ] || [[ "$2" != */*:* ]]; then
  echo "usage: harbor-dev/try-it.sh <image> <group>/<repository>:<tag>" >&2
  echo "  e.g. harbor-dev/try-it.sh docker-archive:my-image.tar edge-eu/library/my-image:1.0" >&2
  exit 2
fi
source=$1
group=${2%%/*}
rest=${2#*/}
repository=${rest%:*}
tag=${rest##*:}

dev=${DEV_DIR:-.dev}
mkdir -p "$dev"
endpoint=127.0.0.1:${PORT:-8080}
password=${ENDPOINT_PASSWORD:-$(cat "${ENDPOINT_PASSWORD_FILE:-.dev/endpoint-password}" 2>/dev/null || true)}
[ -n "$password" ] || { echo "try-it: ENDPOINT_PASSWORD is not set and ${ENDPOINT_PASSWORD_FILE:-.dev/endpoint-password} is missing: start \`make run\` first" >&2; exit 2; }
state_registry=${STATE_REGISTRY:-http://127.0.0.1:${LOCAL_REGISTRY_PORT:-5000}}
image_registry=${IMAGE_REGISTRY:-$state_registry}
public_key=${COSIGN_PUBLIC_KEY:-.dev/cosign.pub}
[ -f "$public_key" ] || { echo "try-it: no public key at $public_key: set COSIGN_PUBLIC_KEY, or start \`make run\` first" >&2; exit 2; }
public_key=$(realpath "$public_key")
host() { local h=${1#*://}; echo "${h%%/*}"; }
satellite() { node dist/cli/main.js "$@"; }
published_version() { { satellite state show "$group" --json 2>/dev/null || true; } | node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>{try{console.log(JSON.parse(s).version)}catch{console.log(0)}})'; }
say() { printf '\n==> %s\n' "$*"; }

say "1. the image into $image_registry, where the state will tell satellites to pull it from"
skopeo --insecure-policy copy --dest-tls-verify=false --digestfile "$dev/try-it.digest" \
  "$source" "docker://$(host "$image_registry")/$repository:$tag"
digest=$(cat "$dev/try-it.digest")

say "2. into the endpoint as Harbor replicates it: the same manifest ($digest), no layer sent"
before=$(published_version)
listed_before=$(satellite list "$group" --json)
skopeo --insecure-policy copy --src-tls-verify=false --dest-tls-verify=false --preserve-digests \
  --dest-creds "${ENDPOINT_USERNAME:-harbor}:$password" \
  "docker://$(host "$image_registry")/$repository:$tag" "docker://$endpoint/$group/$repository:$tag"

say "3. the worker publishes the group's signed state"
if [ "$(satellite list "$group" --json)" != "$listed_before" ]; then
  for _ in $(seq 1 120); do [ "$(published_version)" -gt "$before" ] && break; sleep 0.5; done
fi
satellite state show "$group"

say "4. an edge agent applies it ($dev/agent.yaml)"
cat > "$dev/agent.yaml" <<YAML
# Written by harbor-dev/try-it.sh: an agent for group $group, reading states from $state_registry.
registry: $state_registry
groups:
  - name: $group
    state: ${STATE_PROJECT:-satellite}/group-state/$group/state
    publicKey: $public_key
store: $(realpath "$dev")/agent-store
listen: ${AGENT_LISTEN:-127.0.0.1:8585}
interval: 10s
YAML
node dist/satellite-agent.cjs --config "$dev/agent.yaml" run --once
node dist/satellite-agent.cjs --config "$dev/agent.yaml" status

cat <<MSG

  The agent holds $repository@$digest. Serve it to the device's runtime:
    node dist/satellite-agent.cjs --config $dev/agent.yaml
  and pull it from the agent, in another terminal:
    skopeo inspect --tls-verify=false docker://${AGENT_LISTEN:-127.0.0.1:8585}/$repository:$tag
MSG
