//go:build ringtest

package ringtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fifoReader is a node's disk made slow: the node's output is a FIFO, and
// this reads it at a set pace, copying what it reads to a file. The node
// writes as fast as it is read, so its pipeline fills and it reads its
// upstream no faster: real backpressure, all the way up the ring.
type fifoReader struct {
	path, copyPath string
	rate           int64         // bytes per second while reading
	pauseEvery     int64         // pause after every this many bytes; 0: never
	pause          time.Duration // how long
	stallAt        int64         // stop reading after this many bytes until resume; 0: never
	// atPause, when set, is called at each pause and at the stall with the
	// bytes read so far.
	atPause func(read int64)

	resumeOnce sync.Once
	resumeCh   chan struct{}
	done       chan struct{}
	read       atomic.Int64
	err        error         // set before done closes
	busy       time.Duration // first byte to end of file, set before done closes
	pauses     int
}

// startFIFOReader makes path a FIFO (before the node exists: it writes to
// whatever out.img is) and starts reading it; the node opens it at the
// start of the file. The reader is resumed and unblocked when t ends,
// after its processes are gone (call it before starting them).
func startFIFOReader(t *testing.T, r *fifoReader) *fifoReader {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(r.path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(r.path, 0o644); err != nil {
		t.Fatalf("mkfifo %s: %v", r.path, err)
	}
	r.resumeCh, r.done = make(chan struct{}), make(chan struct{})
	go r.run()
	t.Cleanup(func() {
		r.resume()
		for deadline := time.Now().Add(exitTimeout); ; time.Sleep(50 * time.Millisecond) {
			select {
			case <-r.done:
				return
			default:
			}
			if time.Now().After(deadline) {
				t.Errorf("the reader of %s did not end within %v after the test", r.path, exitTimeout)
				return
			}
			// Still waiting for a writer (the node never opened its
			// output): be one, for an instant.
			if w, err := os.OpenFile(r.path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				w.Close()
			}
		}
	})
	return r
}

// resume ends a stall (and any later one).
func (r *fifoReader) resume() { r.resumeOnce.Do(func() { close(r.resumeCh) }) }

func (r *fifoReader) run() {
	defer close(r.done)
	f, err := os.OpenFile(r.path, os.O_RDONLY, 0) // until the node opens it
	if err != nil {
		r.err = err
		return
	}
	defer f.Close()
	out, err := os.Create(r.copyPath)
	if err != nil {
		r.err = err
		return
	}
	defer out.Close()
	buf := make([]byte, 64<<10)
	var start, next time.Time
	nextPause, stalled := r.pauseEvery, false
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if start.IsZero() {
				start, next = time.Now(), time.Now()
			}
			if _, werr := out.Write(buf[:n]); werr != nil {
				r.err = werr
				return
			}
			total := r.read.Add(int64(n))
			next = next.Add(time.Duration(int64(n) * int64(time.Second) / r.rate))
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			} else {
				next = time.Now() // behind (the node was slower): no burst
			}
			if r.pauseEvery > 0 && total >= nextPause {
				if r.atPause != nil {
					r.atPause(total)
				}
				time.Sleep(r.pause)
				r.pauses++
				nextPause += r.pauseEvery
				next = time.Now()
			}
			if r.stallAt > 0 && !stalled && total >= r.stallAt {
				stalled = true
				if r.atPause != nil {
					r.atPause(total)
				}
				<-r.resumeCh
				next = time.Now()
			}
		}
		if errors.Is(err, io.EOF) {
			r.busy = time.Since(start)
			return
		}
		if err != nil {
			r.err = err
			return
		}
	}
}

// wait waits up to d for the node to close its output and the reader to
// read it all.
func (r *fifoReader) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("read %s: %v", r.path, r.err)
		}
	case <-time.After(d):
		t.Fatalf("the node did not close its output %s within %v (%d bytes read)", r.path, d, r.read.Load())
	}
}

// failedCount matches a progress line's count of failed nodes, but 0.
var failedCount = regexp.MustCompile(`\b[1-9][0-9]* failed`)

