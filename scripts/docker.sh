#!/usr/bin/env bash
# A Docker engine of the project's own for the compose stack (docker-compose.yml), on a Debian
# machine without one. Nothing here runs unless asked: scripts/install.sh calls it only with
# --docker, and the default test run never does (scripts/docker_e2e.sh is the opt-in e2e).
#
#   scripts/docker.sh install     docker.io from Debian when dockerd is missing (apt)
#   scripts/docker.sh start       dockerd with all its state under $DIPRO_DOCKER_ROOT
#   scripts/docker.sh stop        stop that dockerd (by its pidfile) and its containerd
#   scripts/docker.sh base        the Debian base image under the tag the Dockerfiles name:
#                                 pulled where a registry answers, else made here with
#                                 debootstrap --variant=minbase + docker import
#   scripts/docker.sh ca [FILE]   copy a CA bundle (default: the host's, Debian's
#                                 ca-certificates bundle) into deploy/ca/ for the builds
#   scripts/docker.sh up          install + start + base + ca: everything before a build
#   scripts/docker.sh env         print the export line for this engine's DOCKER_HOST
#
# State: $DIPRO_DOCKER_ROOT (default /var/lib/dipro-docker): data/ (images, containers,
# volumes), run/ (exec root, containerd), docker.sock, dockerd.pid, dockerd.log. A dockerd of
# the machine's own (/var/run/docker.sock) is neither used nor touched. Needs root (or sudo).
#
# Registry settings for builds pass through from the environment of `docker compose build`
# (docker-compose.yml's build args): PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST,
# TORCH_INDEX_URL, DEBIAN_MIRROR, MAVEN_MIRROR_URL, and the proxy variables Docker passes by
# itself (HTTP_PROXY, HTTPS_PROXY, NO_PROXY). See docs/docker.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$(pwd)
ROOT="${DIPRO_DOCKER_ROOT:-/var/lib/dipro-docker}"
SOCK="$ROOT/docker.sock"
PIDFILE="$ROOT/dockerd.pid"
# The one tag every Dockerfile of the stack builds FROM (a unit test checks they agree).
BASE_TAG=$(sed -n 's/^ARG DEBIAN_IMAGE=//p' deploy/airflow/Dockerfile)
# Where debootstrap fetches from: the Debian mirror this host's apt uses, unless given.
DEBIAN_MIRROR="${DEBIAN_MIRROR:-}"

say() { printf 'docker.sh: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root for: $* (no sudo available)"
  fi
}

export DOCKER_HOST="unix://$SOCK"

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

