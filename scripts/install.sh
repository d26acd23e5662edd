#!/usr/bin/env bash
# Set up a development/test machine for dipro-fhir. Idempotent: safe to run again; steps that
# are already done are skipped.
#
# Expects Debian with python3.11 and Node 20+. Installs:
#   - .venv with torch 2.13.0 (CPU wheel; pinned FIRST so nothing pulls the CUDA build), then the
#     project editable with extras [dev,airflow];
#   - Orthanc + its DICOMweb plugin (Debian packages) if the plugin is missing; the tests run
#     their own Orthanc process, so any service the package starts is stopped and disabled;
#   - the HAPI FHIR test server (dipro_fhir/sandbox/servers/hapi: a Spring Boot jar built with Maven from
#     Maven Central; offline once ~/.m2 holds its dependencies; skipped when up to date);
#   - the second FHIR test server's pinned npm packages (tests/servers/fhir, `npm ci`);
#   - the docker compose plugin, built from its Go module when `docker compose` is missing
#     (deploy/compose/install-compose-plugin.sh; the compose file's test needs only the CLI);
#   - PostgreSQL from Debian if missing, trust auth on loopback, started on 127.0.0.1:5432.
# With --python-only (used by scripts/demo.sh) it stops after the Python environment. With
# --docker it also installs and starts the project's Docker engine and makes the Debian base
# image (scripts/docker.sh up: only when asked; CI does not).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$(pwd)
VENV="$REPO_ROOT/.venv"
TORCH_VERSION=2.13.0
ORTHANC_PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so

say() { printf 'install: %s\n' "$*"; }

# Run as root, or through sudo when we are not root and sudo exists.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    say "need root for: $* (no sudo available)" >&2
    return 1
  fi
}

python_venv() {
  local python
  python=$(command -v python3.11 || command -v python3)
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating .venv with $python"
    "$python" -m venv "$VENV"
  fi
  local have_torch
  have_torch=$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
  if [ "$have_torch" != "$TORCH_VERSION" ]; then
    # An unpinned torch resolves to the CUDA build (GBs); the CPU wheel is found via find-links.
    say "installing torch==$TORCH_VERSION"
    "$VENV/bin/pip" install -q "torch==$TORCH_VERSION"
  fi
  # Reinstall the project only when its dependency list changed since the last run.
  local stamp="$VENV/.dipro-install-stamp" digest
  digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    say "installing the project: pip install -e '.[dev,airflow]'"
    local constraints
    constraints=$(mktemp)
    echo "torch==$TORCH_VERSION" >"$constraints"
    "$VENV/bin/pip" install -q -c "$constraints" -e '.[dev,airflow]'
    rm -f "$constraints"
    echo "$digest" >"$stamp"
  else
    say "python packages up to date"
  fi
}

stop_orthanc_service() {
  # The tests start their own Orthanc with a per-run config; a packaged service would hold
  # port 8042 and a shared database.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    as_root systemctl disable --now orthanc >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/orthanc ]; then
    as_root /etc/init.d/orthanc stop >/dev/null 2>&1 || true
    as_root update-rc.d orthanc disable >/dev/null 2>&1 || true
  fi
}

orthanc() {
  if [ -f "$ORTHANC_PLUGIN" ]; then
    say "orthanc + DICOMweb plugin present"
    return
  fi
  say "installing orthanc orthanc-dicomweb (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null
  stop_orthanc_service
}

fhir_harness() {
  local dir="$REPO_ROOT/tests/servers/fhir"
  if [ -f "$dir/node_modules/.package-lock.json" ] && [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    say "FHIR test server npm packages up to date"
    return
  fi
  command -v npm >/dev/null 2>&1 || { say "npm not found: install Node 20+" >&2; return 1; }
  say "npm ci in tests/servers/fhir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

postgres() {
  # CI and new machines have no PostgreSQL: install it from Debian, trust loopback (the tests
  # and the sandbox connect as `postgres` without a password on 127.0.0.1 only), start it.
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    say "installing postgresql (apt)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local version hba
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    say "postgresql: trust auth for 127.0.0.1 and ::1 in $hba"
    as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null 2>&1 || true
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432; then
    say "postgresql answers on 127.0.0.1:5432"
    return
  fi
  say "starting postgresql $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return
    sleep 0.2
  done
  say "postgresql did not come up on 127.0.0.1:5432" >&2
  return 1
}

python_venv
if [ "${1:-}" = "--python-only" ]; then
  # The embedded demo needs only the Python environment.
  say "done (python only)"
  exit 0
fi
hapi_server() {
  command -v mvn >/dev/null 2>&1 || { say "mvn not found: install Maven 3.8+ and Java 17" >&2; return 1; }
  bash "$REPO_ROOT/scripts/build_hapi.sh"
}

compose_plugin() {
  # tests/unit/test_compose.py renders docker-compose.yml with `docker compose config` (no
  # engine needed); the machines have the docker client without the compose plugin.
  bash "$REPO_ROOT/deploy/compose/install-compose-plugin.sh" >/dev/null ||
    say "WARNING: no \`docker compose\`: the compose tests will fail" >&2
}

# --- browser (for tests/e2e/test_sandbox.py) -----------------------------------------------
# Playwright (the dev extra) cannot download its browsers here: it drives Debian's chromium.
browser() {
  if [ -x /usr/bin/chromium ]; then
    say "chromium present"
  else
    say "installing chromium (apt)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
}

orthanc
postgres
hapi_server
fhir_harness
compose_plugin
browser
if [ "${1:-}" = "--docker" ]; then
  # The Docker stack's engine, base image and CA (docs/docker.md); never by default.
  bash "$REPO_ROOT/scripts/docker.sh" up
fi
say "done"
