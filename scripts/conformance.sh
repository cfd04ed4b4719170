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

echo "== running the suite against http://$ADDR (auth on)"
cd "$WORK"
set +e
OCI_ROOT_URL="http://$ADDR" \
	OCI_NAMESPACE="conformance/repo1" \
	OCI_CROSSMOUNT_NAMESPACE="conformance/repo2" \
	OCI_USERNAME="gantry" \
	OCI_PASSWORD="$TOKEN" \
	OCI_TEST_PULL=1 \
	OCI_TEST_PUSH=1 \
	OCI_TEST_CONTENT_DISCOVERY=1 \
	OCI_TEST_CONTENT_MANAGEMENT=1 \
	OCI_API_BLOBS_UPLOAD_CANCEL=true \
	OCI_RESULTS_DIR="$WORK/results" \
	"$WORK/conformance" >"$WORK/output.txt" 2>"$WORK/stderr.txt"
rc=$?
set -e

# Show every test that did not pass, then the summary.
grep -E ': (FAIL|Error|Skip)$' -A3 "$WORK/output.txt" || true
sed -n '/^OCI Conformance Result/,/^  Total/p' "$WORK/output.txt"

result="$(sed -n 's/^OCI Conformance Result: //p' "$WORK/output.txt")"
count() { sed -n "s/^  $1\.*: *//p" "$WORK/output.txt"; }
fails="$(count FAIL)"; errors="$(count Error)"; skips="$(count Skip)"
if [[ $rc -ne 0 || "$result" != "PASS" && "$result" != "Pass" || "${fails:-1}" != 0 || "${errors:-1}" != 0 ]]; then
	echo "conformance: FAILED (exit $rc, result '$result', $fails failed, $errors errors)" >&2
	cat "$WORK/stderr.txt" >&2
	exit 1
fi
if [[ "${skips:-0}" != 0 && "${ALLOW_SKIPS:-}" == "" ]]; then
	echo "conformance: $skips tests were skipped as unsupported; Gantry claims full support" >&2
	exit 1
fi
echo "conformance: passed ($(count Pass) tests)"