apt_install() {
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

install_engine() {
  if command -v dockerd >/dev/null 2>&1; then
    say "dockerd present ($(dockerd --version))"
    return
  fi
  say "installing docker.io (apt)"
  # iptables: dockerd's bridge network; the package only recommends it.
  apt_install docker.io iptables
  # Without systemd the package starts no daemon; with it, it may: this script's dockerd
  # is the one the project uses, so a packaged one is left as the machine's owner set it.
  command -v dockerd >/dev/null 2>&1 || die "docker.io installed no dockerd"
}

start_engine() {
  command -v dockerd >/dev/null 2>&1 || install_engine
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && engine_answers; then
    say "dockerd runs (pid $(cat "$PIDFILE")): export DOCKER_HOST=$DOCKER_HOST"
    return
  fi
  as_root mkdir -p "$ROOT/data" "$ROOT/run"
  say "starting dockerd, state under $ROOT"
  # setsid + nohup: the engine outlives this shell; it is stopped by its pid (stop).
  as_root setsid nohup dockerd \
    --data-root "$ROOT/data" \
    --exec-root "$ROOT/run" \
    --host "$DOCKER_HOST" \
    --pidfile "$PIDFILE" \
    >>"$ROOT/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    engine_answers && break
    sleep 0.5
  done
  engine_answers || die "dockerd did not answer on $SOCK within 60 s (see $ROOT/dockerd.log)"
  say "dockerd $(docker version --format '{{.Server.Version}}') (pid $(cat "$PIDFILE")): export DOCKER_HOST=$DOCKER_HOST"
}

stop_engine() {
  if [ ! -f "$PIDFILE" ]; then
    say "no dockerd of ours runs (no $PIDFILE)"
    return
  fi
  local pid
  pid=$(cat "$PIDFILE")
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping dockerd (pid $pid)"
    as_root kill -TERM "$pid"
    # dockerd stops its containers (10 s each at most) and its own containerd, then exits.
    for _ in $(seq 1 120); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -0 "$pid" 2>/dev/null && die "dockerd (pid $pid) still runs after 60 s"
  fi
  as_root rm -f "$PIDFILE"
  say "dockerd stopped"
}

host_mirror() {
  # The first Debian URI of the host's apt sources (deb822 or one-line format).
  { cat /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null || true; } |
    sed -n -E 's#^URIs: *(\S+/debian)/?$#\1#p; s#^deb +(\[[^]]*\] +)?(\S+/debian)/? +bookworm .*#\2#p' |
    head -n1
}

write_base_config() {
  local dir=$1 mirror=$2
  # apt sources as in Debian's official images (deb822), with updates and security.
  rm -f "$dir/etc/apt/sources.list"
  cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # What Debian's official -slim images set (debuerreotype): no apt caches or translations in
  # layers, no docs or man pages, no services started by package scripts inside a build.
  cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$dir/etc/apt/apt.conf.d/docker-no-languages"
  echo 'APT::AutoRemove::SuggestsImportant "false";' >"$dir/etc/apt/apt.conf.d/docker-autoremove-suggests"
  cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 0755 "$dir/usr/sbin/policy-rc.d"
}

make_base() {
  engine_answers || start_engine
  [ -n "$BASE_TAG" ] || die "no 'ARG DEBIAN_IMAGE=' in deploy/airflow/Dockerfile"
  if docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    say "base image $BASE_TAG present"
    return
  fi
  if docker pull "$BASE_TAG" >/dev/null 2>&1; then
    say "base image $BASE_TAG pulled"
    return
  fi
  say "$BASE_TAG cannot be pulled (no registry): making it with debootstrap"
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  local mirror=${DEBIAN_MIRROR:-$(host_mirror)}
  mirror=${mirror:-http://deb.debian.org/debian}
  local dir
  dir=$(as_root mktemp -d "$ROOT/rootfs.XXXXXX")
  local start=$SECONDS
  as_root debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$ROOT/debootstrap.log" 2>&1 ||
    die "debootstrap failed (see $ROOT/debootstrap.log)"
  as_root bash -c "$(declare -f write_base_config); write_base_config '$dir' '$mirror'"
  as_root rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/var/log/*.log
  local made wanted
  made=$(cat "$dir/etc/debian_version")
  wanted=$(sed -E 's/^[^:]+:([0-9]+\.[0-9]+).*/\1/' <<<"$BASE_TAG")
  [ "$made" = "$wanted" ] ||
    say "WARNING: debootstrap made Debian $made, the tag $BASE_TAG names $wanted (bookworm moved on: update ARG DEBIAN_IMAGE)"
  as_root tar -C "$dir" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --message "debootstrap --variant=minbase bookworm $mirror (Debian $made)" \
    - "$BASE_TAG" >/dev/null
  as_root rm -rf "$dir"
  say "base image $BASE_TAG made from Debian $made in $((SECONDS - start)) s ($(docker image inspect --format '{{.Size}}' "$BASE_TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
}

copy_ca() {
  # The builds append every *.crt of deploy/ca/ to the image's CA bundle (docs/docker.md).
  local bundle=${1:-/etc/ssl/certs/ca-certificates.crt}
  [ -f "$bundle" ] || die "no CA bundle at $bundle"
  if cmp -s "$bundle" deploy/ca/site-ca.crt 2>/dev/null; then
    say "deploy/ca/site-ca.crt is $bundle"
    return
  fi
  cp "$bundle" deploy/ca/site-ca.crt
  say "deploy/ca/site-ca.crt <- $bundle ($(grep -c 'BEGIN CERTIFICATE' deploy/ca/site-ca.crt) certificates)"
}

case "${1:-}" in
  install) install_engine ;;
  start) start_engine ;;
  stop) stop_engine ;;
  base) make_base ;;
  ca) copy_ca "${2:-}" ;;
  up) install_engine; start_engine; make_base; copy_ca "${2:-}" ;;
  env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
