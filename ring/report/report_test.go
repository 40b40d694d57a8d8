package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/ring/sender"
)

func finished() *sender.Report {
	return &sender.Report{
		Total: 200e6, Seconds: 2, Done: true, Outputs: []string{"/dev/sda"},
		Nodes: []sender.NodeReport{
			{Name: "node1", State: sender.StateDone, Verified: true, Received: 200e6, Seconds: 2},
			{Name: "node2", State: sender.StateDone, Verified: true, Received: 200e6, Seconds: 1.9},
			{Name: "node3", State: sender.StateFailed, Reason: "lost contact", Received: 5e6, Seconds: 0.5},
		},
	}
}

// TestLogFormat: dolly 0.72's -o lines byte for byte (transmit.c), with
// and without -v, plus herd's failed lines.
func TestLogFormat(t *testing.T) {
	var b bytes.Buffer
	if err := Log(&b, finished(), "srv", 1, true); err != nil {
		t.Fatal(err)
	}
	want := "outfile = '/dev/sda'\nStandard TCP segment size : 1460 Bytes (1514 Byte eth)\nServer : 'srv'\nNr of childs = 1\nNr of hosts = 3\n" +
		"Time: 2.000000 sec\nMBytes/s: 100.000\nAggregate MBytes/s: 200.000\nfailed = 'node3' (lost contact)\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	b.Reset()
	_ = Log(&b, finished(), "srv", 1, false)
	want = "outfile = '/dev/sda'\n     1460        3   2.000000  100.000000  200.000000  \nfailed = 'node3' (lost contact)\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("without -v (-want +got):\n%s", diff)
	}
	// The columns a script reads: segment size, clients, seconds, MB/s,
	// aggregate.
	f := strings.Fields(strings.Split(b.String(), "\n")[1])
	if len(f) != 5 || f[0] != "1460" || f[1] != "3" || f[2] != "2.000000" {
		t.Errorf("columns %q", f)
	}
}

func TestSummary(t *testing.T) {
	var b bytes.Buffer
	Summary(&b, finished())
	out := b.String()
	for _, want := range []string{
		"node1                    done         200000000      2.00     100.0 yes",
		"node3                    failed         5000000      0.50      10.0 no       lost contact",
		"Time: 2.000000\nMBytes/s: 100.000\nAggregate MBytes/s: 200.000\n",
		"FAILED: 1 of 3 node(s): node3\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestProgressLine(t *testing.T) {
	r := finished()
	r.Done = false
	r.Nodes[0].State, r.Nodes[0].Rate, r.Nodes[0].Received = sender.StateReceiving, 50e6, 100e6
	var b bytes.Buffer
	p := NewProgress(&b, false, 1)
	p.Update(r)
	if got := b.String(); !strings.Contains(got, "1 receiving, 1 done, 1 failed, 50.0 MB/s per node, ETA 2s") {
		t.Errorf("progress line: %q", got)
	}
	b.Reset()
	NewProgress(&b, true, 0).Update(r)
	if got := b.String(); !strings.Contains(got, "NODE") || strings.Count(got, "\n") != len(r.Nodes)+2 {
		t.Errorf("table: %q", got)
	}
}

// A receiving node that got nothing for StallAfter or more shows as
// stalled, with how long ago it last moved, in the line and the table;
// one that moved a moment ago does not.
func TestStalled(t *testing.T) {
	now := time.Now()
	r := finished()
	r.Done = false
	r.Nodes[0].State, r.Nodes[0].Moved, r.Nodes[0].Rate = sender.StateReceiving, now.Add(-7*time.Second), 0
	r.Nodes[0].Received = r.Total / 2
	r.Nodes[1].State, r.Nodes[1].Moved, r.Nodes[1].Rate = sender.StateReceiving, now.Add(-100*time.Millisecond), 1e6
	r.Nodes[1].Received = r.Total / 2
	// One that has the whole stream and waits for its children is not
	// stalled.
	r.Nodes[2].State, r.Nodes[2].Moved, r.Nodes[2].Received = sender.StateReceiving, now.Add(-9*time.Second), r.Total
	got := line(r, now)
	want := "(1 stalled, last moved: " + r.Nodes[0].Name + " 7s ago)"
	if !strings.Contains(got, want) || strings.Contains(got, r.Nodes[1].Name) || strings.Contains(got, r.Nodes[2].Name) {
		t.Errorf("line %q, want it to name only %s: %q", got, r.Nodes[0].Name, want)
	}
	// Nor one to which the rest of the stream has arrived, unread in its
	// socket; one short of the stream's last byte is.
	r.Stream = r.Total + 1000
	r.Nodes[2].Received, r.Nodes[2].Arrived = r.Total/2, r.Stream
	if got := line(r, now); strings.Contains(got, r.Nodes[2].Name) {
		t.Errorf("line %q names %s, to which the whole stream arrived", got, r.Nodes[2].Name)
	}
	r.Nodes[2].Arrived = r.Stream - 1
	if got := line(r, now); !strings.Contains(got, r.Nodes[2].Name+" 9s ago") {
		t.Errorf("line %q does not name %s, one byte short of the stream for 9s", got, r.Nodes[2].Name)
	}
	r.Nodes[2].Received, r.Nodes[2].Arrived = r.Total, 0
	var b bytes.Buffer
	NewProgress(&b, true, 0).Update(r)
	if tbl := b.String(); !strings.Contains(tbl, "stalled 7s") || strings.Count(tbl, "stalled") != 2 {
		t.Errorf("table: %q, want node 1 stalled 7s (and the line)", tbl)
	}
}
