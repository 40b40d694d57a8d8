// Package netnstest gives a test network namespaces of its own: a
// namespace named after the test process, bridges, tap devices and veth
// pairs inside it (to another namespace, or to the test's own), MAC
// addresses, a private IPv4 subnet (FreeSubnet), commands and Go functions
// run inside it, and all of it removed at the test's cleanup, also when
// the test fails.
//
// It drives iproute2 (ip) and needs root: New skips the test when either
// is missing. Every command it runs is bounded by CommandTimeout.
//
// Deleting a namespace (ip netns del) kills nothing: a process still
// running inside keeps the namespace alive under no name. Start the
// processes that live in a namespace after New, and end them in cleanups
// registered after it (t.Cleanup runs last-in first-out), so they are gone
// when the namespace is deleted; the namespace's cleanup reports any that
// remain as a test error.
package netnstest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// CommandTimeout bounds every ip command the package runs.
const CommandTimeout = 30 * time.Second

// runDir is where ip netns keeps the named namespaces (NETNS_RUN_DIR).
const runDir = "/var/run/netns"

// maxTries bounds the names New tries when herd-<tag>-<pid> is taken.
const maxTries = 64

// LinkTimeout bounds the waits for a link: AddVeth's for both ends to be
// up, WaitDAD's for duplicate address detection.
const LinkTimeout = 10 * time.Second

// NS is a network namespace the test created.
type NS struct {
	// Name is the namespace's name for ip netns: herd-<tag>-<pid>, or
	// herd-<tag>-<pid>-<n> when the test process made one of that tag
	// before.
	Name string

	t testing.TB
}

// veths counts the veth pairs this process made, for unique peer names.
var veths atomic.Int64

// Available reports why namespaces cannot be made here (not root, no ip
// command), or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("no ip command: apt-get install iproute2")
	}
	return nil
}

// New creates namespace herd-<tag>-<pid> with its loopback up, and deletes
// it at cleanup. It skips the test when Available says no. tag should be
// short and unique per test package ("qemu", "pxe"); a second namespace
// of the same tag in one process gets a "-2" suffix, and so on.
func New(t testing.TB, tag string) *NS {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("netnstest: %v", err)
	}
	sweepOnce.Do(sweepLeftovers)
	base := fmt.Sprintf("herd-%s-%d", tag, os.Getpid())
	for i := 1; i <= maxTries; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		out, err := command(context.Background(), "ip", "netns", "add", name)
		if err != nil {
			if strings.Contains(out, "exists") {
				continue // ours from earlier in this process, or a leftover
			}
			t.Fatalf("netnstest: ip netns add %s: %v\n%s", name, err, out)
		}
		n := &NS{Name: name, t: t}
		t.Cleanup(n.remove)
		n.IP("link", "set", "lo", "up")
		return n
	}
	t.Fatalf("netnstest: namespaces %s to %s-%d all exist", base, base, maxTries)
	return nil
}

var sweepOnce sync.Once

// leftoverName matches the namespaces New names: herd-<tag>-<pid>[-<n>].
var leftoverName = regexp.MustCompile(`^herd-[a-z0-9]+-([0-9]+)(-[0-9]+)?$`)

// sweepLeftovers deletes the namespaces of test processes that are gone
// (killed by go test's -timeout, say, before their cleanups ran) and that
// hold no process: they were this package's, and nobody uses them.
func sweepLeftovers() {
	entries, err := os.ReadDir(runDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		m := leftoverName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
			continue // ours, or its process still exists
		}
		if out, err := command(context.Background(), "ip", "netns", "pids", e.Name()); err != nil || strings.TrimSpace(out) != "" {
			continue
		}
		_, _ = command(context.Background(), "ip", "netns", "del", e.Name())
	}
}

// remove deletes the namespace, first reporting processes still inside.
func (n *NS) remove() {
	if out, err := command(context.Background(), "ip", "netns", "pids", n.Name); err == nil {
		var pids []string
		for _, p := range strings.Fields(out) {
			// The test process itself is listed when one of its threads
			// is still inside (Do's thread that could not go back).
			if p != strconv.Itoa(os.Getpid()) {
				pids = append(pids, p)
			}
		}
		if len(pids) > 0 {
			n.t.Errorf("netnstest: processes still in namespace %s at cleanup: %s (the test did not end them)", n.Name, strings.Join(pids, " "))
		}
	}
	if out, err := command(context.Background(), "ip", "netns", "del", n.Name); err != nil {
		n.t.Errorf("netnstest: ip netns del %s: %v\n%s", n.Name, err, out)
	}
}

// command runs a set-up command bounded by CommandTimeout and returns its
// combined output.
func command(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (after %v)", ctx.Err(), CommandTimeout)
	}
	return string(out), err
}

