#!/bin/sh
# Zero-downtime rollouts under a heavier load than the e2e test's 300
# requests/s: runs e2e's TestZeroDowntimeRollouts (a real gantry up with its
# own containerd; rolling update v1 -> v2, rollout undo, a v3 that never gets
# ready and is rolled back) once per rate, with loadgen's event loop on 64
# connections, and prints one line per rate.
#
#   bench/rollout/run.sh                 # 1000 3000 8000 requests/s
#   bench/rollout/run.sh 500 2000        # these rates
#
# Needs what the e2e tests need (root, containerd, runc, iptables, CNI
# plugins: scripts/setup.sh). Exits 1 if any run failed a request or the test.
set -eu
cd "$(dirname "$0")/../.."
[ $# -gt 0 ] || set -- 1000 3000 8000
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go test -c -o "$out/e2e.test" ./e2e
status=0
printf '%-8s %9s %8s %9s %7s %9s %9s %10s %10s %10s  %s\n' \
	rate sent failed achieved update undo p50 p99 p99.9 "gen.lag" result
for rate in "$@"; do
	log="$out/run-$rate.log"
	if (cd e2e && GANTRY_E2E_ROLLOUT_RATE="$rate" "$out/e2e.test" \
		-test.run '^TestZeroDowntimeRollouts$' -test.count 1 -test.v) >"$log" 2>&1; then
		result=PASS
	else
		result=FAIL
		status=1
	fi
	if grep -q -- '--- SKIP' "$log"; then
		result="SKIP ($(grep -A1 -- '--- SKIP' "$log" | tail -1 | sed 's/^ *//'))"
		status=1
	fi
	awk -v rate="$rate" -v result="$result" '
		/rolling update v1 → v2: done in/ { update = $NF }
		/rollout undo v2 → v1: done in/   { undo = $NF }
		/load: sent/ { sent = $4; achieved = $6; sub(/\/s$/, "", achieved); failed = $NF }
		/^ *latency p50/ { p50 = $3; p99 = $7; p999 = $9; lag = $NF; sub(/\)$/, "", lag) }
		END {
			printf "%-8s %9s %8s %9s %7s %9s %9s %10s %10s %10s  %s\n", rate, sent, failed, achieved, update, undo, p50, p99, p999, lag, result
		}' "$log"
	if [ "$result" != PASS ]; then
		echo "--- log of the run at $rate requests/s:" >&2
		tail -40 "$log" >&2
	fi
done
echo "(sent/failed: requests over the three rollouts and the pauses between them; update/undo: apply or"
echo " undo until all 3 instances run the target version and are ready; latency counts from when each"
echo " request was due; gen.lag: the generator's worst delay in sending, a sign of the machine being the limit)"
exit $status
