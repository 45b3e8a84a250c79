#!/usr/bin/env bash
# Prints the Debian mirror this machine's apt uses (for debootstrap in the
# image and systemd tests): $ARTIFACT_DEBIAN_MIRROR if set, else the first
# URL of /etc/apt/sources.list* that serves the main archive (not -security).
set -euo pipefail

if [[ -n ${ARTIFACT_DEBIAN_MIRROR:-} ]]; then
  echo "$ARTIFACT_DEBIAN_MIRROR"
  exit 0
fi
# deb822 sources (URIs: ...) or one-line sources (deb URL SUITE ...).
m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
  sed -n -E -e 's/^URIs:[[:space:]]*([^[:space:]]+).*/\1/p' \
             -e 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' |
  grep -E '/debian/?$' | head -n 1 || true)
if [[ -z $m ]]; then
  echo "debian-mirror: no Debian mirror in /etc/apt/sources.list*: set ARTIFACT_DEBIAN_MIRROR" >&2
  exit 1
fi
echo "${m%/}"
