//go:build ringtest

package ringtest

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// keyFile writes a ring key file under dir.
func keyFile(t *testing.T, dir, name, key string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// wroteNothing asserts that a node's working directory holds no output.
func wroteNothing(t *testing.T, n *node) {
	t.Helper()
	ents, _ := os.ReadDir(n.dir)
	for _, e := range ents {
		t.Errorf("node %s wrote %s although it did not authenticate", n.addr, e.Name())
	}
}

// TestAuth: with a key, only holders of it take part. A node without the
// key (or with another) fails set-up as "auth failed" and writes nothing
// while the others finish verified; nodes with a key refuse a sender
// without it; dolly's -P is the same key; -K stops waiting nodes only with
// the key.
func TestAuth(t *testing.T) {
	in := randomFile(t, 24<<20+777, 9)
	const good, other = "correct-horse-battery", "another-ring-key"

	t.Run("keyed ring", func(t *testing.T) {
		dir := workDir(t)
		k := keyFile(t, dir, "ring.key", good)
		nodes := startNodes(t, dir, addrs(41, 42, 43), nodeOpts{args: []string{"--key-file", k}})
		r := send(t, dir, 0, "herd", "send", "--key-file", k, "-H", strings.Join(nodeAddrs(nodes), ","), "-I", in, "-O", "out.img")
		wantExit(t, r, 0)
		allDone(t, r, nodeAddrs(nodes))
		for _, n := range nodes {
			sameFile(t, in, filepath.Join(n.dir, "out.img"))
		}
		waitExit(t, nodes, 0)
	})

	t.Run("one node without the key, one with another", func(t *testing.T) {
		dir := workDir(t)
		k, wrong := keyFile(t, dir, "ring.key", good), keyFile(t, dir, "other.key", other)
		n1 := startNodes(t, dir, addrs(41), nodeOpts{args: []string{"--key-file", k}})
		n2 := startNodes(t, dir, addrs(42), nodeOpts{})
		n3 := startNodes(t, dir, addrs(43), nodeOpts{args: []string{"--key-file", wrong}})
		n4 := startNodes(t, dir, addrs(44), nodeOpts{args: []string{"--key-file", k}})
		all := []*node{n1[0], n2[0], n3[0], n4[0]}
		r := send(t, dir, 0, "herd", "send", "--key-file", k, "-H", strings.Join(nodeAddrs(all), ","), "-I", in, "-O", "out.img")
		wantExit(t, r, 1)
		lines := checkSummary(t, r, nodeAddrs(all), map[string]string{addr(42): "failed", addr(43): "failed"})
		for _, l := range lines {
			if (l.name == addr(42) || l.name == addr(43)) && !strings.Contains(l.reason, "auth failed") {
				t.Errorf("node %s failed for %q, want auth failed", l.name, l.reason)
			}
		}
		sameFile(t, in, filepath.Join(n1[0].dir, "out.img"))
		sameFile(t, in, filepath.Join(n4[0].dir, "out.img"))
		wroteNothing(t, n2[0])
		wroteNothing(t, n3[0])
		containsAll(t, "node without a key", n2[0].stderr(), "auth")
	})

	t.Run("sender without the key", func(t *testing.T) {
		dir := workDir(t)
		k := keyFile(t, dir, "ring.key", good)
		nodes := startNodes(t, dir, addrs(41, 42), nodeOpts{args: []string{"--key-file", k}})
		r := send(t, dir, 0, "herd", "send", "-H", strings.Join(nodeAddrs(nodes), ","), "-I", in, "-O", "out.img")
		wantExit(t, r, 1)
		lines := checkSummary(t, r, nodeAddrs(nodes), map[string]string{addr(41): "failed", addr(42): "failed"})
		for _, l := range lines {
			if !strings.Contains(l.reason, "auth failed") {
				t.Errorf("node %s failed for %q, want auth failed", l.name, l.reason)
			}
		}
		for _, n := range nodes {
			wroteNothing(t, n)
		}
	})

	t.Run("dolly -P and -K", func(t *testing.T) {
		dir := workDir(t)
		nodes := startNodes(t, dir, addrs(41, 42), nodeOpts{prog: "dolly", args: []string{"-P", good}})
		r := send(t, dir, 0, "dolly", "-S", "herdtest", "-P", good, "-H", strings.Join(nodeAddrs(nodes), ","), "-I", in, "-O", "out.img")
		wantExit(t, r, 0)
		allDone(t, r, nodeAddrs(nodes))
		waitExit(t, nodes, 0)

		// Waiting clients: -K without the password is refused, with it
		// they stop (exit 0).
		nodes = startNodes(t, dir, addrs(43, 44), nodeOpts{prog: "dolly", args: []string{"-P", good}})
		list := strings.Join(nodeAddrs(nodes), ",")
		r = send(t, dir, 30*time.Second, "dolly", "-K", list)
		wantExit(t, r, 1)
		containsAll(t, "dolly -K without the password", r.stdout, "not stopped", "auth failed")
		r = send(t, dir, 30*time.Second, "dolly", "-K", list, "-P", other)
		wantExit(t, r, 1)
		for _, n := range nodes {
			if n.exited() {
				t.Fatalf("node %s stopped for a -K without the right password:\n%s", n.addr, n.dump())
			}
		}
		r = send(t, dir, 30*time.Second, "dolly", "-K", list, "-P", good)
		wantExit(t, r, 0)
		containsAll(t, "dolly -K", r.stdout, addr(43)+": stopped", addr(44)+": stopped")
		containsAll(t, "dolly -K", r.stderr, "Done. Killed 2 out of 2 clients.\n")
		waitExit(t, nodes, 0)

		// Again, with nothing left to stop: as dolly's "kill any running
		// dolly", that is no failure.
		r = send(t, dir, 30*time.Second, "dolly", "-K", list, "-P", good)
		wantExit(t, r, 0)
		containsAll(t, "dolly -K with no client left", r.stdout, addr(43)+": not running", addr(44)+": not running")
		containsAll(t, "dolly -K with no client left", r.stderr, "Done. Killed 0 out of 2 clients.\n")
	})
}

// flipProxy forwards TCP connections from listen to target, flipping one
// byte of the connecting side's stream at offset flipAt on connections to
// the data port (flipAt < 0: none). It stops with the test.
func flipProxy(t *testing.T, listen, target string, flipAt int64) {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var conns sync.Map
	t.Cleanup(func() {
		l.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	var flipped atomic.Bool
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			conns.Store(c, nil)
			conns.Store(s, nil)
			wg.Go(func() { io.Copy(c, s); c.Close() })
			wg.Go(func() {
				defer s.Close()
				if flipAt < 0 || flipped.Load() {
					io.Copy(s, c)
					return
				}
				if _, err := io.CopyN(s, c, flipAt); err != nil {
					return
				}
				var b [1]byte
				if _, err := io.ReadFull(c, b[:]); err != nil {
					return
				}
				b[0] ^= 0x20
				flipped.Store(true)
				s.Write(b[:])
				io.Copy(s, c)
			})
		}
	})
}

