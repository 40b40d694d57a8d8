package netnstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestNamespaces makes two namespaces of one tag, a bridge with a tap in
// one, a veth pair between them and one to the test's namespace; talks
// TCP across the pair from Go functions run inside; then checks that the
// cleanups removed all of it. Skipped unless root.
func TestNamespaces(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	var names []string
	var hostPeer string
	t.Run("make", func(t *testing.T) {
		a := New(t, "nt")
		b := New(t, "nt")
		names = append(names, a.Name, b.Name)
		if a.Name == b.Name || !strings.HasPrefix(b.Name, a.Name+"-") {
			t.Fatalf("names %q and %q: want the second to be the first with a suffix", a.Name, b.Name)
		}
		if _, err := os.Stat(filepath.Join(runDir, a.Name)); err != nil {
			t.Fatalf("namespace file: %v", err)
		}

		a.AddBridge("br0", "10.251.250.1/24")
		a.AddTap("tap0", "br0")
		ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
		defer cancel()
		if out, err := a.CommandContext(ctx, "ip", "-o", "link", "show", "tap0").CombinedOutput(); err != nil || !strings.Contains(string(out), "master br0") {
			t.Errorf("tap0 in %s: %v\n%s", a.Name, err, out)
		}

		v := a.AddVeth("ve0", b)
		if v.PeerNS != b.Name {
			t.Errorf("peer namespace %q, want %q", v.PeerNS, b.Name)
		}
		a.AddAddr(v.Name, "10.251.251.1/24")
		b.AddAddr(v.Peer, "10.251.251.2/24")
		hostPeer = a.AddVeth("ve1", nil).Peer
		if out := Run(t, "ip", "-o", "link", "show", hostPeer); !strings.Contains(out, hostPeer) {
			t.Errorf("host end %s: %s", hostPeer, out)
		}

		// A listener inside b, a client inside a: the pair carries it.
		var ln net.Listener
		if err := b.Do(func() (err error) {
			ln, err = net.Listen("tcp", "10.251.251.2:0")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write([]byte("hello from " + b.Name))
			c.Close()
		}()
		var got []byte
		if err := a.Do(func() error {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			got, err = io.ReadAll(c)
			return err
		}); err != nil {
			t.Fatalf("dial across the veth pair: %v", err)
		}
		if string(got) != "hello from "+b.Name {
			t.Errorf("got %q", got)
		}

		// Errors name the namespace.
		n := &NS{Name: "herd-nt-does-not-exist", t: t}
		if err := n.Do(func() error { return nil }); err == nil || !strings.Contains(err.Error(), n.Name) {
			t.Errorf("Do in a missing namespace: %v", err)
		}
		sentinel := errors.New("fn's error")
		if err := a.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
			t.Errorf("Do returned %v, want fn's error", err)
		}
	})
	if len(names) != 2 {
		t.Fatal("the namespaces were not made")
	}
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(runDir, name)); !os.IsNotExist(err) {
			t.Errorf("namespace %s still there after cleanup (%v)", name, err)
		}
	}
	if hostPeer != "" {
		if _, err := net.InterfaceByName(hostPeer); err == nil {
			t.Errorf("host veth end %s still there after cleanup", hostPeer)
		}
	}
}

// TestSweepLeftovers: namespaces left by a test process that is gone are
// deleted; those of a live process, and names of other tools, are kept.
func TestSweepLeftovers(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = live.Process.Kill(); _ = live.Wait() }()
	gone := []string{fmt.Sprintf("herd-sweep-%d", dead.Process.Pid), fmt.Sprintf("herd-sweep-%d-3", dead.Process.Pid)}
	kept := []string{fmt.Sprintf("herd-sweep-%d", live.Process.Pid), fmt.Sprintf("other-sweep-%d", dead.Process.Pid)}
	for _, n := range append(append([]string{}, gone...), kept...) {
		if out, err := command(context.Background(), "ip", "netns", "add", n); err != nil {
			t.Fatalf("ip netns add %s: %v\n%s", n, err, out)
		}
		t.Cleanup(func() { _, _ = command(context.Background(), "ip", "netns", "del", n) })
	}
	sweepLeftovers()
	for _, n := range gone {
		if _, err := os.Stat(filepath.Join(runDir, n)); !os.IsNotExist(err) {
			t.Errorf("%s (its process is gone) was not deleted: %v", n, err)
		}
	}
	for _, n := range kept {
		if _, err := os.Stat(filepath.Join(runDir, n)); err != nil {
			t.Errorf("%s was deleted: %v", n, err)
		}
	}
}

