package dhcp

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Network tests run the server in the test's own network namespace (the
// host's) on one end of a veth pair, and the client in a network namespace
// the test creates, on the other end. The client side runs on a goroutine
// locked to an OS thread that joined the namespace (setns); its sockets
// stay in that namespace and are used from any goroutine afterwards. The
// thread is never unlocked, so the Go runtime ends it with its goroutine
// and no other goroutine runs in the test namespace. No traffic leaves the
// veth pair: the server's sockets are bound to the host end, and the only
// addresses are the pair's 10.250.X.0/24.

// testNet is a veth pair between the host namespace (hostIf, with
// serverIP) and a namespace ns (peerIf, no address).
type testNet struct {
	ns       string
	hostIf   string
	peerIf   string
	prefix   netip.Prefix
	serverIP netip.Addr
}

var netCounter atomic.Int32

// needNetns skips the test unless it can create network namespaces.
func needNetns(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("network namespace test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and veth pairs")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2) to create network namespaces")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		t.Skip("kernel without network namespaces")
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newTestNet creates the namespace and the veth pair, and removes both
// when the test ends. peerMAC, if not nil, is the client end's MAC.
func newTestNet(t *testing.T, peerMAC net.HardwareAddr) *testNet {
	t.Helper()
	needNetns(t)
	n := netCounter.Add(1)
	pid := os.Getpid()
	x := freeSubnet(t)
	tn := &testNet{
		ns:       fmt.Sprintf("herd-dhcp-%d-%d", pid, n),
		hostIf:   fmt.Sprintf("hdh%d-%d", pid%100000, n),
		peerIf:   fmt.Sprintf("hdc%d-%d", pid%100000, n),
		prefix:   netip.MustParsePrefix(fmt.Sprintf("10.250.%d.0/24", x)),
		serverIP: netip.MustParseAddr(fmt.Sprintf("10.250.%d.1", x)),
	}
	run(t, "ip", "netns", "add", tn.ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", tn.ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", tn.ns, err, out)
		}
	})
	run(t, "ip", "link", "add", tn.hostIf, "type", "veth", "peer", "name", tn.peerIf)
	t.Cleanup(func() {
		// Deleting one end deletes the pair; it may be gone with the
		// namespace already.
		if _, err := net.InterfaceByName(tn.hostIf); err == nil {
			if out, err := exec.Command("ip", "link", "del", tn.hostIf).CombinedOutput(); err != nil {
				t.Errorf("ip link del %s: %v\n%s", tn.hostIf, err, out)
			}
		}
	})
	run(t, "ip", "link", "set", tn.peerIf, "netns", tn.ns)
	if peerMAC != nil {
		run(t, "ip", "-n", tn.ns, "link", "set", tn.peerIf, "address", peerMAC.String())
	}
	run(t, "ip", "addr", "add", tn.serverIP.String()+"/24", "dev", tn.hostIf)
	run(t, "ip", "link", "set", tn.hostIf, "up")
	run(t, "ip", "-n", tn.ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", tn.ns, "link", "set", tn.peerIf, "up")
	tn.waitUp(t)
	return tn
}

// waitUp waits until both ends are operationally up: until then the kernel
// (linkwatch, up to a second late) has not attached their queues, and
// drops what is sent.
func (tn *testNet) waitUp(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		host, _ := os.ReadFile("/sys/class/net/" + tn.hostIf + "/operstate")
		peer, _ := exec.Command("ip", "-n", tn.ns, "-o", "link", "show", tn.peerIf).Output()
		if strings.TrimSpace(string(host)) == "up" && strings.Contains(string(peer), "state UP") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("veth pair %s/%s not up after 5 s: host %q, peer %q", tn.hostIf, tn.peerIf, host, peer)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// addr returns 10.250.X.host.
func (tn *testNet) addr(host byte) netip.Addr {
	a := tn.prefix.Addr().As4()
	a[3] = host
	return netip.AddrFrom4(a)
}

// freeSubnet picks X so that 10.250.X.0/24 is on no interface of the host
// namespace (other tests may run in parallel, in this process or others).
func freeSubnet(t *testing.T) int {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if v4 := ipn.IP.To4(); v4 != nil && v4[0] == 10 && v4[1] == 250 {
				used[int(v4[2])] = true
			}
		}
	}
	start := rand.IntN(250) + 1
	for i := range 250 {
		x := (start+i)%250 + 1
		if !used[x] {
			return x
		}
	}
	t.Fatal("no free 10.250.X.0/24")
	return 0
}

// inNS runs fn on an OS thread that joined the test namespace and returns
// its error. Sockets fn opens live in the namespace.
func (tn *testNet) inNS(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Not unlocked on purpose: the thread dies with this goroutine.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + tn.ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", tn.ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// nsCommand runs a command inside the namespace.
func (tn *testNet) nsCommand(t *testing.T, args ...string) {
	t.Helper()
	run(t, append([]string{"ip", "netns", "exec", tn.ns}, args...)...)
}
