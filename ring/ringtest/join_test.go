//go:build ringtest

package ringtest

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// summaryOf returns the sender's summary line for each node name.
func summaryOf(t *testing.T, r *result) map[string]summaryLine {
	t.Helper()
	m := map[string]summaryLine{}
	for _, l := range parseSummary(t, r) {
		m[l.name] = l
	}
	return m
}

// TestLateJoin: a node that is down when the session starts, or that dies
// in the middle and comes back, joins the running session late: the
// sender feeds it from the start while the ring goes on, it ends with the
// whole input, verified, and the session exits 0. The ring is paced by a
// slow first node (its output a FIFO read at 12 MiB/s) so that the
// session is still running when the node comes back.
func TestLateJoin(t *testing.T) {
	const size = 96 << 20
	in := randomFile(t, size, 71)
	for _, tc := range []struct {
		name  string
		first int  // first node's address 127.0.1.N
		kill  bool // node 3 runs at first and is killed at 20%, else it is down at set-up
	}{
		{"down-at-setup", 110, false},
		{"killed-and-back", 115, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := workDir(t)
			slowCopy := filepath.Join(dir, "slow-disk.img")
			startFIFOReader(t, &fifoReader{path: filepath.Join(dir, "node-"+addr(tc.first), "out.img"), copyPath: slowCopy, rate: 12 << 20})
			nodes := startNodes(t, dir, addrs(tc.first, tc.first+1), nodeOpts{})
			late := addr(tc.first + 2)
			var victim *node
			if tc.kill {
				victim = startNodes(t, dir, []string{late}, nodeOpts{})[0]
			}
			nodes = append(nodes, startNodes(t, dir, addrs(tc.first+3), nodeOpts{})...)
			hosts := []string{nodes[0].addr, nodes[1].addr, late, nodes[2].addr}
			start := time.Now()
			p := startSend(t, dir, "herd", "send", "-v", "-r", "1", "--bypass-timeout", "2s", "-H", strings.Join(hosts, ","), "-I", in, "-O", "out.img")
			waitOutput(t, p, filepath.Join(nodes[1].dir, "out.img"), size/5)
			if victim != nil {
				if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				t.Logf("%.1fs: killed %s", time.Since(start).Seconds(), late)
				waitLog(t, p, "node "+late+": bypassed: reset", 20*time.Second)
			}
			back := startNodes(t, filepath.Join(dir, "back"), []string{late}, nodeOpts{})[0]
			t.Logf("%.1fs: %s is up again", time.Since(start).Seconds(), late)
			r := finish(t, p, start, 3*time.Minute)
			wantExit(t, r, 0)
			lines := summaryOf(t, r)
			for _, a := range hosts {
				if l := lines[a]; l.state != "done" || l.verified != "yes" {
					t.Errorf("node %s: %s, verified %s (%s); want done and verified", a, l.state, l.verified, l.reason)
				}
			}
			if l := lines[late]; !strings.HasPrefix(l.reason, "joined late, after: ") {
				t.Errorf("node %s's summary reason is %q; want it to say it joined late", late, l.reason)
			}
			containsAll(t, "the sender's log", r.stderr, "node "+late+": joined late")
			// Checked again here, byte for byte.
			sameFile(t, in, filepath.Join(back.dir, "out.img"))
			sameFile(t, in, slowCopy)
			for _, nd := range nodes[1:] {
				sameFile(t, in, filepath.Join(nd.dir, "out.img"))
			}
			t.Logf("sender exited %d after %.1fs:\n%s", r.code, r.elapsed.Seconds(), r.stdout)
		})
	}
}

// waitLog waits until the sender's standard error holds s.
func waitLog(t *testing.T, p *proc, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.stderr(), s) {
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("the sender never logged %q:\n%s", s, p.dump())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOnlyFailed: herd send --failed writes the nodes that failed (here:
// one that is down, with late join off); once it is up, herd send
// --only-failed sends to just that node, and rewrites the file empty; a
// third run has nothing to send and says so.
func TestOnlyFailed(t *testing.T) {
	in := randomFile(t, 8<<20, 72)
	dir := workDir(t)
	hosts := addrs(100, 101, 102)
	up := startNodes(t, dir, hosts[:2], nodeOpts{})
	failed := filepath.Join(dir, "failed.txt")
	r := send(t, dir, 0, "herd", "send", "-r", "1", "--no-late-join", "-H", strings.Join(hosts, ","), "-I", in, "-O", "out.img", "--failed", failed)
	wantExit(t, r, 1)
	lines := summaryOf(t, r)
	if l := lines[hosts[2]]; l.state != "failed" {
		t.Fatalf("node %s is %s, want failed:\n%v", hosts[2], l.state, r)
	}
	b, err := os.ReadFile(failed)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(strings.SplitN(string(b), "#", 2)[0]); len(got) != 1 || got[0] != hosts[2] || strings.Count(string(b), "\n") != 1 {
		t.Fatalf("--failed wrote %q; want one line naming %s", b, hosts[2])
	}
	for _, nd := range up {
		sameFile(t, in, filepath.Join(nd.dir, "out.img"))
	}

	back := startNodes(t, dir, hosts[2:], nodeOpts{})[0]
	r = send(t, dir, 0, "herd", "send", "-H", strings.Join(hosts, ","), "-I", in, "-O", "out.img", "--only-failed", failed, "--failed", failed)
	wantExit(t, r, 0)
	lines = summaryOf(t, r)
	if len(lines) != 1 || lines[hosts[2]].state != "done" {
		t.Fatalf("--only-failed: summary %v; want only %s, done", lines, hosts[2])
	}
	sameFile(t, in, filepath.Join(back.dir, "out.img"))
	if b, err := os.ReadFile(failed); err != nil || len(strings.TrimSpace(string(b))) != 0 {
		t.Fatalf("after a clean --only-failed run the file holds %q (%v); want it empty", b, err)
	}

	r = send(t, dir, 0, "herd", "send", "-H", strings.Join(hosts, ","), "-I", in, "-O", "out.img", "--only-failed", failed)
	wantExit(t, r, 0)
	containsAll(t, "herd send with an empty --only-failed file", r.stdout+r.stderr, "nothing to send")
}
