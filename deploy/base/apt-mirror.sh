#!/bin/sh
# apt-mirror.sh [MIRROR]: point apt of a Debian image at MIRROR (e.g. http://mirror.site/debian,
# its security suite at http://mirror.site/debian-security); without MIRROR, change nothing.
# The Dockerfiles run it first with their DEBIAN_MIRROR build argument (docs/docker.md).
set -eu
mirror="${1:-}"
[ -n "$mirror" ] || exit 0
mirror="${mirror%/}"
for file in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
  [ -f "$file" ] || continue
  sed -i -E \
    -e "s#(^URIs: *|^deb +(\[[^]]*\] +)?)\S+/debian-security/?( |\$)#\1${mirror%/debian}/debian-security\3#" \
    -e "s#(^URIs: *|^deb +(\[[^]]*\] +)?)\S+/debian/?( |\$)#\1${mirror}\3#" \
    "$file"
done
echo "apt-mirror: apt uses $mirror"
