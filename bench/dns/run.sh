#!/usr/bin/env bash
# DNS benchmark: Gantry's internal/dns against CoreDNS's file plugin.
#
# Both servers answer the same names (APPS apps x INSTANCES instances under
# gantry.internal: service A, instance A, SRV with glue, NODATA, NXDOMAIN)
# from the same data, are pinned to the same single core with taskset, and
# are driven by dnsperf (Debian) from another core with the same query file.
# Rounds alternate between the two servers so that noise from other work on
# the machine hits both alike; the median round counts.
#
#   bench/dns/run.sh                  # defaults below
#   ROUNDS=5 DURATION=20 bench/dns/run.sh
#
# CoreDNS is built once with the Go toolchain (module proxy) into a cache
# directory outside the repository.
set -euo pipefail

COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
SERVER_CPU=${SERVER_CPU:-1}     # the one core both servers get
CLIENT_CPU=${CLIENT_CPU:-0}     # dnsperf's core
DURATION=${DURATION:-10}        # seconds per max-throughput run
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-4}           # dnsperf -c
OUTSTANDING=${OUTSTANDING:-200} # dnsperf -q
LATENCY_QPS=${LATENCY_QPS:-5000} # fixed rate for the latency percentiles
APPS=${APPS:-100}
INSTANCES=${INSTANCES:-3}
GANTRY_PORT=${GANTRY_PORT:-15353}
COREDNS_PORT=${COREDNS_PORT:-15354}
CACHE=${GANTRY_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gantry-bench}

