#!/usr/bin/env bash
# The end-to-end path against a real Harbor (not run in CI: no Harbor can run here).
#   HARBOR_URL=https://harbor.example.com HARBOR_PASSWORD=… harbor-dev/e2e-real-harbor.sh
# Needs docker (compose), skopeo, node 20 and `npm run build` done. Harbor must reach this
# machine at ENDPOINT_URL (default: http://<first address of hostname -I>:8080).
# Steps: a source project with one image → `satellite groups create --replicate` → Harbor
# replicates to the endpoint → a signed state in Harbor → `satellites create` + register →
# the robot may pull the image's project and the state project, and not another project
# (asked of Harbor's token service) → clean-up.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${HARBOR_URL:?set HARBOR_URL to a Harbor you may change}"
: "${HARBOR_PASSWORD:?set HARBOR_PASSWORD (of HARBOR_USERNAME, default admin)}"
export HARBOR_USERNAME="${HARBOR_USERNAME:-admin}"
host=$(hostname -I 2>/dev/null | awk '{print $1}')
export PORT="${PORT:-8080}" ENDPOINT_URL="${ENDPOINT_URL:-http://${host:-127.0.0.1}:${PORT:-8080}}"
export DATABASE_URL=postgres://postgres:satellite@127.0.0.1:55432/satellite REDIS_URL=redis://127.0.0.1:56379
export ENDPOINT_PASSWORD="${ENDPOINT_PASSWORD:-e2e-$(node -e "process.stdout.write(require('crypto').randomBytes(12).toString('hex'))")}"
export ADMIN_USERNAME=e2e ADMIN_PASSWORD="admin-$ENDPOINT_PASSWORD"
export STATE_REGISTRY="$HARBOR_URL" STATE_REGISTRY_USERNAME="$HARBOR_USERNAME" STATE_REGISTRY_PASSWORD="$HARBOR_PASSWORD"
export COSIGN_PASSWORD=e2e LOG_LEVEL="${LOG_LEVEL:-warn}"
work=$(mktemp -d)
export COSIGN_KEY="$work/cosign.key"
suffix=$(date +%s)
group="e2e-$suffix" project="e2e-src-$suffix" name="e2e-sat-$suffix"
api() { curl -fsS -u "$ADMIN_USERNAME:$ADMIN_PASSWORD" -H 'Content-Type: application/json' "$@"; }
harbor() { curl -fsS -u "$HARBOR_USERNAME:$HARBOR_PASSWORD" -H 'Content-Type: application/json' "$@"; }
say() { printf 'e2e: %s\n' "$*" >&2; }

docker compose -f harbor-dev/compose.yaml up -d --wait
node dist/cli/main.js keys generate --dir "$work" >/dev/null
node dist/cli/main.js serve > "$work/serve.log" 2>&1 &
serve=$!
cleanup() {
  api -X DELETE "http://127.0.0.1:$PORT/api/v1/satellites/$name" >/dev/null 2>&1 || true
  node dist/cli/main.js groups delete "$group" >/dev/null 2>&1 || true
  kill "$serve" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done

say "source project $project with one image"
harbor -X POST "$HARBOR_URL/api/v2.0/projects" -d "{\"project_name\":\"$project\",\"metadata\":{\"public\":\"false\"}}"
node -e "import('./dist/test/support/oci.js').then(async (m) => { const i = m.image(); await m.writeLayout(process.argv[1], '1.0', i.manifest, m.imageBlobs(i)); })" "$work/layout"
skopeo --insecure-policy copy --dest-creds "$HARBOR_USERNAME:$HARBOR_PASSWORD" "oci:$work/layout:1.0" "docker://${HARBOR_URL#*://}/$project/app:1.0"

say "groups create $group (and a first replication)"
node dist/cli/main.js groups create "$group" --filter "$project/**" --replicate
state="satellite/group-state/$group/state"
for i in $(seq 1 120); do
  if node dist/cli/main.js verify "${HARBOR_URL#*://}/$state:latest" --key "$work/cosign.pub" $( [ "${HARBOR_URL%%://*}" = http ] && echo --plain-http) >/dev/null 2>&1; then break; fi
  [ "$i" = 120 ] && { say "no signed state after 2 minutes; see $work/serve.log"; exit 1; }
  sleep 1
done
say "signed state $state:latest verified"

token=$(api -X POST "http://127.0.0.1:$PORT/api/v1/satellites" -d "{\"name\":\"$name\",\"groups\":[\"$group\"]}" | node -e 'process.stdin.on("data", (d) => process.stdout.write(JSON.parse(d).token))')
reg=$(curl -fsS -H 'Content-Type: application/json' -X POST "http://127.0.0.1:$PORT/api/v1/satellites/register" -d "{\"token\":\"$token\"}")
user=$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).username)' "$reg")
pass=$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).password)' "$reg")
may_pull() {
  curl -fsS -u "$user:$pass" "$HARBOR_URL/service/token?service=harbor-registry&scope=repository:$1:pull" |
    node -e 'let s=""; process.stdin.on("data", (d) => s += d).on("end", () => { const t = JSON.parse(s).token.split(".")[1]; const c = JSON.parse(Buffer.from(t, "base64url")); process.stdout.write((c.access?.[0]?.actions ?? []).includes("pull") ? "yes" : "no"); })'
}
[ "$(may_pull "$project/app")" = yes ] || { say "robot $user cannot pull $project/app"; exit 1; }
[ "$(may_pull "$state")" = yes ] || { say "robot $user cannot pull its state"; exit 1; }
[ "$(may_pull "library/e2e-not-listed")" = no ] || { say "robot $user may pull library: too much"; exit 1; }
say "robot $user may pull $project and the state project, nothing else: passed"
