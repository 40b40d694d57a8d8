#!/usr/bin/env bash
# Runs every Go fuzz target in the module for the given time each
# (default 5s), one package at a time as `go test -fuzz` requires.
#
# A failure counts when the fuzzer wrote a reproducer under
# testdata/fuzz/<Target>/. Go 1.26's fuzz coordinator can also fail a run
# with a bare "context deadline exceeded" at the -fuzztime boundary without
# finding anything (golang/go#75804, fixed in Go 1.27): such a run is tried
# once more, and if it happens again it is reported, not failed.
set -euo pipefail
fuzztime=${1:-5s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
count=0
flaked=0

corpus() { ls "$1/testdata/fuzz/$2" 2>/dev/null | sort || true; }

fuzz_once() { # dir pkg target
	go test -run '^$' -fuzz "^${3}\$" -fuzztime "$fuzztime" -fuzzminimizetime 50x "$2" >"$log" 2>&1
}

while read -r dir pkg; do
	targets=$(cat "$dir"/*_test.go 2>/dev/null | grep -o '^func Fuzz[A-Za-z0-9_]*' | sed 's/^func //' | sort -u || true)
	for target in $targets; do
		echo "fuzz $pkg $target ($fuzztime)"
		for try in 1 2; do
			before=$(corpus "$dir" "$target")
			if fuzz_once "$dir" "$pkg" "$target"; then
				break
			fi
			after=$(corpus "$dir" "$target")
			if [ "$before" != "$after" ] || ! grep -q "context deadline exceeded" "$log"; then
				cat "$log"
				echo "fuzz: $pkg $target FAILED: reproducer under $dir/testdata/fuzz/$target" >&2
				exit 1
			fi
			echo "fuzz: $target: Go's fuzz coordinator deadline race (golang/go#75804), no failing input; try $try"
			if [ "$try" = 2 ]; then
				flaked=$((flaked + 1))
			fi
		done
		count=$((count + 1))
	done
done < <(go list -f '{{.Dir}} {{.ImportPath}}' ./...)
echo "fuzz: $count targets ran for $fuzztime each ($flaked hit only Go's deadline race twice)"
