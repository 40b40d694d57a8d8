#!/usr/bin/env bash
# dolly-side-by-side.sh DOLLY [TAG]: run the dolly binary DOLLY (herd's
# dolly link, or a dolly 0.72 you built yourself) through the command
# lines of docs/dolly-compat.md, one server and three clients, each in a
# network namespace of its own on a bridge this script creates
# (10.77.0.1-4/24) and removes. Clients write to a tmpfs of their own.
# Prints, per case, each side's exit status, the first bytes of the
# SHA-256 of what each client wrote, and their last lines; keeps the
# whole output under /tmp/dolly-sbs/TAG. Needs root, ping (dolly 0.72's
# -H pings every host) and unshare. Every process is bounded by timeout.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DOLLY [TAG]" >&2; exit 2; }
DOLLY=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") # not resolved: herd goes by its name
TAG=${2:-$(basename "$(dirname "$DOLLY")")}
[ -x "$DOLLY" ] || { echo "$0: $1: not an executable" >&2; exit 2; }
BASE=/tmp/dolly-sbs
W=$BASE/$TAG
. "$(dirname "$0")/netns-lab.sh"
lab_up sbsbr 10.77.0 sbs0 sbs1 sbs2 sbs3
rm -rf "$W" && mkdir -p "$W" "$BASE/out"

# The same input for every run (an odd size: the tail of the stream).
[ -s "$BASE/in.img" ] || head -c 3000001 /dev/urandom >"$BASE/in.img"
cat >"$BASE/hosts" <<EOF
127.0.0.1 localhost
10.77.0.1 srv
10.77.0.2 clients
10.77.0.3 firstclient
10.77.0.4 server
EOF
# dolly 0.72's format: infile, outfile, the clients, endconfig.
cat >"$BASE/a.cfg" <<EOF
infile $BASE/in.img
outfile $BASE/out/img
10.77.0.2
10.77.0.3
10.77.0.4
endconfig
EOF
# Clients called like keywords.
cat >"$BASE/kw.cfg" <<EOF
infile $BASE/in.img
outfile $BASE/out/img
clients
firstclient
server
endconfig
EOF

client() { # NS HOSTNAME ARGS
	local ns=$1 hn=$2 args=$3
	ip netns exec "$ns" unshare -m sh -c "mount -t tmpfs none $BASE/out && mount --bind $BASE/hosts /etc/hosts && cd / &&
		HOSTNAME=$hn timeout 60 $DOLLY $args >$W/$CASE-$ns.out 2>$W/$CASE-$ns.err; echo \$? >$W/$CASE-$ns.rc
		sha256sum $BASE/out/img 2>/dev/null | cut -c1-16 >$W/$CASE-$ns.sum" &
}
server() { # HOSTNAME ARGS
	ip netns exec sbs0 unshare -m sh -c "mount --bind $BASE/hosts /etc/hosts && cd $BASE &&
		HOSTNAME=$1 timeout 60 $DOLLY $2 >$W/$CASE-srv.out 2>$W/$CASE-srv.err; echo \$? >$W/$CASE-srv.rc"
}
run() { # CASE SERVER-HOSTNAME SERVER-ARGS CLIENT-ARGS; DEAD=sbsN starts no client there
	CASE=$1
	client sbs1 "${HN1:-10.77.0.2}" "$4"
	client sbs2 "${HN2:-10.77.0.3}" "$4"
	[ "${DEAD:-}" = sbs3 ] || client sbs3 "${HN3:-10.77.0.4}" "$4"
	sleep 2
	server "$2" "$3"
	wait
	echo "== $CASE: dolly $3"
	echo "   server exit $(cat "$W/$CASE-srv.rc"): $(tail -2 "$W/$CASE-srv.err" | tr '\n' '|')"
	for n in sbs1 sbs2 sbs3; do
		[ -e "$W/$CASE-$n.rc" ] || { echo "   $n (no client)"; continue; }
		echo "   $n exit $(cat "$W/$CASE-$n.rc") sha256 $(cat "$W/$CASE-$n.sum"): $(tail -1 "$W/$CASE-$n.err")"
	done
}

echo "input sha256 $(sha256sum "$BASE/in.img" | cut -c1-16)"
run samefile 10.77.0.1 "-v -S 10.77.0.1 -o $W/samefile.log -f $BASE/a.cfg" "-v -f $BASE/a.cfg"
run openqa 10.77.0.1 "-v -r 40 -S 10.77.0.1 -H 10.77.0.2,10.77.0.3,10.77.0.4 -I $BASE/in.img -O $BASE/out/img" "-v"
DEAD=sbs3 run dead 10.77.0.1 "-S 10.77.0.1 -r 3 -o $W/dead.log -H 10.77.0.2,10.77.0.3,10.77.0.4 -I $BASE/in.img -O $BASE/out/img" ""
HN1=clients HN2=firstclient HN3=server run keywords srv "-v -s -f $BASE/kw.cfg" "-v"
