# netns-lab.sh, sourced by the dolly scripts: a switched lab of network
# namespaces. lab_up BRIDGE NET NS... makes the bridge and, for the i-th
# namespace (from 1), a veth "eth0" with NET.i/24 (NET is three octets,
# "10.77.0"), and sets a trap that removes them all on exit (lab_down).
# Root only; it touches nothing but what it creates.

LAB_BRIDGE=
LAB_NS=()

lab_down() {
	for n in "${LAB_NS[@]}"; do ip netns del "$n" 2>/dev/null; done
	[ -z "$LAB_BRIDGE" ] || ip link del "$LAB_BRIDGE" 2>/dev/null
	return 0
}

lab_up() {
	LAB_BRIDGE=$1
	local net=$2 i=1 n
	shift 2
	LAB_NS=("$@")
	trap lab_down EXIT
	lab_down
	ip link add "$LAB_BRIDGE" type bridge && ip link set "$LAB_BRIDGE" up
	for n in "${LAB_NS[@]}"; do
		ip netns add "$n"
		ip link add "v$n" type veth peer name eth0 netns "$n"
		ip link set "v$n" master "$LAB_BRIDGE" up
		ip -n "$n" addr add "$net.$i/24" dev eth0
		ip -n "$n" link set eth0 up
		ip -n "$n" link set lo up
		i=$((i + 1))
	done
}
