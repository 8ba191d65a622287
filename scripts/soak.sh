#!/bin/sh
# The soak of issue 9 (internal/e2e/soak_test.go): mixed SIPp traffic
# (answered, cancelled by the caller, busy, no answer, re-INVITE) through
# a freshly built ringroute for $SOAK (30m by default), a config reload
# every 10 s, RSS and goroutines sampled; the summary goes to
# bench/results/soak-DATE.txt and is printed. `make soak` runs this.
#
#   scripts/soak.sh                 # 30 minutes
#   SOAK=2m scripts/soak.sh         # the CI form
#   RINGROUTE_E2E_KEEP=1 SOAK=5m scripts/soak.sh   # keep the logs
#
# `make test` runs TestSoak too, in a short form (25 s of the same traffic,
# no RSS or goroutine growth judged, summary only logged) unless SOAK=off.
#
# The go test timeout is the soak plus 15 minutes (SOAK_TIMEOUT overrides
# it). Needs sipp (scripts/deps.sh installs it).
set -eu
cd "$(dirname "$0")/.."
SOAK="${SOAK:-30m}"
export SOAK
if [ -z "${SOAK_TIMEOUT:-}" ]; then
	# A Go duration of hours, minutes and seconds, plus 15 minutes.
	secs=$(echo "$SOAK" | awk '{
		s = $0; t = 0
		while (match(s, /^[0-9.]+(h|ms|m|s)/)) {
			part = substr(s, 1, RLENGTH); s = substr(s, RLENGTH + 1)
			n = part + 0
			if (part ~ /ms$/) t += n / 1000; else if (part ~ /h$/) t += n * 3600; else if (part ~ /m$/) t += n * 60; else t += n
		}
		if (s != "") { print "bad"; exit }
		printf "%d", t
	}')
	if [ "$secs" = "bad" ]; then
		echo "SOAK=$SOAK is not a duration like 30m or 1h30m" >&2
		exit 2
	fi
	SOAK_TIMEOUT="$((secs + 900))s"
fi
mkdir -p bench/results
exec ${GO:-go} test -count=1 -v -timeout "$SOAK_TIMEOUT" -run '^TestSoak$' ./internal/e2e/