// Run runs a set-up command in the test's own namespace (e.g. to give the
// host end of a veth pair an address), bounded by CommandTimeout, and
// returns its output; it fails the test when the command fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := command(context.Background(), name, args...)
	if err != nil {
		t.Fatalf("netnstest: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// IP runs "ip -n NAME ARGS..." and returns its output; it fails the test
// when ip fails.
func (n *NS) IP(args ...string) string {
	n.t.Helper()
	return Run(n.t, "ip", append([]string{"-n", n.Name}, args...)...)
}

// AddBridge adds bridge name (forwarding at once: no STP delay), gives it
// address cidr ("10.251.20.1/24"; "" for none) and brings it up.
func (n *NS) AddBridge(name, cidr string) {
	n.t.Helper()
	n.IP("link", "add", name, "type", "bridge", "forward_delay", "0")
	if cidr != "" {
		n.AddAddr(name, cidr)
	}
	n.IP("link", "set", name, "up")
}

// AddTap adds tap device name (as "ip tuntap add dev NAME mode tap" inside
// the namespace), attaches it to bridge (none when "") and brings it up. A
// process started in the namespace (Command) opens it, QEMU with
// "-netdev tap,ifname=NAME,script=no,downscript=no".
func (n *NS) AddTap(name, bridge string) {
	n.t.Helper()
	Run(n.t, "ip", "netns", "exec", n.Name, "ip", "tuntap", "add", "dev", name, "mode", "tap")
	if bridge != "" {
		n.IP("link", "set", name, "master", bridge)
	}
	n.IP("link", "set", name, "up")
}

// AddAddr adds address cidr ("10.251.20.1/24") to device dev.
func (n *NS) AddAddr(dev, cidr string) {
	n.t.Helper()
	n.IP("addr", "add", cidr, "dev", dev)
}

// Veth is a veth pair made by AddVeth.
type Veth struct {
	// Name is the end inside the namespace AddVeth was called on.
	Name string
	// Peer is the other end, in PeerNS.
	Peer string
	// PeerNS is the peer's namespace; "" is the test's own.
	PeerNS string

	ns *NS // Name's namespace
}

// AddVeth adds a veth pair with end name inside n and the other end in
// peer (nil: the test's own namespace), brings both up and waits (at most
// LinkTimeout) until both are operationally up: before that the kernel
// drops what is sent on them. The peer's name is made unique on the host
// ("v<pid>x<k>"). Deleting either namespace deletes the pair; a peer in
// the test's namespace is also deleted at cleanup.
func (n *NS) AddVeth(name string, peer *NS) Veth {
	n.t.Helper()
	v := Veth{Name: name, Peer: fmt.Sprintf("v%dx%d", os.Getpid(), veths.Add(1)), ns: n}
	// Made in the test's namespace, then each end moved where it goes.
	Run(n.t, "ip", "link", "add", v.Peer, "type", "veth", "peer", "name", name, "netns", n.Name)
	if peer != nil {
		v.PeerNS = peer.Name
		Run(n.t, "ip", "link", "set", v.Peer, "netns", peer.Name)
		peer.IP("link", "set", v.Peer, "up")
	} else {
		n.t.Cleanup(func() {
			// Usually gone with the namespace already; errors are expected.
			_, _ = command(context.Background(), "ip", "link", "del", v.Peer)
		})
		Run(n.t, "ip", "link", "set", v.Peer, "up")
	}
	n.IP("link", "set", name, "up")
	v.waitFor("operationally up", func(ns, dev string) (bool, error) {
		out, err := ipIn(ns, "-o", "link", "show", "dev", dev)
		return strings.Contains(out, "state UP"), err
	})
	return v
}

// WaitDAD waits (at most LinkTimeout) until both ends of the pair have an
// IPv6 link-local address that duplicate address detection is done with:
// until then the kernel does not send from it. It fails the test when DAD
// failed, or when an end gets no link-local address (IPv6 disabled).
func (v Veth) WaitDAD() {
	v.ns.t.Helper()
	v.waitFor("done with IPv6 duplicate address detection", func(ns, dev string) (bool, error) {
		out, err := ipIn(ns, "-6", "-o", "addr", "show", "dev", dev, "scope", "link")
		if err != nil {
			return false, err
		}
		if strings.Contains(out, "dadfailed") {
			return false, fmt.Errorf("duplicate address detection failed on %s: %s", dev, out)
		}
		return strings.Contains(out, "inet6") && !strings.Contains(out, "tentative"), nil
	})
}

// waitFor polls ok on both ends until it holds for both, for at most
// LinkTimeout; it fails the test on an error or at the deadline.
func (v Veth) waitFor(what string, ok func(ns, dev string) (bool, error)) {
	t := v.ns.t
	t.Helper()
	deadline := time.Now().Add(LinkTimeout)
	for {
		a, err := ok(v.ns.Name, v.Name)
		if err != nil {
			t.Fatalf("netnstest: veth %s in %s: %v", v.Name, v.ns.Name, err)
		}
		b, err := ok(v.PeerNS, v.Peer)
		if err != nil {
			t.Fatalf("netnstest: veth %s in %s: %v", v.Peer, nsLabel(v.PeerNS), err)
		}
		if a && b {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("netnstest: veth pair %s (in %s) / %s (in %s) not %s after %v (%t / %t)",
				v.Name, v.ns.Name, v.Peer, nsLabel(v.PeerNS), what, LinkTimeout, a, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ipIn runs ip in namespace ns ("" the test's own) and returns its output.
func ipIn(ns string, args ...string) (string, error) {
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	out, err := command(context.Background(), "ip", args...)
	if err != nil {
		return "", fmt.Errorf("ip %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

func nsLabel(ns string) string {
	if ns == "" {
		return "the test's namespace"
	}
	return ns
}

// SetMAC gives device dev inside n the hardware address mac, as a node's
// NIC has (inventories and DHCP reservations are keyed by it). Set it
// before a process in the namespace reads the address.
func (n *NS) SetMAC(dev string, mac net.HardwareAddr) {
	n.t.Helper()
	n.IP("link", "set", "dev", dev, "address", mac.String())
}

// subnetLocks is where FreeSubnet's lock files live, one per subnet.
const subnetLocks = "/run/herd-netnstest"

// FreeSubnet returns a /24 of 10.250.0.0/16 (10.250.X.0/24, X from 1 to
// 250) that the test holds until its cleanup: no address of the test's
// namespace is in it, and no other FreeSubnet caller, in this process or
// another, holds it (an flock on a file under /run/herd-netnstest, dropped
// at cleanup or when the process ends). Addresses from it may go on
// the test's end of a veth pair without clashing with parallel tests. Call
// it before making the devices that get its addresses, so that their
// cleanups run before the subnet is given back. It skips the test when
// Available says no.
func FreeSubnet(t testing.TB) netip.Prefix {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("netnstest: %v", err)
	}
	if err := os.MkdirAll(subnetLocks, 0o755); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	used := map[byte]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatalf("netnstest: the test namespace's addresses: %v", err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if v4 := ipn.IP.To4(); v4 != nil && v4[0] == 10 && v4[1] == 250 {
				used[v4[2]] = true
			}
		}
	}
	// Start at a random X: parallel callers rarely try the same one.
	start := rand.IntN(250)
	for i := range 250 {
		x := byte((start+i)%250 + 1)
		if used[x] {
			continue
		}
		f, err := os.OpenFile(filepath.Join(subnetLocks, fmt.Sprintf("10.250.%d.0-24", x)), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatalf("netnstest: %v", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				continue
			}
			t.Fatalf("netnstest: lock %s: %v", f.Name(), err)
		}
		t.Cleanup(func() { f.Close() }) // closing drops the lock
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 250, x, 0}), 24)
	}
	t.Fatal("netnstest: every 10.250.X.0/24 is in use or held")
	return netip.Prefix{}
}

// Command returns a command that runs name inside the namespace ("ip
// netns exec NAME name args..."). ip execs name, so the started process's
// PID is name's own: Process.Kill ends it and nothing else. The caller
// starts, bounds and ends it.
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// CommandContext is Command, killed when ctx ends.
func (n *NS) CommandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs fn on an OS thread that joined the namespace and returns fn's
// error. Sockets fn opens belong to the namespace and stay there after
// fn returns; goroutines fn starts do not join it (they run on other
// threads). Afterwards the thread goes back to the namespace it came from,
// or, when that fails, is never given back to the Go runtime. fn must
// bound its own waits.
//
// Give IPv6 zones of the namespace's devices by index
// (net.Interface.Index, looked up inside fn), not by name: the net package
// resolves zone names through a process-wide cache, filled from whichever
// namespace last listed its interfaces.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("netnstest: this thread's namespace: %w", err)
			return
		}
		defer back.Close()
		f, err := os.Open(filepath.Join(runDir, n.Name))
		if err != nil {
			errc <- fmt.Errorf("netnstest: open namespace %s: %w", n.Name, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netnstest: setns %s: %w", n.Name, err)
			return
		}
		err = fn()
		// Only a thread back in its own namespace may run other
		// goroutines; one that cannot go back stays locked and ends with
		// this goroutine.
		if unix.Setns(int(back.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
