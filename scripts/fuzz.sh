#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of the repository for a short time
# (default 10s each; a count like 10000x runs each that many times).
# Go's fuzzer takes one target per run.
set -euo pipefail
cd "$(dirname "$0")/.."
t="${1:-10s}"
git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | while read -r f; do
	pkg="./$(dirname "$f")"
	grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r target; do
		echo "fuzz: $pkg $target ($t)"
		go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$t" -fuzzminimizetime 2s
	done
done
