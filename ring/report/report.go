// Package report renders a session for humans and scripts: the live
// progress table (redrawn on a terminal, a line every few seconds
// otherwise), the final per-node summary with dolly's totals, and dolly's
// -o log file lines.
package report

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/herdproject/herd/ring/sender"
)

// MB is dolly's megabyte for rates: 10^6 bytes.
const MB = 1e6

// Progress draws a session's progress on w.
type Progress struct {
	w        io.Writer
	tty      bool
	every    time.Duration
	mu       sync.Mutex
	lines    int
	lastLine time.Time
}

// NewProgress draws on w; tty redraws a table in place (ANSI), otherwise a
// summary line goes out every interval (0 = 5 s).
func NewProgress(w io.Writer, tty bool, interval time.Duration) *Progress {
	if interval == 0 {
		interval = 5 * time.Second
	}
	return &Progress{w: w, tty: tty, every: interval}
}

// Update is a sender.Config.Watch function.
func (p *Progress) Update(r *sender.Report) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.table(r)
		return
	}
	if r.Done || time.Since(p.lastLine) < p.every {
		return
	}
	p.lastLine = time.Now()
	fmt.Fprintln(p.w, Line(r))
}

// StallAfter is how long a receiving node may get nothing before it shows
// as stalled.
const StallAfter = 2 * time.Second

// stalled tells how long ago a receiving node last moved (got bytes or
// took them from its socket), when that is StallAfter or more and the
// whole stream has not arrived at it yet: a node that holds the rest of
// the stream, read or waiting in its socket, and waits for its children
// is not stalled.
func stalled(n sender.NodeReport, r *sender.Report, now time.Time) (time.Duration, bool) {
	if n.State != sender.StateReceiving || n.Moved.IsZero() || r.Total > 0 && n.Received >= r.Total || r.Stream > 0 && n.Arrived >= r.Stream {
		return 0, false
	}
	d := now.Sub(n.Moved)
	return d.Round(time.Second), d >= StallAfter
}

// Line is a one-line summary of the session so far.
func Line(r *sender.Report) string {
	return line(r, time.Now())
}

func line(r *sender.Report, now time.Time) string {
	counts := map[sender.State]int{}
	var rate, least float64
	least = -1
	var stalls []string
	for _, n := range r.Nodes {
		counts[n.State]++
		if d, ok := stalled(n, r, now); ok {
			stalls = append(stalls, fmt.Sprintf("%s %v", n.Name, d))
		}
		if n.State == sender.StateReceiving {
			rate += n.Rate
			if least < 0 || float64(n.Received) < least {
				least = float64(n.Received)
			}
		}
	}
	s := fmt.Sprintf("herd: %.1fs sent %s", r.Seconds, size(r.Sent))
	if r.Total > 0 {
		s += " of " + size(r.Total)
	}
	s += fmt.Sprintf(", nodes: %d receiving, %d done, %d failed", counts[sender.StateReceiving], counts[sender.StateDone], counts[sender.StateFailed])
	if len(stalls) > 0 {
		const most = 4
		more, count := "", len(stalls)
		if len(stalls) > most {
			more = fmt.Sprintf(" and %d more", len(stalls)-most)
			stalls = stalls[:most]
		}
		s += fmt.Sprintf(" (%d stalled, last moved: %s%s ago)", count, strings.Join(stalls, ", "), more)
	}
	if n := counts[sender.StateReceiving]; n > 0 {
		per := rate / float64(n)
		s += ", " + mbps(per) + " per node"
		if r.Total > 0 && per > 0 && least >= 0 {
			s += ", ETA " + eta(float64(r.Total)-least, per)
		}
	}
	return s
}

// mbps formats bytes per second as MB/s, with two decimals below 10 MB/s
// (slow links) and one above.
func mbps(bps float64) string {
	if bps < 10*MB {
		return fmt.Sprintf("%.2f MB/s", bps/MB)
	}
	return fmt.Sprintf("%.1f MB/s", bps/MB)
}

// eta is the time to move left bytes at rate bytes per second.
func eta(left, rate float64) string {
	return (time.Duration(left / rate * float64(time.Second))).Round(time.Second).String()
}

func (p *Progress) table(r *sender.Report) {
	var b strings.Builder
	if p.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.lines)
	}
	fmt.Fprintf(&b, "\x1b[2K%-20s %-12s %12s %10s %8s\n", "NODE", "STATE", "BYTES", "MB/s", "ETA")
	now := time.Now()
	for _, n := range r.Nodes {
		left := "-"
		if n.State == sender.StateReceiving && n.Rate > 0 && r.Total > 0 {
			left = eta(float64(r.Total-n.Received), n.Rate)
		}
		state := string(n.State)
		if d, ok := stalled(n, r, now); ok {
			state = fmt.Sprintf("stalled %v", d)
		}
		fmt.Fprintf(&b, "\x1b[2K%-20s %-12s %12s %10.1f %8s\n", trim(n.Name, 20), state, size(n.Received), n.Rate/MB, left)
	}
	fmt.Fprintf(&b, "\x1b[2K%s\n", line(r, now))
	p.lines = len(r.Nodes) + 2
	io.WriteString(p.w, b.String())
}

