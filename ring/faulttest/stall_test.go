//go:build nettest

package faulttest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStalledDisplay: what herd send's progress display says of a frozen
// node, checked against what the nodes really have. Three nodes behind
// 4 Mbit/s ports, 8 MiB in 64 KiB blocks, bypass timeout 30 s; herd send
// writes to a terminal (a pty), so it redraws its table, and the progress
// line at its foot, twice a second. Node 2 is frozen (SIGSTOP) at 30 %
// and thawed once the display has named it stalled for 5 s and named
// node 3 too, at most 16 s later: long before anything could bypass it
// (its upstream waits 30 s from its last keepalive, sent every 7.5 s; the
// sender 30 s from its last report, sent every 0.5 s).
//
// What is true, and checked of every redraw (judgeStalls):
//   - the frozen node 2 says nothing more: from 3 s after the freeze until
//     the thaw it is named stalled, the seconds since it last moved are
//     those since the freeze (±1.5 s) and grow with the time;
//   - a node that got 16 KiB or more (read, or waiting in its upstream
//     socket: what it reports as arrived) between 1.5 and 1.1 s before a
//     redraw is not named stalled: node 1 while node 2's kernel still
//     takes what it forwards, every node before the freeze and after the
//     thaw;
//   - a node that got nothing for 3 s and has not read the whole stream is
//     named stalled: node 3, downstream of the frozen node 2, once what
//     node 2 had handed its kernel has drained (and not longer ago than
//     node 2: it is its only source); node 1 too if node 2's socket and
//     then its own fill up;
//   - a node at which the whole stream had arrived half a second before a
//     redraw (its count then is its last, but for a few bytes of control
//     messages) is not named stalled: it has everything, and only feeds
//     its children (report: "not one that has the whole stream and waits
//     for its children").
//
// The nodes' own counts come from /proc (stallSampler), every 100 ms. Each
// row of the table must agree with the line under it. After the thaw the
// session ends with every node done and verified, and herd send exits 0.
func TestStalledDisplay(t *testing.T) {
	const (
		size      = 8 << 20
		maxFreeze = 16 * time.Second
	)
	r := newRing(t, 3)
	r.setRate(4_000_000)
	in := r.input(size)
	r.start()
	const frozenIdx = 1
	frozen := r.nodes[frozenIdx]

	smp := startStallSampler(r)
	t.Cleanup(smp.stop)

	tty, pts, err := openPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var stdout bytes.Buffer
	cmd := r.hub.Command(herdBin, "send", "-H", r.addrs(), "-I", in, "-O", "out.img", "--bypass-timeout", "30s", "-b", "64K")
	cmd.Stdout, cmd.Stderr = &stdout, pts
	begun := time.Now()
	err = cmd.Start()
	pts.Close() // herd send has it: the reads end when it exits
	if err != nil {
		t.Fatal(err)
	}
	pl := &progressLines{}
	exited := make(chan struct{})
	go func() {
		pl.read(tty) // until herd send exits: Wait only after the reads
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	// Node 2 at 30 %: frozen.
	deadline := time.Now().Add(time.Minute)
	for {
		if got, ok := smp.since(frozenIdx, time.Now()); ok && got >= size*3/10 {
			break
		}
		select {
		case <-exited:
			t.Fatalf("herd send ended before node 2 reached 30%%:\n%s", stdout.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("node 2 did not reach 30% within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	freezeAt := time.Now()
	t.Logf("%.2fs: node 2 (%s) frozen", freezeAt.Sub(begun).Seconds(), frozen.addr)

	// Frozen until node 2 was named stalled for 5 s and node 3 was named
	// too, or maxFreeze.
	for time.Since(freezeAt) < maxFreeze {
		var first, last time.Time
		n3 := false
		for _, l := range pl.snapshot() {
			if l.at.Sub(freezeAt) < 3*time.Second {
				continue
			}
			if _, ok := l.stalls[frozen.addr]; ok {
				if first.IsZero() {
					first = l.at
				}
				last = l.at
			}
			if _, ok := l.stalls[r.nodes[2].addr]; ok {
				n3 = true
			}
		}
		if !first.IsZero() && last.Sub(first) >= 5*time.Second && n3 {
			break
		}
		select {
		case <-exited:
			t.Fatalf("herd send ended while node 2 was frozen:\n%s", stdout.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := frozen.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	thawAt := time.Now()
	t.Logf("%.2fs: node 2 thawed after %.1fs", thawAt.Sub(begun).Seconds(), thawAt.Sub(freezeAt).Seconds())

	select {
	case <-exited:
	case <-time.After(sendTimeout):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("herd send did not finish within %v", sendTimeout)
	}
	smp.stop()
	s := &session{code: cmd.ProcessState.ExitCode(), out: stdout.String(), elapsed: time.Since(begun)}
	t.Logf("herd send exited %d after %.1fs:\n%s", s.code, s.elapsed.Seconds(), s.out)
	if s.code != 0 {
		t.Errorf("herd send exited %d, want 0: node 2 was thawed long before any bypass", s.code)
	}
	r.check(s, in, nil)
	for _, b := range pl.bad {
		if strings.HasPrefix(b, "herd: ") && strings.Contains(b, ", nodes: ") || strings.HasPrefix(b, "read: ") {
			t.Errorf("progress display not understood: %q", b)
		} else {
			t.Logf("herd send's terminal: %q", b)
		}
	}
	judgeStalls(t, r, pl.snapshot(), smp, size, frozenIdx, begun, freezeAt, thawAt)
}

// openPTY opens a new pseudo-terminal: its master, and the terminal a
// program writes to.
func openPTY() (master, term *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, s, nil
}

// judgeStalls checks every progress line against the samples (see
// TestStalledDisplay).
func judgeStalls(t *testing.T, r *ring, lines []progressLine, smp *stallSampler, size int64, frozenIdx int, begun, freezeAt, thawAt time.Time) {
	t.Helper()
	frozen := r.nodes[frozenIdx]
	// A window of node i's samples that the node's own reports cover: not
	// node 2's while it was frozen (and half a second either side).
	reported := func(i int, from, to time.Time) bool {
		return i != frozenIdx || to.Before(freezeAt.Add(-500*time.Millisecond)) || from.After(thawAt.Add(500*time.Millisecond))
	}
	type seen struct {
		at time.Time
		d  time.Duration
	}
	var shown []seen // node 2 named stalled while frozen
	claims := make([]int, len(r.nodes))
	for _, l := range lines {
		var notes []string // what the samples say of the nodes
		if l.count != len(l.stalls)+l.more {
			t.Errorf("%q: %d stalled, %d named", l.text, l.count, len(l.stalls)+l.more)
		}
		for _, nd := range r.nodes {
			state, ok := l.rows[nd.addr]
			d, named := l.stalls[nd.addr]
			if !ok || named != strings.HasPrefix(state, "stalled ") || named && state != "stalled "+d.String() {
				t.Errorf("%q: node %s's row says %q", l.text, nd.addr, state)
			}
		}
		during := !l.at.Before(freezeAt) && l.at.Before(thawAt)
		if during {
			notes = append(notes, fmt.Sprintf("node 2 frozen %.1fs", l.at.Sub(freezeAt).Seconds()))
		}
		for i, nd := range r.nodes {
			d, named := l.stalls[nd.addr]
			// Everything it will ever get (but for a few bytes of
			// control messages) had arrived half a second before the
			// line: it has the whole stream.
			if reported(i, l.at.Add(-500*time.Millisecond), l.at) {
				now, ok1 := smp.at(l.at.Add(-500 * time.Millisecond))
				end, ok2 := smp.final(i)
				if ok1 && ok2 && now.arrived[i] >= 0 && end-now.arrived[i] <= 512 {
					notes = append(notes, fmt.Sprintf("node %d has it all", i+1))
					if named {
						t.Errorf("%q: node %d (%s) named stalled %v, but the whole stream had arrived at it (%d bytes read or in its socket, %d at the end)", l.text, i+1, nd.addr, d, now.arrived[i], end)
					}
					if during {
						claims[i]++
					}
					continue
				}
			}
			// Reports go every 0.5 s and may wait 0.2 s behind data in
			// the port's queue: the one that says so reached the
			// sender 0.4 s before the line.
			from, to := l.at.Add(-1500*time.Millisecond), l.at.Add(-1100*time.Millisecond)
			if g, ok := smp.growth(i, from, to, false); ok && g >= 16<<10 && reported(i, from, to) {
				notes = append(notes, fmt.Sprintf("node %d got %d KiB in 0.4 s", i+1, g>>10))
				if named {
					t.Errorf("%q: node %d (%s) named stalled %v, but %d bytes arrived at it between 1.5 and 1.1 s before", l.text, i+1, nd.addr, d, g)
				}
				if during {
					claims[i]++
				}
				continue
			}
			from = l.at.Add(-3 * time.Second)
			g, ok := smp.growth(i, from, l.at, false)
			got, ok2 := smp.since(i, l.at)
			// (Once it got something: its meter runs.)
			if ok && ok2 && g <= 256 && got >= 64<<10 && got < size && reported(i, from, l.at) {
				notes = append(notes, fmt.Sprintf("node %d got %d bytes in 3 s", i+1, g))
				if !named {
					t.Errorf("%q: node %d (%s) got %d bytes in the 3 s before, with %d of %d read, and is not named stalled", l.text, i+1, nd.addr, g, got, size)
				} else if d2, ok := l.stalls[frozen.addr]; ok && during && i > frozenIdx && d > d2+time.Second {
					t.Errorf("%q: node %d last moved %v ago, before node 2 (%v), its only source", l.text, i+1, d, d2)
				}
				if during {
					claims[i]++
				}
			}
		}
		t.Logf("%6.2fs %s [%s]", l.at.Sub(begun).Seconds(), l.text, strings.Join(notes, "; "))
		if during && l.at.Sub(freezeAt) >= 3*time.Second {
			d, ok := l.stalls[frozen.addr]
			if !ok {
				t.Errorf("%q, %.1fs after node 2 (%s) froze: it is not named stalled", l.text, l.at.Sub(freezeAt).Seconds(), frozen.addr)
				continue
			}
			if want := l.at.Sub(freezeAt); d < want-1500*time.Millisecond || d > want+1500*time.Millisecond {
				t.Errorf("%q: node 2 last moved %v ago, but it froze %.1fs before", l.text, d, want.Seconds())
			}
			shown = append(shown, seen{l.at, d})
		}
	}
	if len(shown) < 2 {
		t.Errorf("%d lines named the frozen node 2 stalled, want at least 2 (it was frozen %.1fs)", len(shown), thawAt.Sub(freezeAt).Seconds())
	}
	// Shown in whole seconds, twice a second: from one redraw to the
	// next the time since node 2 last moved grows by 0 or 1 s, and over
	// all of them with the time.
	for i := 1; i < len(shown); i++ {
		a, b := shown[i-1], shown[i]
		if grew, elapsed := b.d-a.d, b.at.Sub(a.at); grew < 0 || grew < elapsed-1500*time.Millisecond || grew > elapsed+1500*time.Millisecond {
			t.Errorf("node 2's time since it last moved went from %v to %v in %.1fs", a.d, b.d, elapsed.Seconds())
		}
	}
	if n := len(shown); n >= 2 {
		a, b := shown[0], shown[n-1]
		if grew, elapsed := b.d-a.d, b.at.Sub(a.at); grew <= 0 || grew < elapsed-1500*time.Millisecond || grew > elapsed+1500*time.Millisecond {
			t.Errorf("while node 2 was frozen the time since it last moved went from %v to %v in %.1fs", a.d, b.d, elapsed.Seconds())
		}
	}
	for i, n := range claims {
		if i != frozenIdx && n == 0 {
			t.Errorf("no line while node 2 was frozen came when the samples told whether node %d moved: nothing was checked of it", i+1)
		}
	}
	t.Logf("node 2 named stalled in %d lines while frozen; lines judged by the samples while it was frozen, per node: %v", len(shown), claims)
}

// progressLine is one redraw of herd send's progress table: its foot,
// the progress line, and the states of the rows above it.
type progressLine struct {
	at     time.Time // when the test read it
	text   string
	count  int                      // "(N stalled, ..."
	stalls map[string]time.Duration // node → how long ago it last moved
	more   int                      // "... and N more"
	rows   map[string]string        // node → its row's state
}

var (
	progressLineRE = regexp.MustCompile(`^herd: .*, nodes: \d+ receiving, \d+ done, \d+ failed(?: \((\d+) stalled, last moved: (.*?)(?: and (\d+) more)? ago\))?`)
	stalledNodeRE  = regexp.MustCompile(`^(\S+) (\S+)$`)
	// A row of the table: NODE STATE BYTES MB/s ETA; STATE is "stalled
	// 3s" for a stalled node.
	tableRowRE = regexp.MustCompile(`^(\S+) +(stalled \S+|\S+) +[0-9.]+ (?:B|KiB|MiB|GiB) +[0-9.]+ +\S+$`)
	// ANSI control sequences (cursor up, erase line) of the redraws.
	csiRE = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")
)

// progressLines collects the redraws of herd send's progress table.
type progressLines struct {
	mu    sync.Mutex
	lines []progressLine
	bad   []string // lines that are neither
	rows  map[string]string
}

// read reads the terminal's master to its end (EIO once herd send, the
// last holder of the terminal, exited).
func (p *progressLines) read(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		text, err := br.ReadString('\n')
		at := time.Now()
		text = strings.TrimRight(csiRE.ReplaceAllString(text, ""), "\r\n")
		p.mu.Lock()
		switch m := tableRowRE.FindStringSubmatch(text); {
		case text == "" || strings.HasPrefix(text, "NODE "):
			p.rows = map[string]string{}
		case m != nil:
			if p.rows == nil {
				p.rows = map[string]string{}
			}
			p.rows[m[1]] = m[2]
		default:
			if l, ok := parseProgressLine(text); ok {
				l.at, l.rows = at, p.rows
				p.lines = append(p.lines, l)
			} else {
				p.bad = append(p.bad, text)
			}
			p.rows = nil
		}
		p.mu.Unlock()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EIO) {
				p.mu.Lock()
				p.bad = append(p.bad, "read: "+err.Error())
				p.mu.Unlock()
			}
			return
		}
	}
}

func (p *progressLines) snapshot() []progressLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]progressLine(nil), p.lines...)
}

func parseProgressLine(text string) (progressLine, bool) {
	m := progressLineRE.FindStringSubmatch(text)
	if m == nil {
		return progressLine{}, false
	}
	l := progressLine{text: text, stalls: map[string]time.Duration{}}
	if m[1] == "" {
		return l, true
	}
	l.count, _ = strconv.Atoi(m[1])
	if m[3] != "" {
		l.more, _ = strconv.Atoi(m[3])
	}
	for _, item := range strings.Split(m[2], ", ") {
		im := stalledNodeRE.FindStringSubmatch(item)
		if im == nil {
			return progressLine{}, false
		}
		d, err := time.ParseDuration(im[2])
		if err != nil {
			return progressLine{}, false
		}
		l.stalls[im[1]] = d
	}
	return l, true
}

// stallSampler records, every 100 ms, what each node's herd recv has of
// the stream by its own account, read from /proc without starting a
// process: the bytes it read (rchar of /proc/PID/io: its upstream's data,
// and a few control messages) and the bytes waiting in its upstream data
// socket (rx_queue of /proc/PID/net/tcp, local port 9998). Their sum is
// what the node reports as arrived; rchar alone bounds what it reports
// as received.
type stallSampler struct {
	mu      sync.Mutex
	samples []stallSample
	quit    chan struct{}
	done    chan struct{}
	stop    func()
}

type stallSample struct {
	at      time.Time
	read    []int64 // rchar; -1: unknown (the node exited)
	arrived []int64 // rchar + the upstream socket's queue; -1: unknown
}

func startStallSampler(r *ring) *stallSampler {
	s := &stallSampler{quit: make(chan struct{}), done: make(chan struct{})}
	s.stop = sync.OnceFunc(func() { close(s.quit); <-s.done })
	go func() {
		defer close(s.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			smp := stallSample{at: time.Now()}
			for _, nd := range r.nodes {
				read, queued := int64(-1), int64(-1)
				if nd.cmd != nil && nd.cmd.Process != nil {
					read, queued = procRead(nd.cmd.Process.Pid), procDataQueue(nd.cmd.Process.Pid)
				}
				arrived := int64(-1)
				if read >= 0 && queued >= 0 {
					arrived = read + queued
				}
				smp.read = append(smp.read, read)
				smp.arrived = append(smp.arrived, arrived)
			}
			s.mu.Lock()
			s.samples = append(s.samples, smp)
			s.mu.Unlock()
			select {
			case <-s.quit:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// procRead is rchar of process pid: the bytes its read calls returned
// (sockets included); -1 when it cannot be read.
func procRead(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// herdDataPort is where a node takes its upstream's data connection.
const herdDataPort = 9998

// procDataQueue is the bytes waiting to be read in the TCP connections
// to port herdDataPort (a node's upstream data) of pid's network
// namespace; -1 when it cannot be read.
func procDataQueue(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return -1
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 || f[3] == "0A" { // not a connection, or listening
			continue
		}
		_, port, ok := strings.Cut(f[1], ":")
		if p, err := strconv.ParseUint(port, 16, 16); !ok || err != nil || p != herdDataPort {
			continue
		}
		_, rxq, ok := strings.Cut(f[4], ":")
		q, err := strconv.ParseInt(rxq, 16, 64)
		if !ok || err != nil {
			return -1
		}
		n += q
	}
	return n
}

// growth is how much node i's count (arrived, or read when read is set)
// grew between the last samples taken by from and by to; false when
// unknown.
func (s *stallSampler) growth(i int, from, to time.Time, read bool) (int64, bool) {
	a, ok := s.at(from)
	if !ok {
		return 0, false
	}
	b, ok := s.at(to)
	if !ok {
		return 0, false
	}
	x, y := a.arrived[i], b.arrived[i]
	if read {
		x, y = a.read[i], b.read[i]
	}
	if x < 0 || y < 0 {
		return 0, false
	}
	return y - x, true
}

// since is what node i read from the first sample to the last one taken
// by t (the nodes were idle at the first): an upper bound of what it
// received of the stream.
func (s *stallSampler) since(i int, t time.Time) (int64, bool) {
	s.mu.Lock()
	if len(s.samples) == 0 {
		s.mu.Unlock()
		return 0, false
	}
	first := s.samples[0]
	s.mu.Unlock()
	return s.growth(i, first.at, t, true)
}

// final is node i's last known arrived count.
func (s *stallSampler) final(i int) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for j := len(s.samples) - 1; j >= 0; j-- {
		if v := s.samples[j].arrived[i]; v >= 0 {
			return v, true
		}
	}
	return 0, false
}

// at is the last sample taken by t.
func (s *stallSampler) at(t time.Time) (stallSample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last stallSample
	ok := false
	for _, smp := range s.samples {
		if smp.at.After(t) {
			break
		}
		last, ok = smp, true
	}
	return last, ok
}