// TestVethToTestNamespace: a pair with one end in the test's own
// namespace is up when AddVeth returns; SetMAC gives the inner end a MAC;
// after WaitDAD both link-local addresses can be sent from; FreeSubnet
// hands out distinct subnets, holds them (also against other openers of
// the lock) until cleanup, and its addresses carry traffic across the
// pair. Skipped unless root.
func TestVethToTestNamespace(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	var held netip.Prefix
	var hostEnd string
	t.Run("make", func(t *testing.T) {
		sub := FreeSubnet(t)
		other := FreeSubnet(t)
		if sub == other || sub.Bits() != 24 || !netip.MustParsePrefix("10.250.0.0/16").Contains(sub.Addr()) {
			t.Fatalf("FreeSubnet gave %v and %v: want two distinct /24s in 10.250.0.0/16", sub, other)
		}
		if locked(t, sub) == nil {
			t.Errorf("the lock of %v is not held", sub)
		}
		held = sub

		ns := New(t, "nt")
		v := ns.AddVeth("eth0", nil)
		hostEnd = v.Peer
		if v.PeerNS != "" {
			t.Errorf("peer namespace %q, want the test's own (\"\")", v.PeerNS)
		}
		// Up at once, without waiting.
		if st, err := os.ReadFile("/sys/class/net/" + v.Peer + "/operstate"); err != nil || strings.TrimSpace(string(st)) != "up" {
			t.Errorf("host end %s operstate %q (%v), want up", v.Peer, st, err)
		}
		if out := ns.IP("-o", "link", "show", "dev", "eth0"); !strings.Contains(out, "state UP") {
			t.Errorf("inner end not up: %s", out)
		}

		mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x25, 0x99, 0x01}
		ns.SetMAC("eth0", mac)
		var got net.HardwareAddr
		if err := ns.Do(func() error {
			ifi, err := net.InterfaceByName("eth0")
			if err == nil {
				got = ifi.HardwareAddr
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got.String() != mac.String() {
			t.Errorf("MAC %v, want %v", got, mac)
		}

		// After WaitDAD, the host end's link-local address can be bound
		// (a tentative one cannot) and reaches the inner end's.
		v.WaitDAD()
		hostLL, innerLL := linkLocal(t, "", v.Peer), linkLocal(t, ns.Name, "eth0")
		var ln *net.UDPConn
		if err := ns.Do(func() error {
			// A numeric zone: the net package caches zone names process-wide,
			// from whichever namespace it last listed.
			ifi, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			ln, err = net.ListenUDP("udp6", &net.UDPAddr{IP: innerLL.AsSlice(), Zone: strconv.Itoa(ifi.Index)})
			return err
		}); err != nil {
			t.Fatalf("listen on the inner end's link-local address: %v", err)
		}
		defer ln.Close()
		c, err := net.DialUDP("udp6", &net.UDPAddr{IP: hostLL.AsSlice(), Zone: v.Peer},
			&net.UDPAddr{IP: innerLL.AsSlice(), Zone: v.Peer, Port: ln.LocalAddr().(*net.UDPAddr).Port})
		if err != nil {
			t.Fatalf("send from the host end's link-local address: %v", err)
		}
		defer c.Close()
		exchange(t, c, ln)

		// The subnet's addresses on the two ends carry IPv4.
		server := sub.Addr().Next()
		client := server.Next()
		Run(t, "ip", "addr", "add", netip.PrefixFrom(server, 24).String(), "dev", v.Peer)
		ns.AddAddr("eth0", netip.PrefixFrom(client, 24).String())
		var ln4 *net.UDPConn
		if err := ns.Do(func() (err error) {
			ln4, err = net.ListenUDP("udp4", &net.UDPAddr{IP: client.AsSlice()})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln4.Close()
		c4, err := net.DialUDP("udp4", nil, ln4.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c4.Close()
		exchange(t, c4, ln4)
	})
	if !held.IsValid() {
		t.Fatal("no subnet was held")
	}
	if err := locked(t, held); err != nil {
		t.Errorf("the lock of %v is still held after cleanup: %v", held, err)
	}
	if _, err := net.InterfaceByName(hostEnd); err == nil {
		t.Errorf("host veth end %s still there after cleanup", hostEnd)
	}
}

// locked tries to take p's FreeSubnet lock itself, and gives it back at
// once; it returns the error of that try (nil: nobody held it).
func locked(t *testing.T, p netip.Prefix) error {
	t.Helper()
	a := p.Addr().As4()
	f, err := os.Open(filepath.Join(subnetLocks, fmt.Sprintf("10.250.%d.0-24", a[2])))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
}

// linkLocal returns dev's IPv6 link-local address in namespace ns ("" the
// test's own).
func linkLocal(t *testing.T, ns, dev string) netip.Addr {
	t.Helper()
	out, err := ipIn(ns, "-6", "-o", "addr", "show", "dev", dev, "scope", "link")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	for i, w := range f {
		if w == "inet6" && i+1 < len(f) {
			if p, err := netip.ParsePrefix(f[i+1]); err == nil {
				return p.Addr()
			}
		}
	}
	t.Fatalf("no link-local address on %s: %s", dev, out)
	return netip.Addr{}
}

// exchange sends a datagram on c and reads it on ln, bounded.
func exchange(t *testing.T, c, ln *net.UDPConn) {
	t.Helper()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatalf("send %v -> %v: %v", c.LocalAddr(), c.RemoteAddr(), err)
	}
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, err := ln.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("receive on %v: %q, %v", ln.LocalAddr(), buf[:n], err)
	}
}
