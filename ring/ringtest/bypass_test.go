//go:build ringtest

package ringtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fault stops ring node `node` (1-based) once its output reached frac of
// the input, with sig: SIGKILL (the node resets) or SIGSTOP (it freezes).
type fault struct {
	node int
	frac float64
	sig  syscall.Signal
}

// want is the reason class the sender must give a node stopped with sig.
func (f fault) want() string {
	if f.sig == syscall.SIGSTOP {
		return "timeout"
	}
	return "reset"
}

// TestBypass stops nodes in the middle of a session (killed, or frozen)
// and checks that the ring goes past them: every other node finishes with
// verified data (checked again here, byte for byte), the sender names each
// stopped node with its reason and exits non-zero.
func TestBypass(t *testing.T) {
	const size = 256 << 20
	in := randomFile(t, size, 61)
	sum := inputSHA(t, in)
	kill, stop := syscall.SIGKILL, syscall.SIGSTOP
	for _, tc := range []struct {
		name   string
		first  int // first node's address 127.0.1.N
		n      int
		fanout int
		faults []fault
		key    bool
	}{
		{"middle-kill-and-freeze", 50, 6, 1, []fault{{3, 0.4, kill}, {5, 0.6, stop}}, false},
		{"first-node", 60, 4, 1, []fault{{1, 0.3, kill}}, false},
		{"last-node", 64, 4, 1, []fault{{4, 0.3, stop}}, false},
		{"two-adjacent", 70, 5, 1, []fault{{2, 0.3, kill}, {3, 0.3, stop}}, false},
		{"tree", 80, 7, 2, []fault{{2, 0.3, kill}}, false},
		{"keyed-twice", 90, 6, 1, []fault{{2, 0.2, stop}, {4, 0.5, kill}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := workDir(t)
			var ns []int
			for i := range tc.n {
				ns = append(ns, tc.first+i)
			}
			var nodeArgs, sendArgs []string
			if tc.key {
				k := keyFile(t, dir, "ring.key", "bypass-test-key")
				nodeArgs = []string{"--key-file", k}
				sendArgs = []string{"--key-file", k}
			}
			nodes := startNodes(t, dir, addrs(ns...), nodeOpts{args: nodeArgs})
			args := append([]string{"send", "--bypass-timeout", "2s", "--fanout", strconv.Itoa(tc.fanout), "-H", strings.Join(nodeAddrs(nodes), ","), "-I", in, "-O", "out.img"}, sendArgs...)
			start := time.Now()
			p := startSend(t, dir, "herd", args...)
			for _, f := range tc.faults {
				nd := nodes[f.node-1]
				waitOutput(t, p, filepath.Join(nd.dir, "out.img"), int64(f.frac*size))
				if err := nd.cmd.Process.Signal(f.sig); err != nil {
					t.Fatal(err)
				}
				t.Logf("%.1fs: sent %v to node %d (%s)", time.Since(start).Seconds(), f.sig, f.node, nd.addr)
			}
			r := finish(t, p, start, 3*time.Minute)
			if r.code == 0 {
				t.Errorf("sender exited 0 with stopped nodes:\n%v", r)
			}
			lines := map[string]summaryLine{}
			for _, l := range parseSummary(t, r) {
				lines[l.name] = l
			}
			stopped := map[int]fault{}
			for _, f := range tc.faults {
				stopped[f.node] = f
			}
			for i, nd := range nodes {
				l, ok := lines[nd.addr]
				if !ok {
					t.Errorf("the summary does not list node %s:\n%v", nd.addr, r)
					continue
				}
				if f, ok := stopped[i+1]; ok {
					if l.state != "failed" || l.verified != "no" || !strings.HasPrefix(l.reason, f.want()) {
						t.Errorf("node %d (%s), sent %v: %s, verified %s, reason %q; want failed, no, %q...", i+1, nd.addr, f.sig, l.state, l.verified, l.reason, f.want())
					}
					continue
				}
				if l.state != "done" || l.verified != "yes" {
					t.Errorf("node %d (%s) was not stopped but is %s, verified %s: %s\n%s", i+1, nd.addr, l.state, l.verified, l.reason, nd.dump())
					continue
				}
				if got := sha256File(t, filepath.Join(nd.dir, "out.img")); got != sum {
					t.Errorf("node %d (%s) is reported verified but its output differs from the input", i+1, nd.addr)
				}
			}
			t.Logf("sender exited %d after %.1fs:\n%s", r.code, r.elapsed.Seconds(), r.stdout)
		})
	}
}

// waitOutput waits until path holds at least n bytes, failing if the
// sender ends first or it takes a minute.
func waitOutput(t *testing.T, p *proc, path string, n int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() >= n {
			return
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("%s never reached %d bytes before the sender ended or a minute passed:\n%s", path, n, p.dump())
		}
		time.Sleep(time.Millisecond)
	}
}
