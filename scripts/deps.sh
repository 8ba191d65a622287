#!/bin/sh
# Installs what `make test` needs and the machine lacks: sipp (Debian
# package sip-tester), the load generator the end-to-end suite drives, and
# baresip (baresip-core), the softphone of the interop test.
# Non-interactive; says what to do when it cannot install (not root and
# no sudo).
set -eu
need=""
command -v sipp >/dev/null 2>&1 || need="$need sip-tester"
command -v baresip >/dev/null 2>&1 || need="$need baresip-core"
[ -z "$need" ] && exit 0

echo "installing the Debian packages:$need" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		SUDO="sudo -n"
	else
		echo "error: this user cannot install the packages the tests need." >&2
		echo "       run as root:  apt-get install -y$need" >&2
		exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # word splitting of the package list is wanted
$SUDO apt-get install -y -q $need >/dev/null 2>&1 || {
	$SUDO apt-get update -q >/dev/null
	$SUDO apt-get install -y -q $need >/dev/null
}
command -v sipp >/dev/null 2>&1 || { echo "error: sip-tester installed but no sipp on PATH" >&2; exit 1; }
command -v baresip >/dev/null 2>&1 || { echo "error: baresip-core installed but no baresip on PATH" >&2; exit 1; }
echo "installed:$need" >&2
