#!/usr/bin/env bash
# Build the HAPI FHIR server of the sandbox and the tests into one jar; the build lives with the
# server's sources in the package (dipro_fhir/sandbox/servers/hapi/build.sh), so an installed
# package builds it the same way. Usage: scripts/build_hapi.sh [--force]
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/../dipro_fhir/sandbox/servers/hapi/build.sh" "$@"
