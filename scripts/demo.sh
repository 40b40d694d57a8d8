#!/usr/bin/env bash
# make demo: a small QEMU cluster cloned end to end on this machine, as an
# administrator sees it (qemu-tests/demo says what it does). Logs go to
# demo-logs/ (HERD_DEMO_LOGS overrides); the demo names them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/herd-demo" ./qemu-tests/demo
"$tmp/herd-demo" -logs "${HERD_DEMO_LOGS:-$PWD/demo-logs}"
