#!/usr/bin/env bash
# Runs every Go fuzz target in the module for the given time each
# (default 5s), one package at a time as `go test -fuzz` requires.
set -euo pipefail
fuzztime=${1:-5s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
count=0
while read -r dir pkg; do
	targets=$(cat "$dir"/*_test.go 2>/dev/null | grep -o '^func Fuzz[A-Za-z0-9_]*' | sed 's/^func //' | sort -u || true)
	for target in $targets; do
		echo "fuzz $pkg $target ($fuzztime)"
		# The archive targets touch the file system per input: bound the
		# minimisation of new inputs so a short run stays short.
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 50x "$pkg" >"$log" 2>&1; then
			cat "$log"
			exit 1
		fi
		count=$((count + 1))
	done
done < <(go list -f '{{.Dir}} {{.ImportPath}}' ./...)
echo "fuzz: $count targets ran for $fuzztime each"