func trim(s string, n int) string {
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// Totals are dolly's closing figures.
type Totals struct {
	Seconds   float64
	MBps      float64 // stream bytes / time: what each node got per second
	Aggregate float64 // MBps × nodes that verified
	Hosts     int
}

// Compute derives dolly's totals from a finished report.
func Compute(r *sender.Report) Totals {
	t := Totals{Seconds: r.Seconds, Hosts: len(r.Nodes)}
	if r.Seconds > 0 && r.Total > 0 {
		t.MBps = float64(r.Total) / MB / r.Seconds
	}
	done := len(r.Nodes) - len(r.Failed())
	t.Aggregate = t.MBps * float64(done)
	return t
}

// Summary writes one line per node and dolly's totals.
func Summary(w io.Writer, r *sender.Report) {
	fmt.Fprintf(w, "%-24s %-7s %14s %9s %9s %-8s %s\n", "NODE", "STATE", "BYTES", "SECONDS", "MB/s", "VERIFIED", "REASON")
	for _, n := range r.Nodes {
		mbps := 0.0
		if n.Seconds > 0 {
			mbps = float64(n.Received) / MB / n.Seconds
		}
		v := "no"
		if n.Verified {
			v = "yes"
		}
		reason := n.Reason
		if reason == "" && n.Joins > 0 {
			reason = "joined late, after: " + cmp.Or(n.JoinedAfter, "unknown")
		}
		fmt.Fprintf(w, "%-24s %-7s %14d %9.2f %9.1f %-8s %s\n", n.Name, n.State, n.Received, n.Seconds, mbps, v, reason)
	}
	t := Compute(r)
	fmt.Fprintf(w, "Time: %f\nMBytes/s: %.3f\nAggregate MBytes/s: %.3f\n", t.Seconds, t.MBps, t.Aggregate)
	if f := r.Failed(); len(f) > 0 {
		names := make([]string, len(f))
		for i, n := range f {
			names[i] = n.Name
		}
		fmt.Fprintf(w, "FAILED: %d of %d node(s): %s\n", len(f), len(r.Nodes), strings.Join(names, ","))
	}
}

// SegmentSize is the number dolly 0.72 writes in its log's segment size
// column, whatever the connections' MSS: scripts split that line by
// columns.
const SegmentSize = 1460

// Log appends dolly 0.72's -o lines for a finished session, byte for
// byte: the output ("outfile = 'OUT'", one per file), then without
// verbose the statistics line " %8d %8u%4lu.%06lu  %4.6f  %4.6f  " (the
// segment size 1460, the clients, the seconds, MB/s and aggregate MB/s),
// with verbose the lines "Standard TCP segment size", "Server",
// "Nr of childs", "Nr of hosts", "Time", "MBytes/s" and "Aggregate
// MBytes/s". dolly 0.72 writes the verbose Time's microseconds with
// %03lu ("0.31455 sec" for 31455 µs); herd writes them with six digits,
// as in the statistics line ("0.031455 sec"). herd adds a line "failed = 'NODE' (REASON)" per failed node
// (dolly has no such thing); its aggregate counts the verified clients.
// server names this host and childs is the server's children (the ring's
// fanout).
func Log(w io.Writer, r *sender.Report, server string, childs int, verbose bool) error {
	t := Compute(r)
	var b strings.Builder
	for _, o := range r.Outputs {
		fmt.Fprintf(&b, "outfile = '%s'\n", o)
	}
	us := int64(t.Seconds*1e6 + 0.5)
	if verbose {
		fmt.Fprintf(&b, "Standard TCP segment size : %d Bytes (1514 Byte eth)\n", SegmentSize)
		fmt.Fprintf(&b, "Server : '%s'\nNr of childs = %d\nNr of hosts = %d\n", server, childs, t.Hosts)
		fmt.Fprintf(&b, "Time: %d.%06d sec\nMBytes/s: %0.3f\nAggregate MBytes/s: %0.3f\n", us/1e6, us%1e6, t.MBps, t.Aggregate)
	} else {
		fmt.Fprintf(&b, " %8d %8d%4d.%06d  %4.6f  %4.6f  \n", SegmentSize, t.Hosts, us/1e6, us%1e6, t.MBps, t.Aggregate)
	}
	for _, n := range r.Failed() {
		fmt.Fprintf(&b, "failed = '%s' (%s)\n", n.Name, strings.ReplaceAll(n.Reason, "\n", " "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
