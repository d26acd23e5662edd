#!/usr/bin/env bash
# The dipro-fhir stack as local processes, without Docker: HAPI FHIR, Orthanc (DICOMweb),
# PostgreSQL (results) and Airflow 3 (api-server, scheduler, dag-processor), on loopback.
#
#   bash scripts/sandbox.sh up        # start (idempotent); prints the UI address and login
#   bash scripts/sandbox.sh status    # what runs, and where
#   bash scripts/sandbox.sh down      # stop every process; --purge also deletes the data
#   bash scripts/sandbox.sh env       # shell lines: dipro-fhir on PATH, pointed at the sandbox
#   bash scripts/sandbox.sh airflow backfill create --dag-id dipro_nightly ...
#
# Options before the command: --dir DIR (default var/sandbox). `up --help` lists the rest
# (ports, cohort size, checkpoint). Needs what scripts/install.sh sets up.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$REPO_ROOT/.venv/bin/python"
if [ ! -x "$PYTHON" ]; then
  echo "sandbox: $PYTHON is missing: run bash scripts/install.sh first" >&2
  exit 1
fi
exec "$PYTHON" -m dipro_fhir.sandbox "$@"
