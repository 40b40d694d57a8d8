//go:build nettest

package faulttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sendRun is a herd send process started in the hub.
type sendRun struct {
	cmd    *exec.Cmd
	out    string // its standard output and error
	exited chan struct{}
	start  time.Time
}

// startSend starts herd send from the hub with args after the ring's
// hosts, input and output.
func (r *ring) startSend(in string, args ...string) *sendRun {
	r.t.Helper()
	sr := &sendRun{out: filepath.Join(r.dir, fmt.Sprintf("send-%d.out", time.Now().UnixNano())), exited: make(chan struct{})}
	f, err := os.Create(sr.out)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	sr.cmd = r.hub.Command(herdBin, append([]string{"send", "-q", "-H", r.addrs(), "-I", in, "-O", "out.img"}, args...)...)
	sr.cmd.Stdout, sr.cmd.Stderr = f, f
	sr.start = time.Now()
	if err := sr.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() { _ = sr.cmd.Wait(); close(sr.exited) }()
	r.t.Cleanup(func() {
		select {
		case <-sr.exited:
		default:
			_ = sr.cmd.Process.Kill()
			<-sr.exited
		}
	})
	return sr
}

// waitOutput waits until node (1-based) wrote at least n bytes, failing
// the test after a minute or when the sender exits first.
func (r *ring) waitOutput(sr *sendRun, node int, n int64) {
	r.t.Helper()
	out := filepath.Join(r.nodes[node-1].dir, "out.img")
	deadline := time.Now().Add(time.Minute)
	for {
		if fi, err := os.Stat(out); err == nil && fi.Size() >= n {
			return
		}
		select {
		case <-sr.exited:
			r.t.Fatalf("the sender ended before node %d wrote %d bytes:\n%s", node, n, tail(sr.out))
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("node %d did not write %d bytes within a minute", node, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// wait waits for the sender to exit and returns the session.
func (sr *sendRun) wait(t *testing.T) *session {
	t.Helper()
	select {
	case <-sr.exited:
	case <-time.After(sendTimeout):
		_ = sr.cmd.Process.Kill()
		<-sr.exited
		t.Fatalf("the sender did not finish within %v:\n%s", sendTimeout, tail(sr.out))
	}
	b, _ := os.ReadFile(sr.out)
	return &session{code: sr.cmd.ProcessState.ExitCode(), out: string(b), elapsed: time.Since(sr.start)}
}

// kill ends the sender with SIGKILL, by its PID.
func (sr *sendRun) kill(t *testing.T) {
	t.Helper()
	if err := sr.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-sr.exited
}

// TestSenderRestart: herd send killed with SIGKILL in the middle of a
// session and started again with the same command resumes it: every node
// ends done and verified, its output equal to the input, nothing reset by
// hand, and the restart is named. Killed at several places: early, in the
// middle, and once the last node has nearly everything.
func TestSenderRestart(t *testing.T) {
	const size = 16 << 20
	for _, tc := range []struct {
		name string
		node int     // whose progress triggers the kill
		frac float64 // of the image written there
		// freeze stops the first sender with SIGSTOP instead: it
		// vanishes without closing its connections (a sender whose
		// machine lost power), and is killed only at the end.
		freeze bool
	}{
		{"first node at 10%", 1, 0.10, false},
		{"first node at 50%, 2 MiB windows", 1, 0.50, false},
		{"last node at 90%", 4, 0.90, false},
		{"frozen, first node at 40%", 1, 0.40, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(t, 4)
			r.setRate(20_000_000)
			in := r.input(size)
			r.start()
			state := filepath.Join(r.dir, "state.json")
			args := []string{"--state", state, "--sender-wait", "60s"}
			if strings.Contains(tc.name, "2 MiB windows") {
				// The restarted sender's window moves past the first
				// node's place before it asks: it re-reads from there.
				args = append(args, "--window", "2M")
			}
			first := r.startSend(in, args...)
			r.waitOutput(first, tc.node, int64(tc.frac*size))
			if tc.freeze {
				if err := first.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
				defer first.kill(t)
			} else {
				first.kill(t)
			}
			t.Logf("%.2fs: sender stopped (freeze %v) with node %d at %.0f%%", time.Since(first.start).Seconds(), tc.freeze, tc.node, 100*tc.frac)
			if _, err := os.Stat(state); err != nil {
				t.Fatalf("no state file after the kill: %v\n%s", err, tail(first.out))
			}
			time.Sleep(time.Second)
			again := r.startSend(in, args...)
			s := again.wait(t)
			t.Logf("the restarted herd send exited %d after %.1fs:\n%s", s.code, s.elapsed.Seconds(), s.out)
			if s.code != 0 {
				t.Errorf("the restarted sender exited %d, want 0", s.code)
			}
			if !strings.Contains(s.out, "resumed after 1 restart") {
				t.Errorf("the restarted sender does not say that it resumed the session")
			}
			r.check(s, in, nil)
			if _, err := os.Stat(state); err == nil {
				t.Errorf("the state file %s is still there after the session ended", state)
			}
			for i, nd := range r.nodes {
				b, _ := os.ReadFile(nd.log)
				want := "waiting up to 1m0s for the sender to come back"
				if tc.freeze {
					want = "a sender resumes session"
				}
				if !strings.Contains(string(b), want) {
					t.Errorf("node %d does not say %q:\n%s", i+1, want, tail(nd.log))
				}
			}
		})
	}
}

// TestSenderRestartOtherImage: a sender started again after a kill with
// the same command but an input whose content changed refuses to resume
// (exit 2, naming the change and --fresh); with
// --fresh it drops the old session on the nodes (herd recv --serve, which
// take the next session) and sends the new image to all of them.
func TestSenderRestartOtherImage(t *testing.T) {
	const size = 8 << 20
	r := newRing(t, 3)
	r.recvArgs = []string{"--serve"}
	r.setRate(20_000_000)
	in := r.input(size)
	r.start()
	state := filepath.Join(r.dir, "state.json")
	args := []string{"--state", state, "--sender-wait", "60s"}
	first := r.startSend(in, args...)
	r.waitOutput(first, 1, size/4)
	first.kill(t)

	// Another image under the same name.
	in = r.input(size)
	refused := r.startSend(in, args...).wait(t)
	t.Logf("herd send with a changed input exited %d:\n%s", refused.code, refused.out)
	if refused.code != 2 {
		t.Errorf("exit %d, want 2", refused.code)
	}
	for _, want := range []string{"the image changed", "--fresh", state} {
		if !strings.Contains(refused.out, want) {
			t.Errorf("the refusal does not say %q", want)
		}
	}
	if _, err := os.Stat(state); err != nil {
		t.Errorf("the refusal removed the state file: %v", err)
	}

	fresh := r.startSend(in, append(args, "--fresh")...).wait(t)
	t.Logf("herd send --fresh exited %d after %.1fs:\n%s", fresh.code, fresh.elapsed.Seconds(), fresh.out)
	if fresh.code != 0 {
		t.Errorf("herd send --fresh exited %d, want 0", fresh.code)
	}
	r.check(fresh, in, nil)
	for i, nd := range r.nodes {
		b, _ := os.ReadFile(nd.log)
		if !strings.Contains(string(b), "the sender started a fresh session (--fresh)") {
			t.Errorf("node %d does not say that the old session was dropped:\n%s", i+1, tail(nd.log))
		}
	}
}

// TestSenderGone: nodes whose sender was killed and never comes back wait
// --sender-wait, say so, and end their session failed (herd recv exits
// non-zero) soon after it, not before and not forever.
func TestSenderGone(t *testing.T) {
	const size = 8 << 20
	const wait = 4 * time.Second
	r := newRing(t, 3)
	r.setRate(20_000_000)
	in := r.input(size)
	r.start()
	sr := r.startSend(in, "--state", filepath.Join(r.dir, "state.json"), "--sender-wait", wait.String())
	r.waitOutput(sr, 1, size/4)
	sr.kill(t)
	killed := time.Now()
	for i, nd := range r.nodes {
		select {
		case <-nd.done:
		case <-time.After(wait + 30*time.Second):
			t.Fatalf("node %d still runs %v after its sender was killed (--sender-wait %v)", i+1, time.Since(killed).Round(time.Second), wait)
		}
		took := time.Since(killed)
		if code := nd.cmd.ProcessState.ExitCode(); code == 0 {
			t.Errorf("node %d exited 0 without its sender", i+1)
		}
		b, _ := os.ReadFile(nd.log)
		for _, want := range []string{"waiting up to 4s for the sender to come back", "did not come back within 4s"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("node %d does not say %q:\n%s", i+1, want, tail(nd.log))
			}
		}
		if i == 0 && took < wait {
			t.Errorf("node 1 gave up %v after the kill, before --sender-wait %v", took.Round(time.Millisecond), wait)
		}
		t.Logf("node %d ended %v after the kill", i+1, took.Round(100*time.Millisecond))
	}
}
