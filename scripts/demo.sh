#!/usr/bin/env bash
# make demo: a 3-node ring on this machine. Three herd nodes listen on
# 127.0.3.1-3 (loopback only), each in its own directory; herd send streams
# a 256 MiB image through them, shows live progress and the per-node table.
# (The QEMU cluster demo replaces this once the boot path exists.)
set -euo pipefail
cd "$(dirname "$0")/.."
herd=$PWD/bin/herd
base=/tmp
[ -d /dev/shm ] && base=/dev/shm
work=$(mktemp -d "$base/herd-demo.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"/node*/disk.img "$work"/golden.img
}
trap cleanup EXIT
echo "== herd demo: 3 nodes on 127.0.3.1-3, logs in $work"
head -c $((256 << 20)) /dev/urandom >"$work/golden.img"
truncate -s 384M "$work/golden.img" # a 128 MiB hole at the end travels as a hole
for i in 1 2 3; do
	mkdir -p "$work/node$i"
	(cd "$work/node$i" && exec "$herd" recv --listen 127.0.3.$i -v >"$work/node$i/stdout.log" 2>"$work/node$i/node.log") &
	pids+=($!)
done
for i in 1 2 3; do
	for _ in $(seq 50); do
		(exec 3<>/dev/tcp/127.0.3.$i/9996) 2>/dev/null && break
		sleep 0.1
	done
done
"$herd" send -H 127.0.3.1,127.0.3.2,127.0.3.3 -I "$work/golden.img" -O disk.img -o "$work/dolly.log" -v
echo
echo "== every node's copy:"
sha256sum "$work/golden.img" "$work"/node*/disk.img
echo "logs: $work/node*/node.log, statistics: $work/dolly.log"
