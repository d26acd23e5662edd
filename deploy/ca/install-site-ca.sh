#!/bin/sh
# Add a site's CA certificates to an image's trust stores: every *.crt beside this script (PEM,
# one or more certificates per file) is split into one file per certificate under
# /usr/local/share/ca-certificates/site/, then Debian's update-ca-certificates adds them to
# /etc/ssl/certs/ca-certificates.crt (pip, requests, curl) and, where ca-certificates-java is
# installed, to Java's keystore (Maven), whose hook takes one certificate per file.
# The Dockerfiles copy this folder to /tmp/site-ca/ and run it; without *.crt files it does
# nothing. `scripts/docker.sh ca [BUNDLE]` puts the host's bundle here as site-ca.crt
# (docs/docker.md).
set -eu
dir=$(dirname "$0")
out=/usr/local/share/ca-certificates/site
mkdir -p "$out"
for file in "$dir"/*.crt; do
  [ -f "$file" ] || continue
  name=$(basename "$file" .crt)
  awk -v prefix="$out/$name" '
    /-----BEGIN CERTIFICATE-----/ { n++; path = sprintf("%s-%03d.crt", prefix, n) }
    n > 0 { print > path }
    /-----END CERTIFICATE-----/ { close(path) }
  ' "$file"
done
count=$(find "$out" -name '*.crt' | wc -l)
if [ "$count" -eq 0 ]; then
  echo "site CA: none in deploy/ca/; the image's own bundle is used"
  exit 0
fi
update-ca-certificates >/dev/null 2>&1
echo "site CA: $count certificate(s) from deploy/ca/ added to the image's trust stores"
