#!/usr/bin/env bash
# dolly-speed.sh N REPS SIZE DOLLY [DOLLY...]: time the dolly binaries
# (herd's dolly link, or a dolly 0.72 you built yourself) on one command
# line, dolly -S SERVER -H CLIENTS -I IMAGE -O OUT, through N clients on
# unshaped veth links: one server and N clients, each in a network
# namespace of its own on a bridge this script creates (10.78.0.1-N+1/24)
# and removes, each client writing to a tmpfs of its own. The binaries
# take turns, REPS times; each run prints the server's wall time and MB/s
# per client (SIZE bytes / wall time), and whether every client wrote the
# image. Needs root, ping (dolly 0.72's -H pings every host), unshare, bc
# and GNU time. Every process is bounded by timeout.
set -uo pipefail
[ $# -ge 4 ] || { echo "usage: $0 N REPS SIZE DOLLY [DOLLY...]" >&2; exit 2; }
N=$1 REPS=$2 SIZE=$3
shift 3
BASE=/tmp/dolly-speed
NS=(sp0)
for i in $(seq 1 "$N"); do NS+=("sp$i"); done
. "$(dirname "$0")/netns-lab.sh"
lab_up spbr 10.78.0 "${NS[@]}"
mkdir -p "$BASE/out"
img=$BASE/in.img
[ "$(stat -c %s "$img" 2>/dev/null)" = "$SIZE" ] || head -c "$SIZE" /dev/urandom >"$img"
want=$(sha256sum "$img" | cut -c1-64)
hosts=$(seq -s, -f "10.78.0.%g" 2 $((N + 1)))

for rep in $(seq 1 "$REPS"); do
	for d in "$@"; do
		dolly=$(cd "$(dirname "$d")" && pwd)/$(basename "$d") # not resolved: herd goes by its name
		tag=$(basename "$(dirname "$dolly")")
		w=$BASE/$tag-$rep
		rm -rf "$w" && mkdir -p "$w"
		for i in $(seq 1 "$N"); do
			ip netns exec "sp$i" unshare -m sh -c "mount -t tmpfs -o size=$((SIZE * 2)) none $BASE/out && cd / &&
				HOSTNAME=10.78.0.$((i + 1)) timeout 120 $dolly -q >$w/c$i.out 2>$w/c$i.err; echo \$? >$w/c$i.rc
				sha256sum $BASE/out/img 2>/dev/null | cut -c1-64 >$w/c$i.sum" &
		done
		sleep 1
		ip netns exec sp0 sh -c "cd $BASE && HOSTNAME=10.78.0.1 /usr/bin/time -f '%e %U %S' -o $w/time timeout 120 $dolly -q -S 10.78.0.1 -H $hosts -I $img -O $BASE/out/img >$w/srv.out 2>$w/srv.err; echo \$? >$w/srv.rc"
		wait
		read -r secs user sys <"$w/time"
		ok=0
		for i in $(seq 1 "$N"); do [ "$(cat "$w/c$i.sum")" = "$want" ] && ok=$((ok + 1)); done
		printf '%-12s N=%d rep %d: %6.2f s  %7.1f MB/s per client  server CPU %.2f s  exit %s  %d/%d clients wrote the image\n' \
			"$tag" "$N" "$rep" "$secs" "$(echo "$SIZE / $secs / 1000000" | bc -l)" "$(echo "$user + $sys" | bc -l)" "$(cat "$w/srv.rc")" "$ok" "$N"
	done
done
