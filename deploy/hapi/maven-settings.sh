#!/bin/sh
# maven-settings.sh [MIRROR_URL]: make Maven fetch everything through MIRROR_URL (a site's
# Maven Central mirror or proxy repository) via ~/.m2/settings.xml; without it, change nothing.
set -eu
mirror="${1:-}"
[ -n "$mirror" ] || exit 0
mkdir -p "$HOME/.m2"
cat >"$HOME/.m2/settings.xml" <<XML
<settings>
  <mirrors>
    <mirror>
      <id>site-mirror</id>
      <mirrorOf>*</mirrorOf>
      <url>$mirror</url>
    </mirror>
  </mirrors>
</settings>
XML
echo "maven: every repository through $mirror"
