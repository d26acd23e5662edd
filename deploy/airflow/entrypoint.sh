#!/bin/bash
# Entrypoint of the dipro-fhir Airflow image, after dumb-init (PID 1): like the official
# image's, an Airflow subcommand runs as `airflow <subcommand>` (`api-server`, `scheduler`,
# `celery worker --queues default`), while a shell, Python or one of the project's own
# commands runs as given (`bash`, `python`, `dipro-fhir`, `alembic`, `airflow ...`).
set -euo pipefail
case "${1:-}" in
  bash | sh | python | python3 | airflow | dipro-fhir | alembic) exec "$@" ;;
  *) exec airflow "$@" ;;
esac