// fileSize is the size of path, -1 when it cannot be had.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// TestSlowDiskNotBypassed: "a node whose disk is merely slower is not
// bypassed: backpressure is not death, unless it makes no progress for the
// timeout". A ring of three herd recv nodes where the middle one's output
// is a FIFO read slowly (a few MB/s, with pauses), with --bypass-timeout
// 2s: the middle node holds the whole ring back for several times the
// bypass timeout in total (its upstream's output is checked to lag behind
// the input at the first pause), with pauses shorter than the timeout and,
// in the second case, longer than it (only the node's KeepAlives keep it
// in the ring then: it made progress within twice the bypass timeout). The
// sender exits 0, every node is done and verified with output identical to
// the input, and nobody was bypassed.
//
// When the middle node's disk stops for good (longer than twice the bypass
// timeout, after which it sends no more KeepAlives, plus the bypass timeout
// of its upstream's write), it is bypassed: the sender names it failed,
// reason timeout, and exits 1, while the other two finish verified and
// byte-identical; the bypassed node wrote a prefix of the input and exits
// non-zero once its disk moves again, be it as soon as the bypass is
// reported or after the sender is done.
func TestSlowDiskNotBypassed(t *testing.T) {
	const (
		bypass = 2 * time.Second
		size   = 32 << 20
	)
	in := randomFile(t, size, 73)
	for _, tc := range []struct {
		name       string
		first      int // the nodes are 127.0.1.first, +1, +2
		pauseEvery int64
		pause      time.Duration
		stallAt    int64
		// recovers: the stopped disk moves again as soon as the sender
		// reports the bypass (else once the sender is done).
		recovers bool
	}{
		{name: "slow, short pauses", first: 131, pauseEvery: 4 << 20, pause: bypass / 2},
		{name: "slow, pauses longer than the bypass timeout", first: 134, pauseEvery: 8 << 20, pause: bypass * 5 / 4},
		{name: "stopped", first: 137, stallAt: 4 << 20},
		{name: "stopped, then recovers", first: 140, stallAt: 4 << 20, recovers: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stops := tc.stallAt > 0
			dir := workDir(t)
			names := addrs(tc.first, tc.first+1, tc.first+2)
			nodeDir := func(a string) string { return filepath.Join(dir, "node-"+a) }
			up := filepath.Join(nodeDir(names[0]), "out.img")
			var lagMu sync.Mutex
			var lag []string  // the upstream's output at each pause
			var firstUp int64 // ... at the first pause
			slow := startFIFOReader(t, &fifoReader{
				path: filepath.Join(nodeDir(names[1]), "out.img"), copyPath: filepath.Join(dir, "slow-disk.img"),
				rate: 6 << 20, pauseEvery: tc.pauseEvery, pause: tc.pause, stallAt: tc.stallAt,
				atPause: func(read int64) {
					u := fileSize(up)
					lagMu.Lock()
					defer lagMu.Unlock()
					if len(lag) == 0 {
						firstUp = u
					}
					lag = append(lag, fmt.Sprintf("%.1f/%.1f MiB", float64(read)/(1<<20), float64(u)/(1<<20)))
				},
			})
			nodes := startNodes(t, dir, names, nodeOpts{})
			// Small socket buffers: the backpressure reaches the upstream
			// node and the sender early and stays for most of the run.
			args := []string{"send", "-v", "--bypass-timeout", bypass.String(), "-u", "256K", "-H", strings.Join(names, ","), "-I", in, "-O", "out.img"}
			start := time.Now()
			p := startSend(t, dir, "herd", args...)
			if stops && tc.recovers {
				deadline := time.Now().Add(time.Minute)
				for !strings.Contains(p.stderr(), "bypassed") && !p.exited() && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				t.Logf("%.1fs: the sender reports a bypass (or ended); the stopped disk moves again", time.Since(start).Seconds())
				slow.resume()
			}
			r := finish(t, p, start, 2*time.Minute)
			slow.resume()
			t.Logf("sender exited %d after %.1fs:\n%s%s", r.code, r.elapsed.Seconds(), r.stdout, r.stderr)
			slow.wait(t, exitTimeout)
			lagMu.Lock()
			t.Logf("node 2's disk read %d bytes in %.1fs (%.1f× the bypass timeout), %d pauses of %v; at each pause, read/upstream node's output: %s",
				slow.read.Load(), slow.busy.Seconds(), slow.busy.Seconds()/bypass.Seconds(), slow.pauses, tc.pause, strings.Join(lag, ", "))
			if len(lag) > 0 && firstUp >= size {
				t.Errorf("the upstream node had written all %d bytes when node 2's disk first paused: no backpressure reached it", size)
			}
			lagMu.Unlock()

			if !stops {
				wantExit(t, r, 0)
				allDone(t, r, names)
				// As TestBypass sees a bypass, in the summary (above) and in
				// the sender's -v log and progress lines ("0 failed" is
				// fine).
				out := r.stdout + r.stderr
				if strings.Contains(strings.ToLower(out), "bypass") || strings.Contains(out, "FAILED") || failedCount.MatchString(out) {
					t.Errorf("the sender's output reports a bypass or a failed node: a slow node was taken for a stopped one")
				}
				for _, n := range nodes {
					if strings.Contains(n.stderr(), "bypass") {
						t.Errorf("node %s bypassed a node:\n%s", n.addr, n.stderr())
					}
				}
				waitExit(t, nodes, 0)
				sameFile(t, in, filepath.Join(nodes[0].dir, "out.img"))
				sameFile(t, in, slow.copyPath)
				sameFile(t, in, filepath.Join(nodes[2].dir, "out.img"))
				return
			}

			wantExit(t, r, 1)
			lines := checkSummary(t, r, names, map[string]string{names[1]: "failed"})
			for _, l := range lines {
				switch {
				case l.name == names[1] && !strings.HasPrefix(l.reason, "timeout"):
					t.Errorf("node 2 (%s) failed for %q, want a timeout", l.name, l.reason)
				case l.name != names[1] && l.state != "done":
					t.Errorf("node %s, alive and only held back by the stopped node after it, was taken for a stopped node: %s", l.name, l.reason)
				}
			}
			containsAll(t, "the sender's standard error", r.stderr, "node "+names[1]+": bypassed: timeout")
			sameFile(t, in, filepath.Join(nodes[0].dir, "out.img"))
			sameFile(t, in, filepath.Join(nodes[2].dir, "out.img"))
			for _, n := range []*node{nodes[0], nodes[2]} {
				if code, ok := n.wait(exitTimeout); !ok || code != 0 {
					t.Errorf("node %s: exit status %d (ended: %v), want 0", n.addr, code, ok)
				}
			}
			if code, ok := nodes[1].wait(exitTimeout); !ok || code == 0 {
				t.Errorf("bypassed node %s: exit status %d (ended: %v), want it ended, non-zero", nodes[1].addr, code, ok)
			}
			// What the stopped disk got is the input's start, nothing else.
			got, err := os.ReadFile(slow.copyPath)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) >= len(want) || !bytes.Equal(got, want[:len(got)]) {
				t.Errorf("the bypassed node wrote %d bytes that are not a proper prefix of the %d-byte input", len(got), len(want))
			}
		})
	}
}
