#!/bin/sh
# Installs the Debian packages named as arguments that are not installed yet (apt-get, through sudo when not
# root); says what to install by hand where there is no dpkg. Used by the Makefile: `make gui`, `make test`.
set -eu

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "not a Debian/Ubuntu system: install the equivalents of these packages yourself: $*" >&2
    exit 0
fi

missing=""
for package in "$@"; do
    # "ii": installed; a removed package can still be known to dpkg with its configuration files only
    if ! dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null | grep -q '^ii'; then
        missing="$missing $package"
    fi
done
[ -z "$missing" ] && exit 0

echo "installing Debian packages:$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
# shellcheck disable=SC2086  # $missing: one word per package
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
