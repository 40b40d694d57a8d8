package dhcp

import (
	"net"
	"net/netip"
	"testing"

	"github.com/herdproject/herd/internal/netnstest"
)

// Network tests run the server in the test's own network namespace (the
// host's) on one end of a veth pair, and the client in a network namespace
// the test creates (netnstest), on the other end. The client's sockets are
// opened by a function run inside that namespace (NS.Do) and stay there,
// used from any goroutine afterwards. No traffic leaves the veth pair: the
// server's sockets are bound to the host end, and the only addresses are
// the pair's, in a 10.250.X.0/24 the test holds (netnstest.FreeSubnet).

// testNet is a veth pair between the test's namespace (hostIf, with
// serverIP) and namespace ns (peerIf, no address).
type testNet struct {
	ns       *netnstest.NS
	hostIf   string
	peerIf   string
	prefix   netip.Prefix
	serverIP netip.Addr
}

// newTestNet creates the namespace and the veth pair, up, and removes both
// when the test ends. peerMAC, if not nil, is the client end's MAC. It
// skips the test in -short mode and unless root.
func newTestNet(t *testing.T, peerMAC net.HardwareAddr) *testNet {
	t.Helper()
	if testing.Short() {
		t.Skip("network namespace test skipped in -short mode")
	}
	prefix := netnstest.FreeSubnet(t) // first: held until the pair is gone
	ns := netnstest.New(t, "dhcp")
	v := ns.AddVeth("eth0", nil)
	if peerMAC != nil {
		ns.SetMAC(v.Name, peerMAC)
	}
	tn := &testNet{ns: ns, hostIf: v.Peer, peerIf: v.Name, prefix: prefix}
	tn.serverIP = tn.addr(1)
	netnstest.Run(t, "ip", "addr", "add", netip.PrefixFrom(tn.serverIP, prefix.Bits()).String(), "dev", tn.hostIf)
	return tn
}

// addr returns 10.250.X.host.
func (tn *testNet) addr(host byte) netip.Addr {
	a := tn.prefix.Addr().As4()
	a[3] = host
	return netip.AddrFrom4(a)
}

// addPeerAddr gives the namespace's end address a in the test's subnet.
func (tn *testNet) addPeerAddr(a netip.Addr) {
	tn.ns.AddAddr(tn.peerIf, netip.PrefixFrom(a, tn.prefix.Bits()).String())
}