// TestTamper: a byte flipped in flight between the sender and a node. With
// a key the node refuses the frame (bad MAC) and fails; without one it
// writes the wrong byte, the sender's digest comparison catches it, and the
// node learns it was not verified (its exit status says so). Never done.
func TestTamper(t *testing.T) {
	in := randomFile(t, 8<<20, 11)
	for _, tc := range []struct {
		name   string
		keyed  bool
		reason string
	}{
		{"with a key", true, "MAC"},
		{"without a key", false, "verify failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := workDir(t)
			var args []string
			if tc.keyed {
				args = []string{"--key-file", keyFile(t, dir, "ring.key", "tamper-test-key")}
			}
			// The sender reaches the node at 127.0.1.50 through the proxy;
			// the node listens on 127.0.1.51.
			nodes := startNodes(t, dir, addrs(51), nodeOpts{args: args})
			flipProxy(t, addr(50)+":9997", addr(51)+":9997", -1)
			flipProxy(t, addr(50)+":9998", addr(51)+":9998", 3<<20+123)
			r := send(t, dir, 0, "herd", append([]string{"send", "-H", addr(50), "-I", in, "-O", "out.img"}, args...)...)
			wantExit(t, r, 1)
			lines := checkSummary(t, r, []string{addr(50)}, map[string]string{addr(50): "failed"})
			if !strings.Contains(lines[0].reason, tc.reason) {
				t.Errorf("node failed for %q, want %q", lines[0].reason, tc.reason)
			}
			waitExit(t, nodes, 1)
			containsAll(t, "tampered node", nodes[0].stderr(), tc.reason)
		})
	}
}

// TestAllowList: a node given --allow writes only to outputs matching a
// pattern, symbolic links resolved; anything else fails set-up with a
// clear reason and nothing written.
func TestAllowList(t *testing.T) {
	in := randomFile(t, 3<<20, 13)
	dir := workDir(t)
	pat := func(n int) string { return filepath.Join(dir, "node-"+addr(n), "images") + "/*" }
	n1 := startNodes(t, dir, addrs(45), nodeOpts{args: []string{"--allow", pat(45)}})
	n2 := startNodes(t, dir, addrs(46), nodeOpts{args: []string{"--allow", pat(46)}})
	for _, n := range []*node{n1[0], n2[0]} {
		if err := os.MkdirAll(filepath.Join(n.dir, "images"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// On node 46 images/out.img is a link to a file outside the list.
	if err := os.Symlink(filepath.Join(n2[0].dir, "elsewhere.img"), filepath.Join(n2[0].dir, "images", "out.img")); err != nil {
		t.Fatal(err)
	}
	r := send(t, dir, 0, "herd", "send", "-H", addr(45)+","+addr(46), "-I", in, "-O", "images/out.img")
	wantExit(t, r, 1)
	lines := checkSummary(t, r, addrs(45, 46), map[string]string{addr(46): "failed"})
	if !strings.Contains(lines[1].reason, "outside this node's allow-list") || !strings.Contains(lines[1].reason, "elsewhere.img") {
		t.Errorf("node %s failed for %q, want the allow-list and the link's target named", addr(46), lines[1].reason)
	}
	sameFile(t, in, filepath.Join(n1[0].dir, "images", "out.img"))
	if _, err := os.Stat(filepath.Join(n2[0].dir, "elsewhere.img")); err == nil {
		t.Error("node 46 wrote through the link to a path outside its allow-list")
	}
}
