#!/bin/sh
# Installs what `make test` needs and the machine lacks: sipp, from the
# Debian package sip-tester. Non-interactive; says what to do when it
# cannot install (not root and no sudo).
set -eu
if command -v sipp >/dev/null 2>&1; then
	exit 0
fi
echo "sipp is missing: installing the Debian package sip-tester" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		SUDO="sudo -n"
	else
		echo "error: sipp is not installed and this user cannot install it." >&2
		echo "       run as root:  apt-get install -y sip-tester" >&2
		exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q sip-tester >/dev/null 2>&1 || {
	$SUDO apt-get update -q >/dev/null
	$SUDO apt-get install -y -q sip-tester >/dev/null
}
command -v sipp >/dev/null 2>&1 || { echo "error: sip-tester installed but no sipp on PATH" >&2; exit 1; }
echo "installed: $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1)" >&2
