#!/usr/bin/env bash
# Starts what the project needs locally, but only what does not already answer:
# PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379. Installs missing Debian
# packages first (postgresql, redis-server, the test peers skopeo, docker-registry,
# containerd and podman, chromium for the dashboard, and buildah and mmdebstrap for the images).
#
#   harbor-dev/deps.sh up       install what is missing, start what does not answer
#   harbor-dev/deps.sh status   say what answers
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_PORT=6379

as_postgres() { if [ -z "$SUDO" ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

say() { printf 'harbor-dev: %s\n' "$*" >&2; }

pg_answers() { command -v pg_isready >/dev/null && pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
pg_trusts() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -w -tAc 'select 1' >/dev/null 2>&1; }
redis_answers() { command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

install_missing() {
  local missing=()
  command -v pg_ctlcluster >/dev/null || pg_answers || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)  # the tests also start their own
  command -v skopeo >/dev/null || missing+=(skopeo)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v containerd >/dev/null || missing+=(containerd)  # the agent's runtime tests
  command -v podman >/dev/null || missing+=(podman)
  command -v buildah >/dev/null || missing+=(buildah)  # make image, and the image tests
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)  # the image tests' local Node base
  [ -x /usr/bin/chromium ] || missing+=(chromium)  # the dashboard's browser tests (test/ui, playwright-core)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

start_postgres() {
  if ! pg_answers; then
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ]; then say "postgresql is installed but has no cluster"; exit 1; fi
    say "starting PostgreSQL $version"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 50); do pg_answers && break; sleep 0.2; done
  fi
  if ! pg_trusts; then
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
  say "starting Redis on 127.0.0.1:$REDIS_PORT"
  # noeviction: BullMQ's production guide; queue keys must never be evicted.
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --maxmemory-policy noeviction \
    --save "" --appendonly no --dir /tmp --logfile /tmp/satellite-redis.log
  for _ in $(seq 1 50); do redis_answers && break; sleep 0.1; done
  redis_answers || { say "Redis did not start; see /tmp/satellite-redis.log"; exit 1; }
}

case "${1:-up}" in
  up)
    install_missing
    start_postgres
    start_redis
    say "PostgreSQL on $PG_HOST:$PG_PORT and Redis on 127.0.0.1:$REDIS_PORT answer"
    ;;
  status)
    pg_answers && echo "postgres: up" || echo "postgres: down"
    redis_answers && echo "redis: up" || echo "redis: down"
    ;;
  *)
    echo "usage: $0 up|status" >&2
    exit 2
    ;;
esac
