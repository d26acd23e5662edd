#!/usr/bin/env bash
# Make `docker compose` work where only the docker client is installed (as on this project's
# build machines: no engine, no compose plugin). tests/unit/test_compose.py reads
# `docker compose config`, which needs no engine, only the plugin. Does nothing when
# `docker compose version` already answers. Otherwise builds Docker Compose from its Go module
# (github.com/docker/compose/v2, from the Go module proxy: `go install ...@version` refuses it
# because its go.mod has exclude directives, so the module is downloaded and built in place)
# and puts it where the docker client looks for plugins: ${DOCKER_CONFIG:-~/.docker}/cli-plugins.
# Needs Go; the first build takes a few minutes.
set -euo pipefail

version="${COMPOSE_VERSION:-v2.40.3}"
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

if ! command -v docker >/dev/null; then
  echo "install-compose-plugin: no docker client; nothing to do" >&2
  exit 0
fi
if docker compose version >/dev/null 2>&1; then
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "install-compose-plugin: \`docker compose\` is missing and Go is not installed" >&2
  exit 1
fi

module="github.com/docker/compose/v2@$version"
source_dir="$(go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$source_dir" ]]; then
  echo "install-compose-plugin: could not download $module" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -R "$source_dir" "$work/src"
chmod -R u+w "$work/src"
mkdir -p "$plugins"
(
  cd "$work/src"
  CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$version" \
    -o "$work/docker-compose" ./cmd
)
install -m 0755 "$work/docker-compose" "$plugins/docker-compose"
docker compose version
