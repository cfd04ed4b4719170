#!/usr/bin/env bash
# Runs the OCI distribution-spec conformance suite against Gantry's
# registry with authentication on, and fails unless every test passes.
#
#   scripts/conformance.sh            # from the repository root
#   KEEP=1 scripts/conformance.sh     # keep the work directory (results/report.html)
#
# The suite is built in a throwaway module so that it never enters our
# go.mod. Needs Go and the module proxy (or a warm module cache).
set -euo pipefail

CONFORMANCE_VERSION="${CONFORMANCE_VERSION:-v0.0.0-20260831232431-97274622c111}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d -t gantry-conformance.XXXXXX)"
SERVER_PID=""

cleanup() {
	if [[ -n "$SERVER_PID" ]]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	if [[ "${KEEP:-}" == "" ]]; then
		rm -rf "$WORK"
	else
		echo "work directory kept: $WORK" >&2
	fi
}
trap cleanup EXIT

echo "== building the conformance suite ($CONFORMANCE_VERSION)"
mkdir -p "$WORK/suite"
(
	cd "$WORK/suite"
	go mod init gantry-conformance-runner >/dev/null 2>&1
	go get "github.com/opencontainers/distribution-spec/conformance@$CONFORMANCE_VERSION" >/dev/null
	go build -o "$WORK/conformance" github.com/opencontainers/distribution-spec/conformance
)

echo "== building and starting the registry"
(cd "$ROOT" && go build -o "$WORK/registry" ./internal/registry/testdata/confserver)
TOKEN="conformance-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$WORK/registry" -data "$WORK/data" -token "$TOKEN" -addr-file "$WORK/addr" 2>"$WORK/registry.log" &
SERVER_PID=$!
for _ in $(seq 100); do
	[[ -s "$WORK/addr" ]] && break
	sleep 0.1
done
[[ -s "$WORK/addr" ]] || { echo "registry did not start:" >&2; cat "$WORK/registry.log" >&2; exit 1; }
ADDR="$(cat "$WORK/addr")"

# Auth must be on: an anonymous request gets 401 with a Bearer challenge.
status="$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/v2/")"
challenge="$(curl -s -D - -o /dev/null "http://$ADDR/v2/" | tr -d '\r' | grep -i '^www-authenticate:' || true)"
if [[ "$status" != 401 || "$challenge" != *Bearer* ]]; then
	echo "registry at $ADDR does not require authentication (status $status, challenge '$challenge')" >&2
	exit 1
fi

# run_suite LABEL [VAR=VALUE...] runs the suite once with the given
# settings on top of the registry address and credentials, and fails
# unless every test passed and none was skipped as unsupported.
total=0
run_suite() {
	local label="$1" out="$WORK/$1"
	shift
	mkdir -p "$out"
	echo "== $label: running the suite against http://$ADDR (auth on)"
	set +e
	(cd "$out" && env "$@" OCI_USERNAME="gantry" OCI_PASSWORD="$TOKEN" OCI_RESULTS_DIR="$out/results" \
		"$WORK/conformance" >"$out/output.txt" 2>"$out/stderr.txt")
	local rc=$?
	set -e
	# Show every test that did not pass, then the summary.
	grep -E ': (FAIL|Error|Skip)$' -A3 "$out/output.txt" || true
	sed -n '/^OCI Conformance Result/,/^  Total/p' "$out/output.txt"
	local result fails errors skips passes
	count() { sed -n "s/^  $1\.*: *//p" "$out/output.txt"; }
	result="$(sed -n 's/^OCI Conformance Result: //p' "$out/output.txt")"
	fails="$(count FAIL)"; errors="$(count Error)"; skips="$(count Skip)"; passes="$(count Pass)"
	if [[ $rc -ne 0 || "$result" != "Pass" || "${fails:-1}" != 0 || "${errors:-1}" != 0 ]]; then
		echo "conformance ($label): FAILED (exit $rc, result '$result', ${fails:-?} failed, ${errors:-?} errors)" >&2
		cat "$out/stderr.txt" >&2
		exit 1
	fi
	if [[ "${skips:-0}" != 0 ]]; then
		echo "conformance ($label): $skips tests were skipped as unsupported; Gantry claims full support" >&2
		exit 1
	fi
	echo "conformance ($label): passed ($passes tests)"
	total=$((total + passes))
}

# OCI 1.1 with the suite's legacy variables, as issue 4 specifies them,
# plus upload cancellation (off by default in the 1.1 profile).
run_suite "oci-1.1" \
	OCI_ROOT_URL="http://$ADDR" \
	OCI_NAMESPACE="conformance/repo1" \
	OCI_CROSSMOUNT_NAMESPACE="conformance/repo2" \
	OCI_TEST_PULL=1 \
	OCI_TEST_PUSH=1 \
	OCI_TEST_CONTENT_DISCOVERY=1 \
	OCI_TEST_CONTENT_MANAGEMENT=1 \
	OCI_API_BLOBS_UPLOAD_CANCEL=true

# The suite's development profile: digest headers required, tags given
# as parameters of a push by digest.
run_suite "oci-1.1+dev" \
	OCI_VERSION=dev \
	OCI_REGISTRY="$ADDR" \
	OCI_TLS=disabled \
	OCI_REPO1="conformance-dev/repo1" \
	OCI_REPO2="conformance-dev/repo2"

echo "conformance: all passed ($total tests)"