repo=$(cd "$(dirname "$0")/../.." && pwd)
for tool in go dnsperf dig taskset; do
	command -v "$tool" >/dev/null || { echo "bench/dns: $tool is required (Debian: dnsperf, dnsutils, util-linux)" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
	echo "bench/dns: needs 2 cores (one for the servers, one for dnsperf)" >&2
	exit 1
fi

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

coredns="$CACHE/coredns-$COREDNS_VERSION/coredns"
if [ ! -x "$coredns" ]; then
	echo "building CoreDNS $COREDNS_VERSION into $CACHE (once)..." >&2
	mkdir -p "$(dirname "$coredns")"
	# Built from a directory outside the repository so that our go.mod
	# plays no part; go install pkg@version uses CoreDNS's own go.mod.
	(cd "$work" && GOBIN="$(dirname "$coredns")" GOFLAGS=-mod=mod go install "github.com/coredns/coredns@$COREDNS_VERSION")
fi

echo "building Gantry's bench server..." >&2
(cd "$repo" && go build -o "$work/gantry-dns" ./bench/dns)
"$work/gantry-dns" -apps "$APPS" -instances "$INSTANCES" -zone "$work/db.gantry.internal" -queries "$work/queries.txt"
cat >"$work/Corefile" <<EOF
gantry.internal:$COREDNS_PORT {
    bind 127.0.0.1
    file $work/db.gantry.internal
}
EOF

taskset -c "$SERVER_CPU" "$work/gantry-dns" -apps "$APPS" -instances "$INSTANCES" -listen "127.0.0.1:$GANTRY_PORT" 2>"$work/gantry.log" &
gantry_pid=$!
pids+=("$gantry_pid")
taskset -c "$SERVER_CPU" "$coredns" -conf "$work/Corefile" -quiet >"$work/coredns.log" 2>&1 &
coredns_pid=$!
pids+=("$coredns_pid")

ask() { dig @127.0.0.1 -p "$1" +time=1 +tries=1 "${@:2}"; }
for port in "$GANTRY_PORT" "$COREDNS_PORT"; do
	for _ in $(seq 50); do
		ask "$port" +short gantry.internal SOA >/dev/null 2>&1 && break
		sleep 0.2
	done
	ask "$port" +short gantry.internal SOA >/dev/null || { echo "bench/dns: nothing answers on port $port" >&2; cat "$work"/*.log >&2; exit 1; }
done

# The comparison is only fair if both give the same answers.
for q in "app7.default.svc.gantry.internal A" "app7.default.svc.gantry.internal AAAA" \
	"app7-1.app7.default.svc.gantry.internal A" "_http._tcp.app7.default.svc.gantry.internal SRV" \
	"nope.default.svc.gantry.internal A"; do
	# shellcheck disable=SC2086
	g=$(ask "$GANTRY_PORT" +noall +answer +comments $q | grep -E 'status:|IN' | sed 's/id: [0-9]*//' | sort)
	# shellcheck disable=SC2086
	c=$(ask "$COREDNS_PORT" +noall +answer +comments $q | grep -E 'status:|IN' | sed 's/id: [0-9]*//' | sort)
	if [ "$g" != "$c" ]; then
		printf 'bench/dns: answers differ for %s\n--- gantry\n%s\n--- coredns\n%s\n' "$q" "$g" "$c" >&2
		exit 1
	fi
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# max_run PORT PID -> "qps avg_ms lost cpu% qps_per_cpu_second"
max_run() {
	local before after out
	before=$(cpu_ticks "$2")
	out=$(taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries.txt" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" 2>&1)
	after=$(cpu_ticks "$2")
	awk -v ticks="$((after - before))" -v hz="$hz" -v d="$DURATION" '
		/Queries per second/ {qps = $4}
		/Queries lost/ {lost = $3}
		/Average Latency/ {avg = $4 * 1000}
		END {
			cpu = ticks * 100 / hz / d
			# qps per CPU-second of the server: what the core budget
			# buys, even when other work on the machine takes a share
			# of the core.
			printf "%.0f %.3f %s %.1f %.0f\n", qps, avg, lost, cpu, (cpu > 0 ? qps * 100 / cpu : 0)
		}' <<<"$out"
}

# latency_run PORT -> "p50_ms p99_ms p999_ms" at LATENCY_QPS
latency_run() {
	taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries.txt" -l 5 -Q "$LATENCY_QPS" -v 2>/dev/null |
		awk '/^> /{print $NF}' | sort -g |
		awk '{v[NR] = $1} END {printf "%.3f %.3f %.3f\n", v[int(NR*0.5)]*1000, v[int(NR*0.99)]*1000, v[int(NR*0.999)]*1000}'
}

echo "dnsperf: $DURATION s per run, $CLIENTS clients, $OUTSTANDING outstanding, $(wc -l <"$work/queries.txt") queries in the file; servers on CPU $SERVER_CPU, dnsperf on CPU $CLIENT_CPU" >&2
: >"$work/gantry.runs"
: >"$work/coredns.runs"
for r in $(seq "$ROUNDS"); do
	c=$(max_run "$COREDNS_PORT" "$coredns_pid"); echo "$c" >>"$work/coredns.runs"
	g=$(max_run "$GANTRY_PORT" "$gantry_pid"); echo "$g" >>"$work/gantry.runs"
	echo "round $r: coredns $c | gantry $g   (qps avg_ms lost cpu% qps/cpu-s)" >&2
done
median() { sort -n "$1" | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2)'; }
read -r c_qps c_avg c_lost c_cpu c_eff <<<"$(median "$work/coredns.runs")"
read -r g_qps g_avg g_lost g_cpu g_eff <<<"$(median "$work/gantry.runs")"
read -r c_p50 c_p99 c_p999 <<<"$(latency_run "$COREDNS_PORT")"
read -r g_p50 g_p99 g_p999 <<<"$(latency_run "$GANTRY_PORT")"

echo
echo "DNS: $APPS apps x $INSTANCES instances, one core each (taskset -c $SERVER_CPU), dnsperf $(dnsperf -h 2>&1 | awk '/^Version/{print $2}'), median of $ROUNDS rounds"
row='%-22s %9s %9s %6s %6s %11s | %12s %9s %9s\n'
# shellcheck disable=SC2059
printf "$row" server qps avg_ms lost cpu% qps/cpu-s "p50_ms@${LATENCY_QPS}" p99_ms p99.9_ms
# shellcheck disable=SC2059
printf "$row" "coredns $COREDNS_VERSION (file)" "$c_qps" "$c_avg" "$c_lost" "$c_cpu" "$c_eff" "$c_p50" "$c_p99" "$c_p999"
# shellcheck disable=SC2059
printf "$row" "gantry internal/dns" "$g_qps" "$g_avg" "$g_lost" "$g_cpu" "$g_eff" "$g_p50" "$g_p99" "$g_p999"
ratio=$(awk -v g="$g_qps" -v c="$c_qps" 'BEGIN {printf "%.2f", g / c}')
eff=$(awk -v g="$g_eff" -v c="$c_eff" 'BEGIN {printf "%.2f", (c > 0 ? g / c : 0)}')
echo "qps ratio gantry/coredns: ${ratio}x on the same core (target >= 1.00x); per CPU-second: ${eff}x"
awk -v r="$ratio" 'BEGIN {exit !(r >= 1.0)}' || { echo "bench/dns: below target" >&2; exit 2; }
