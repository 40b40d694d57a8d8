#!/usr/bin/env bash
# make demo: a small QEMU cluster cloned end to end on this machine.
#
# Three QEMU nodes with blank disks sit on a bridge inside a network
# namespace of the demo's own (nothing reaches the host's networks). herd
# builds its boot tree and a golden disk image, captures it, and runs herd
# serve on the bridge: the nodes PXE-boot (iPXE) herd's agent, register,
# receive the image through the ring, verify and customize it, and reboot
# from their own disks into a system that prints its hostname, address and
# machine-id. It is the QEMU scenario TestCloneWholeDisk, with herd serve's
# live progress and summary on the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
logs=${HERD_DEMO_LOGS:-$PWD/demo-logs}
rm -rf "$logs"
mkdir -p "$logs"
echo "== herd demo: 3 QEMU nodes (TCG: a few minutes); logs in $logs"
status=0
HERD_DEMO=1 HERD_QEMU_LOGDIR="$logs" go test -count=1 -tags qemu -timeout 30m \
	-run '^TestCloneWholeDisk$' -v ./qemu-tests/ 2>&1 | tee "$logs/demo.log" || status=$?
echo
if [ "$status" -eq 0 ] && grep -q -- '--- PASS: TestCloneWholeDisk' "$logs/demo.log"; then
	echo "== herd demo: every node installed, verified, and booted its own disk as itself:"
	grep -ho 'herd-booted .*' "$logs"/TestCloneWholeDisk/*.console.log | sed 's/^/   /' || true
else
	echo "== herd demo FAILED (exit $status); see $logs/demo.log and the consoles in $logs/TestCloneWholeDisk/"
	[ "$status" -ne 0 ] || status=1
fi
echo "== logs: $logs (herd serve output: serve-1.out/.err; node consoles: n1..n3.console.log)"
exit "$status"
