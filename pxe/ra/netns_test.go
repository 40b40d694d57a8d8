package ra

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The network tests run Serve in the test's own network namespace on one
// end of a veth pair, and a solicitor in a namespace the test creates on
// the other end, from a goroutine locked to an OS thread that joined that
// namespace (never unlocked: the thread ends with the goroutine). Only
// link-local IPv6 traffic crosses the pair. pxe/dhcp's tests use the same
// scheme.

type testNet struct {
	ns     string
	hostIf string
	peerIf string
}

var netCounter atomic.Int32

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
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		t.Skip("kernel without IPv6")
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newTestNet creates a namespace and a veth pair with duplicate address
// detection off on both ends (so their link-local addresses are usable at
// once), up, and removes both when the test ends.
func newTestNet(t *testing.T) *testNet {
	t.Helper()
	needNetns(t)
	n := netCounter.Add(1)
	pid := os.Getpid()
	tn := &testNet{
		ns:     fmt.Sprintf("herd-ra-%d-%d", pid, n),
		hostIf: fmt.Sprintf("hrh%d-%d", pid%100000, n),
		peerIf: fmt.Sprintf("hrc%d-%d", pid%100000, n),
	}
	run(t, "ip", "netns", "add", tn.ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", tn.ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", tn.ns, err, out)
		}
	})
	run(t, "ip", "link", "add", tn.hostIf, "type", "veth", "peer", "name", tn.peerIf)
	t.Cleanup(func() {
		if _, err := net.InterfaceByName(tn.hostIf); err == nil {
			if out, err := exec.Command("ip", "link", "del", tn.hostIf).CombinedOutput(); err != nil {
				t.Errorf("ip link del %s: %v\n%s", tn.hostIf, err, out)
			}
		}
	})
	run(t, "ip", "link", "set", tn.peerIf, "netns", tn.ns)
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+tn.hostIf+"/accept_dad", []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "exec", tn.ns, "sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/"+tn.peerIf+"/accept_dad")
	run(t, "ip", "link", "set", tn.hostIf, "up")
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

// inNS runs fn on an OS thread that joined the test namespace.
func (tn *testNet) inNS(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread dies with this goroutine
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
