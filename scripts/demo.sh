#!/usr/bin/env bash
# The README's first command: install the Python environment (idempotent), then run the
# embedded demo (synthetic cohort, demo checkpoint, the nightly DAG, a report). Arguments go
# to `dipro-fhir demo` (for example --patients 60 or --workdir /tmp/demo).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh --python-only
exec .venv/bin/dipro-fhir demo "$@"
