//go:build ringtest

package ringtest

import (
	"compress/gzip"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// badTimeout bounds every sender run of the bad-input tests: a refusal
// must come quickly (a name that does not resolve included).
const badTimeout = 30 * time.Second

// refused asserts a sender that could not set up a session: exit status
// code, a message on standard error mentioning every one of mention, and
// no node wrote anything (nor was contacted: each still waits for a
// session).
func refused(t *testing.T, r *result, code int, nodes []*node, mention ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("sender exit status %d, want %d\n%v", r.code, code, r)
	}
	containsAll(t, "the sender's standard error", r.stderr, mention...)
	t.Logf("exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	for _, nd := range nodes {
		if nd.exited() {
			t.Errorf("node %s ended (%v): a session reached it\n%s", nd.addr, nd.cmd.ProcessState, nd.dump())
		}
		emptyDir(t, nd.dir)
	}
}

// TestBadInput checks that bad input stops a session before any node
// writes anything, with exit status 2 and a message naming the culprit;
// and that node failures (an output that cannot be opened, no space, no
// node at a listed address) are reported per node with exit status 1.
func TestBadInput(t *testing.T) {
	in := randomFile(t, 4<<20, 7)

	t.Run("missing-input", func(t *testing.T) {
		dir := workDir(t)
		nodes := startNodes(t, dir, addrs(50), nodeOpts{})
		missing := filepath.Join(dir, "no-such-image.img")
		r := send(t, dir, badTimeout, "herd", "send", "-H", addr(50), "-I", missing, "-O", "out.img")
		refused(t, r, 2, nodes, missing)
		r = send(t, dir, badTimeout, "dolly", "-S", "herdtest", "-H", addr(50), "-I", missing, "-O", "out.img")
		refused(t, r, 2, nodes, missing)
	})

	t.Run("input-is-directory", func(t *testing.T) {
		dir := workDir(t)
		nodes := startNodes(t, dir, addrs(50), nodeOpts{})
		indir := filepath.Join(dir, "an-input-dir")
		if err := os.Mkdir(indir, 0o755); err != nil {
			t.Fatal(err)
		}
		r := send(t, dir, badTimeout, "dolly", "-S", "herdtest", "-H", addr(50), "-I", indir, "-O", "out.img")
		refused(t, r, 2, nodes, indir)
		r = send(t, dir, badTimeout, "herd", "send", "-H", addr(50), "-I", indir, "-O", "out.img")
		refused(t, r, 2, nodes, indir)
	})

	t.Run("config-missing-or-unreadable", func(t *testing.T) {
		dir := workDir(t)
		nodes := startNodes(t, dir, addrs(50), nodeOpts{})
		missing := filepath.Join(dir, "no-such.cfg")
		r := send(t, dir, badTimeout, "dolly", "-S", "herdtest", "-f", missing)
		refused(t, r, 2, nodes, missing)
		r = send(t, dir, badTimeout, "dollyS", "-f", missing)
		refused(t, r, 2, nodes, missing)
		// A directory cannot be read as a file, even by root.
		unreadable := filepath.Join(dir, "cfg-is-a-dir.cfg")
		if err := os.Mkdir(unreadable, 0o755); err != nil {
			t.Fatal(err)
		}
		r = send(t, dir, badTimeout, "dolly", "-S", "herdtest", "-f", unreadable)
		refused(t, r, 2, nodes, unreadable)
	})

	t.Run("config-without-endconfig", func(t *testing.T) {
		dir := workDir(t)
		nodes := startNodes(t, dir, addrs(50), nodeOpts{})
		cfg := filepath.Join(dir, "no-end.cfg")
		text := "infile " + in + "\noutfile out.img\nserver mgmt\nfirstclient node50\nlastclient node50\nclients 1\nnode50\n"
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		r := send(t, dir, badTimeout, "dolly", "-S", "herdtest", "-f", cfg)
		refused(t, r, 2, nodes, "endconfig")
		if !regexp.MustCompile(regexp.QuoteMeta(cfg) + `:[0-9]+: `).MatchString(r.stderr) {
			t.Errorf("the message does not say FILE:LINE (%s:N):\n%s", cfg, r.stderr)
		}
	})

	t.Run("duplicate-host", func(t *testing.T) {
		dir := workDir(t)
		nodes := startNodes(t, dir, addrs(50, 51), nodeOpts{})
		// By name.
		r := send(t, dir, badTimeout, "herd", "send", "-H", "node50,node51,node50", "-I", in, "-O", "out.img")
		refused(t, r, 2, nodes, "node50", "same host")
		r = send(t, dir, badTimeout, "dolly", "-S", "herdtest", "-H", "node50,node51,node50", "-I", in, "-O", "out.img")
		refused(t, r, 2, nodes, "node50")
		// By address: node50 is 127.0.1.50 in the sender's /etc/hosts.
		r = send(t, dir, badTimeout, "herd", "send", "-H", "node50,node51,"+addr(50), "-I", in, "-O", "out.img")
		refused(t, r, 2, nodes, "node50", addr(50))
		// By address, range against a name.
		r = send(t, dir, badTimeout, "dolly", "-S", "herdtest", "-H", "node51,127.0.1.50-51", "-I", in, "-O", "out.img")
		refused(t, r, 2, nodes, "node51", addr(51))
	})

	t.Run("host-does-not-resolve", func(t *testing.T) {
		dir := workDir(t)
		nodes := startNodes(t, dir, addrs(50), nodeOpts{})
		r := send(t, dir, badTimeout, "herd", "send", "-H", "node50,nosuchhost", "-I", in, "-O", "out.img")
		refused(t, r, 2, nodes, "nosuchhost")
		r = send(t, dir, badTimeout, "dolly", "-S", "herdtest", "-H", "node50,nosuchhost", "-I", in, "-O", "out.img")
		refused(t, r, 2, nodes, "nosuchhost")
	})

	// Node 51 has no directory 'sub': it fails set-up naming the path;
	// the other node goes on. With --require-all nothing is written.
	t.Run("output-directory-missing", func(t *testing.T) {
		dir := workDir(t)
		nodes := startNodes(t, dir, addrs(50, 51), nodeOpts{})
		if err := os.Mkdir(filepath.Join(nodes[0].dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		r := send(t, dir, badTimeout, "herd", "send", "-H", addr(50)+","+addr(51), "-I", in, "-O", "sub/out.img")
		wantExit(t, r, 1)
		lines := checkSummary(t, r, addrs(50, 51), map[string]string{addr(51): "failed"})
		containsAll(t, "node "+addr(51)+"'s reason", lines[1].reason, "sub")
		containsAll(t, "the sender's standard output", r.stdout, "FAILED: 1 of 2")
		sameFile(t, in, filepath.Join(nodes[0].dir, "sub", "out.img"))
		emptyDir(t, nodes[1].dir)
		waitExit(t, nodes[:1], 0)

		rdir := filepath.Join(dir, "require-all")
		if err := os.Mkdir(rdir, 0o755); err != nil {
			t.Fatal(err)
		}
		nodes = startNodes(t, rdir, addrs(50, 51), nodeOpts{})
		if err := os.Mkdir(filepath.Join(nodes[0].dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		r = send(t, dir, badTimeout, "herd", "send", "--require-all", "-H", addr(50)+","+addr(51), "-I", in, "-O", "sub/out.img")
		wantExit(t, r, 1)
		containsAll(t, "the sender's standard error", r.stderr, addr(51), "sub")
		emptyDir(t, nodes[0].dir, "sub")
		emptyDir(t, nodes[1].dir)
	})

	// Node 51's output directory is a 1 MiB tmpfs: a 4 MiB image is
	// refused at set-up, naming the path and both sizes.
	t.Run("no-space", func(t *testing.T) {
		dir := workDir(t)
		var small []string
		for _, a := range addrs(50, 51) {
			d := filepath.Join(dir, "node-"+a, "small")
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			small = append(small, d)
		}
		mountTiny(t, small[1])
		nodes := startNodes(t, dir, addrs(50, 51), nodeOpts{})
		r := send(t, dir, badTimeout, "herd", "send", "-H", addr(50)+","+addr(51), "-I", in, "-O", "small/out.img")
		wantExit(t, r, 1)
		lines := checkSummary(t, r, addrs(50, 51), map[string]string{addr(51): "failed"})
		reason := lines[1].reason
		containsAll(t, "node "+addr(51)+"'s reason", reason, "small/out.img")
		if !regexp.MustCompile(`(^|[^0-9.])4(\.0+)? MiB`).MatchString(reason) || !regexp.MustCompile(`(^|[^0-9.])[01](\.[0-9]+)? MiB`).MatchString(reason) {
			t.Errorf("node %s's reason does not give the sizes (4 MiB needed, under 1 MiB free): %q", addr(51), reason)
		}
		sameFile(t, in, filepath.Join(nodes[0].dir, "small", "out.img"))
		emptyDir(t, nodes[1].dir, "small")
	})

	// The same 1 MiB tmpfs, but the size is not known at set-up (a
	// cooked .gz decodes to 4 MiB): node 51 runs out of space during the
	// transfer and fails naming the path and the cause; node 50 is done.
	t.Run("no-space-during-transfer", func(t *testing.T) {
		dir := workDir(t)
		gz := filepath.Join(dir, "image.gz")
		gzipFile(t, in, gz)
		var small []string
		for _, a := range addrs(50, 51) {
			d := filepath.Join(dir, "node-"+a, "small")
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			small = append(small, d)
		}
		mountTiny(t, small[1])
		nodes := startNodes(t, dir, addrs(50, 51), nodeOpts{})
		r := send(t, dir, badTimeout, "herd", "send", "-H", addr(50)+","+addr(51), "--file", gz+" >> small/out.img")
		wantExit(t, r, 1)
		lines := checkSummary(t, r, addrs(50, 51), map[string]string{addr(51): "failed"})
		containsAll(t, "node "+addr(51)+"'s reason", lines[1].reason, "small/out.img")
		if !regexp.MustCompile(`(?i)no space|full`).MatchString(lines[1].reason) {
			t.Errorf("node %s's reason does not say the file system is full: %q", addr(51), lines[1].reason)
		}
		sameFile(t, in, filepath.Join(nodes[0].dir, "small", "out.img"))
	})

	// No node listens at 127.0.1.51: with -r 1 it is reported failed and
	// counted, the others are done, exit status 1.
	t.Run("host-without-node", func(t *testing.T) {
		dir := workDir(t)
		nodes := startNodes(t, dir, addrs(50, 52), nodeOpts{})
		hosts := addrs(50, 51, 52)
		r := send(t, dir, badTimeout, "herd", "send", "-r", "1", "-H", strings.Join(hosts, ","), "-I", in, "-O", "out.img")
		wantExit(t, r, 1)
		lines := checkSummary(t, r, hosts, map[string]string{addr(51): "failed"})
		containsAll(t, "node "+addr(51)+"'s reason", lines[1].reason, addr(51))
		containsAll(t, "the sender's standard output", r.stdout, "FAILED: 1 of 3", addr(51))
		// Counted: the aggregate rate is that of the two nodes that
		// verified.
		if rate, agg := totals(t, r); rate <= 0 || agg < 2*rate-0.01 || agg > 2*rate+0.01 {
			t.Errorf("Aggregate MBytes/s %v, want 2 x MBytes/s %v (two nodes verified)", agg, rate)
		}
		for _, nd := range nodes {
			sameFile(t, in, filepath.Join(nd.dir, "out.img"))
		}
		waitExit(t, nodes, 0)

		// The same with dolly's spelling.
		rdir := filepath.Join(dir, "dolly")
		if err := os.Mkdir(rdir, 0o755); err != nil {
			t.Fatal(err)
		}
		nodes = startNodes(t, rdir, addrs(50, 52), nodeOpts{prog: "dolly"})
		r = send(t, dir, badTimeout, "dolly", "-S", "herdtest", "-r", "1", "-H", "127.0.1.50-52", "-I", in, "-O", "out.img")
		wantExit(t, r, 1)
		checkSummary(t, r, hosts, map[string]string{addr(51): "failed"})
		containsAll(t, "the sender's standard output", r.stdout, "FAILED: 1 of 3")
		for _, nd := range nodes {
			sameFile(t, in, filepath.Join(nd.dir, "out.img"))
		}
	})
}

// mountTiny mounts a 1 MiB tmpfs on dir until t ends (before dir is
// removed: cleanups run last-in first-out).
func mountTiny(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a 1 MiB tmpfs on %s: %v\n%s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
}

// gzipFile writes src gzip-compressed to dst.
func gzipFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	zw := gzip.NewWriter(out)
	if _, err := io.Copy(zw, in); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestControlFlood: a node whose control port is flooded with connections
// that never become a session (100 idle ones, more than it takes through
// their handshake at once, and some sending garbage) still takes a real
// sender's session at once, and the session is the one it serves.
func TestControlFlood(t *testing.T) {
	in := randomFile(t, 4<<20, 9)
	dir := workDir(t)
	nodes := startNodes(t, dir, addrs(53, 54), nodeOpts{})
	target := net.JoinHostPort(addr(53), "9997")
	for i := range 100 {
		c, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err != nil {
			t.Fatalf("connection %d to %s: %v", i+1, target, err)
		}
		defer c.Close()
		if i%10 == 0 {
			if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: node53\r\n\r\n")); err != nil {
				t.Fatalf("connection %d to %s: %v", i+1, target, err)
			}
		}
	}
	// Before the fix the node spent 30 s on each idle connection in turn.
	r := send(t, dir, 20*time.Second, "herd", "send", "-H", addr(53)+","+addr(54), "-I", in, "-O", "out.img")
	wantExit(t, r, 0)
	allDone(t, r, addrs(53, 54))
	for _, nd := range nodes {
		sameFile(t, in, filepath.Join(nd.dir, "out.img"))
	}
	waitExit(t, nodes, 0)
	containsAll(t, "node "+addr(53)+"'s log", nodes[0].stdout()+nodes[0].stderr(), "closed the oldest", "ignored: not a herd session")
}
