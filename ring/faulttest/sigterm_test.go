//go:build nettest

package faulttest

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNodeSIGTERM: a node stops promptly when told to (SIGTERM: an
// administrator, systemd), even in the worst place: mid-session, its
// sender gone behind a dead link (the hub's side of its veth down, so no
// FIN or RST ever comes) and --sender-wait keeping the session open for
// minutes. It used to wait out byeWait + --sender-wait for the sender's
// word.
func TestNodeSIGTERM(t *testing.T) {
	r := newRing(t, 2)
	r.start()
	in := r.input(32 << 20)
	sr := r.startSend(in, "--sender-wait", "5m")
	r.waitOutput(sr, 1, 4<<20)
	for _, nd := range r.nodes {
		r.hub.IP("link", "set", nd.peer, "down")
	}
	sr.kill(t)
	time.Sleep(time.Second)
	start := time.Now()
	for _, nd := range r.nodes {
		if err := nd.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for i, nd := range r.nodes {
		select {
		case <-nd.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("node %d still runs %v after SIGTERM:\n%s", i+1, time.Since(start).Round(time.Millisecond), tail(nd.log))
		}
		if code := nd.cmd.ProcessState.ExitCode(); code == 0 {
			t.Errorf("node %d exited 0 after an interrupted session", i+1)
		}
		if log := tail(nd.log); !strings.Contains(log, "terminated") {
			t.Errorf("node %d does not say it was told to stop:\n%s", i+1, log)
		}
	}
	t.Logf("both nodes ended %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}
