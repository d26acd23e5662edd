#!/usr/bin/env bash
# The compose stack for real (opt-in; `DIPRO_TEST_DOCKER=1 scripts/test.sh` runs it after the
# suite): the project's Docker engine
# (scripts/docker.sh up: docker.io from Debian, dockerd under /var/lib/dipro-docker, the Debian
# base image, the host's CA bundle for the builds), then tests/e2e/test_docker_compose.py with
# DIPRO_DOCKER_E2E=1: build, up with health checks, a synthetic cohort, nights over Airflow's
# REST API, a backfill with a worker restart, a UI screenshot, `down -v`. Figures go to
# var/docker-e2e/figures.json. The engine keeps running afterwards (its image cache makes the
# next build fast): `scripts/docker.sh stop` stops it.
#
#   scripts/docker_e2e.sh [pytest args]         (PYTHON=... to use another virtualenv)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/docker.sh up
eval "$(bash scripts/docker.sh env)"
# The project's virtualenv (scripts/install.sh), or PYTHON.
python=${PYTHON:-.venv/bin/python}
DIPRO_DOCKER_E2E=1 "$python" -m pytest -q -s -p no:cacheprovider tests/e2e/test_docker_compose.py "$@"
