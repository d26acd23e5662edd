#!/bin/bash
# Entrypoint of the dipro-fhir PostgreSQL image (runs as user postgres). On an empty PGDATA:
# initdb with POSTGRES_USER/POSTGRES_PASSWORD (password auth over TCP, trust on the socket
# inside the container), then the *.sql and *.sh of /docker-entrypoint-initdb.d against a
# server that listens on the socket only (so the health check, over TCP, turns healthy only
# after them), as the official image does. Then `postgres` on all interfaces of the container.
set -euo pipefail

initialise() {
  local user="${POSTGRES_USER:-postgres}" pwfile
  pwfile=$(mktemp)
  printf '%s' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}" >"$pwfile"
  initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl -w -o "-c listen_addresses='' -c unix_socket_directories=/run/postgresql" start >/dev/null
  local script
  for script in /docker-entrypoint-initdb.d/*; do
    case "$script" in
      *.sql) echo "init: $script"; psql -v ON_ERROR_STOP=1 -q -h /run/postgresql -U "$user" -d postgres -f "$script" ;;
      *.sh) echo "init: $script"; . "$script" ;;
      *) [ -e "$script" ] && echo "init: ignoring $script" ;;
    esac
  done
  pg_ctl -w -m fast stop >/dev/null
  echo "init: database cluster ready in $PGDATA"
}

if [ "${1:-}" = postgres ]; then
  [ -s "$PGDATA/PG_VERSION" ] || initialise
  shift
  exec postgres -c listen_addresses='*' -c unix_socket_directories=/run/postgresql "$@"
fi
exec "$@"
