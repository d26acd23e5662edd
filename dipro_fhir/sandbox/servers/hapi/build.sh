#!/usr/bin/env bash
# Build the HAPI FHIR server of the sandbox and the tests (this folder) into one executable jar:
#   <this folder>/target/dipro-hapi-test-server.jar
#
# Idempotent: does nothing while the jar is newer than pom.xml and every file under src/.
# Builds offline (mvn -o) when ~/.m2 already holds the dependencies, else online from Maven
# Central (first build: a few hundred MB into ~/.m2). A lock serialises parallel callers
# (pytest workers). Needs Java 17+ and Maven 3.8+.
#
# Usage: bash build.sh [--force]   (from a checkout: bash scripts/build_hapi.sh)
set -euo pipefail

HAPI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JAR="$HAPI_DIR/target/dipro-hapi-test-server.jar"
MVN_ARGS=(-q -B -Dstyle.color=never package -DskipTests)

say() { printf 'build_hapi: %s\n' "$*"; }

up_to_date() {
  [ -f "$JAR" ] || return 1
  [ -z "$(find "$HAPI_DIR/pom.xml" "$HAPI_DIR/src" -newer "$JAR" -print -quit)" ]
}

force=false
[ "${1:-}" = "--force" ] && force=true

mkdir -p "$HAPI_DIR/target"
exec 9>"$HAPI_DIR/target/.build.lock"
flock 9

if ! $force && up_to_date; then
  say "up to date: $JAR"
  exit 0
fi
command -v mvn >/dev/null 2>&1 || { say "mvn not found: install Maven 3.8+ and Java 17" >&2; exit 1; }

cd "$HAPI_DIR"
# Maven would overwrite the jar in place, under any test server running from it; unlinked, the
# old file lives on for those processes.
rm -f "$JAR"
offline_log=$(mktemp)
trap 'rm -f "$offline_log"' EXIT
start=$(date +%s)
if mvn -o "${MVN_ARGS[@]}" >"$offline_log" 2>&1; then
  mode=offline
else
  say "offline build failed (dependencies missing from ~/.m2?); building online"
  mvn "${MVN_ARGS[@]}"
  mode=online
fi
[ -f "$JAR" ] || { say "maven finished but $JAR is missing" >&2; exit 1; }
say "built $JAR ($mode, $(( $(date +%s) - start )) s)"
