package ra

import (
	"os"
	"testing"

	"github.com/herdproject/herd/internal/netnstest"
)

// The network tests run Serve in the test's own network namespace on one
// end of a veth pair, and a solicitor in a namespace the test creates
// (netnstest) on the other end, from a function run inside it (NS.Do).
// Only link-local IPv6 traffic crosses the pair. pxe/dhcp's tests use the
// same scheme.

// testNet is a veth pair between the test's namespace (hostIf) and
// namespace ns (peerIf).
type testNet struct {
	ns     *netnstest.NS
	hostIf string
	peerIf string
}

// newTestNet creates a namespace and a veth pair, up, whose ends' link-local
// addresses are done with duplicate address detection (so usable), and
// removes both when the test ends. It skips the test in -short mode,
// unless root, and on a kernel without IPv6.
func newTestNet(t *testing.T) *testNet {
	t.Helper()
	if testing.Short() {
		t.Skip("network namespace test skipped in -short mode")
	}
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		t.Skip("kernel without IPv6")
	}
	ns := netnstest.New(t, "ra")
	v := ns.AddVeth("eth0", nil)
	v.WaitDAD()
	return &testNet{ns: ns, hostIf: v.Peer, peerIf: v.Name}
}
