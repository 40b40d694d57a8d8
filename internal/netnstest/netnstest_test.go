package netnstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
