#!/usr/bin/env bash
# Starts what the project needs locally, but only what does not already answer: PostgreSQL
# and Redis where DATABASE_URL and REDIS_URL (or their _FILE variants) point, by default
# 127.0.0.1:5432 and 127.0.0.1:6379. Installs missing Debian packages first (postgresql,
# redis-server, the test peers skopeo, umoci, docker-registry, containerd and podman, redis-sentinel and openssl, chromium for the dashboard, and buildah
# and mmdebstrap for the images). It starts PostgreSQL only as this machine's cluster on
# loopback port 5432, and Redis on any loopback port; a URL naming another host (or a
# PostgreSQL on another port) must answer already, or it says so and fails.
#
#   harbor-dev/deps.sh up       install what is missing, start what does not answer
#   harbor-dev/deps.sh status   say what answers
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# A URL from its variable or the file its _FILE variable names (as the service reads them).
url_of() {
  local name=$1 fallback=$2 file_var="${1}_FILE"
  if [ -n "${!file_var:-}" ]; then sed -e 's/\r$//' "${!file_var}" | head -n 1
  elif [ -n "${!name:-}" ]; then printf '%s\n' "${!name}"
  else printf '%s\n' "$fallback"; fi
}
# "host port" of a URL (brackets of an IPv6 address removed), with the scheme's default port.
# "user password-set" of a URL: whether it logs in as the passwordless postgres role.
db_login() {
  node -e 'const u = new URL(process.argv[1]); process.stdout.write(`${decodeURIComponent(u.username) || "postgres"} ${u.password ? "yes" : "no"}`)' "$1"
}
host_port() {
  node -e 'const u = new URL(process.argv[1]); process.stdout.write(`${u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1"} ${u.port || process.argv[2]}`)' "$1" "$2"
}
is_loopback() { case "$1" in localhost|127.*|::1) return 0;; *) return 1;; esac; }

DB_URL=$(url_of DATABASE_URL postgres://postgres@127.0.0.1:5432/satellite)
REDIS_URL_=$(url_of REDIS_URL redis://127.0.0.1:6379)
read -r PG_HOST PG_PORT <<<"$(host_port "$DB_URL" 5432)"
read -r REDIS_HOST REDIS_PORT <<<"$(host_port "$REDIS_URL_" 6379)"
read -r PG_USER PG_HAS_PASSWORD <<<"$(db_login "$DB_URL")"
# Without the password, which never appears in a message.
DB_WHERE="DATABASE_URL ($PG_HOST:$PG_PORT)"
REDIS_WHERE="REDIS_URL ($REDIS_HOST:$REDIS_PORT)"

as_postgres() { if [ -z "$SUDO" ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

say() { printf 'harbor-dev: %s\n' "$*" >&2; }

pg_answers() { command -v pg_isready >/dev/null && pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
pg_trusts() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -w -tAc 'select 1' >/dev/null 2>&1; }
redis_answers() { command -v redis-cli >/dev/null && [ "$(timeout 5 redis-cli -u "$REDIS_URL_" ping 2>/dev/null)" = "PONG" ]; }
# The local cluster is ours to start and to open to the postgres role on loopback.
pg_is_local_cluster() { is_loopback "$PG_HOST" && [ "$PG_PORT" = 5432 ]; }

install_missing() {
  local missing=()
  command -v pg_ctlcluster >/dev/null || pg_answers || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)  # the tests also start their own
  command -v skopeo >/dev/null || missing+=(skopeo)
  [ -x /usr/bin/time ] || missing+=(time)  # bench:agent's peak RSS (GNU time's maxrss)
  command -v umoci >/dev/null || missing+=(umoci)  # reads the air-gapped archive (satellite export)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v containerd >/dev/null || missing+=(containerd)  # the agent's runtime tests
  command -v podman >/dev/null || missing+=(podman)
  command -v buildah >/dev/null || missing+=(buildah)  # make image, and the image tests
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)  # the image tests' local Node base
  command -v openssl >/dev/null || missing+=(openssl)  # the TLS tests make their own CA
  command -v systemd-analyze >/dev/null && command -v systemd-sysusers >/dev/null || missing+=(systemd)  # the Debian package's test (make deb)
  command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)  # the Sentinel failover test
  [ -x /usr/bin/chromium ] || missing+=(chromium)  # the dashboard's browser tests (test/ui, playwright-core)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

start_postgres() {
  if ! pg_answers && ! pg_is_local_cluster; then
    say "nothing answers at $DB_WHERE: start that PostgreSQL, or unset DATABASE_URL for this machine's"
    exit 1
  fi
  if ! pg_is_local_cluster; then return; fi
  if ! pg_answers; then
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ]; then say "postgresql is installed but has no cluster"; exit 1; fi
    say "starting PostgreSQL $version"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 50); do pg_answers && break; sleep 0.2; done
  fi
  # A URL with a role or a password of its own is the operator's: the cluster's logins are
  # left as they are.
  if [ "$PG_USER" = postgres ] && [ "$PG_HAS_PASSWORD" = no ] && ! pg_trusts; then
    # A fresh Debian cluster asks for a password on TCP. This is a development database on
    # loopback: let the postgres role in from 127.0.0.1 and ::1 without one.
    local hba
    hba=$(as_postgres psql -tAc 'show hba_file')
    say "allowing local TCP logins as postgres without a password ($hba)"
    $SUDO sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
    as_postgres psql -tAc 'select pg_reload_conf()' >/dev/null
    sleep 0.5
    pg_trusts || { say "cannot log in to PostgreSQL as postgres on $PG_HOST:$PG_PORT"; exit 1; }
  fi
}

start_redis() {
  if redis_answers; then return; fi
  if ! is_loopback "$REDIS_HOST"; then
    say "nothing answers at $REDIS_WHERE: start that Redis, or unset REDIS_URL for one on this machine"
    exit 1
  fi
  say "starting Redis on 127.0.0.1:$REDIS_PORT"
  # noeviction: BullMQ's production guide; queue keys must never be evicted.
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --maxmemory-policy noeviction \
    --save "" --appendonly no --dir /tmp --logfile /tmp/satellite-redis.log
  for _ in $(seq 1 50); do redis_answers && break; sleep 0.1; done
  redis_answers || { say "Redis did not start on $REDIS_WHERE; see /tmp/satellite-redis.log"; exit 1; }
}

case "${1:-up}" in
  up)
    install_missing
    start_postgres
    start_redis
    say "PostgreSQL at $DB_WHERE and Redis at $REDIS_WHERE answer"
    ;;
  status)
    pg_answers && echo "postgres: up ($PG_HOST:$PG_PORT)" || echo "postgres: down ($PG_HOST:$PG_PORT)"
    redis_answers && echo "redis: up ($REDIS_HOST:$REDIS_PORT)" || echo "redis: down ($REDIS_HOST:$REDIS_PORT)"
    ;;
  *)
    echo "usage: $0 up|status" >&2
    exit 2
    ;;
esac
