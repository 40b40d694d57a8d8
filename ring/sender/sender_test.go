package sender_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/relay"
	"github.com/herdproject/herd/ring/sender"
	"github.com/herdproject/herd/ring/wire"
)

// Ports of this package's nodes, on 127.0.4.x, apart from other packages'.
const dataPort, controlPort = 19998, 19997

// startNode runs a one-session node on addr writing under dir; the
// returned channel gets Serve's result.
func startNode(t *testing.T, addr string) <-chan error {
	t.Helper()
	n, err := relay.Listen(relay.Config{ListenAddr: addr, DataPort: dataPort, ControlPort: controlPort, ReportPort: -1, Once: true, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	done, stopped := make(chan error, 1), make(chan struct{})
	go func() { done <- n.Serve(ctx); close(stopped) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Error("node did not stop")
		}
	})
	return done
}

func input(t *testing.T) (string, []byte) {
	t.Helper()
	b := make([]byte, 3<<20+123)
	r := rand.New(rand.NewChaCha8([32]byte{7}))
	for i := range b[:1<<20] {
		b[i] = byte(r.Uint32())
	}
	copy(b[2<<20:], b[:1<<20]) // data, a 1 MiB hole, data, a short tail of zeros
	clear(b[3<<20:])
	p := filepath.Join(t.TempDir(), "in.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func send(t *testing.T, in string, out []string, hosts ...string) (*sender.Report, error) {
	t.Helper()
	files := make([]plan.File, len(out))
	for i, o := range out {
		files[i] = plan.File{Input: in, Output: o}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return sender.Send(ctx, sender.Config{
		Plan:     plan.Session{Files: files, Hosts: hosts},
		DataPort: dataPort, ControlPort: controlPort, ReportPort: -1,
		ChunkSize: 64 << 10, Retries: 2, NoSync: true,
	})
}

// Two files through a chain of two nodes: both nodes write both files
// byte for byte and the report says verified.
func TestSession(t *testing.T) {
	in, want := input(t)
	d1, d2 := startNode(t, "127.0.4.1"), startNode(t, "127.0.4.2")
	dir := t.TempDir()
	// Both nodes run in this process: give the outputs distinct names by
	// using the same path twice, written by each node in turn.
	outs := []string{filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")}
	rep, err := send(t, in, outs, "127.0.4.1", "127.0.4.2")
	if err != nil {
		t.Fatalf("send: %v (%+v)", err, rep)
	}
	for _, n := range rep.Nodes {
		if n.State != sender.StateDone || !n.Verified || n.Received != 2*int64(len(want)) {
			t.Errorf("node %s: %+v", n.Name, n)
		}
	}
	for _, o := range outs {
		got, err := os.ReadFile(o)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v", o, len(got), err)
		}
	}
	for _, d := range []<-chan error{d1, d2} {
		if err := <-d; err != nil {
			t.Errorf("node: %v", err)
		}
	}
}

// A connection to the control port that never becomes a session does not
// use up a one-session node.
func TestStrayConnection(t *testing.T) {
	in, want := input(t)
	done := startNode(t, "127.0.4.3")
	c, err := net.Dial("tcp", "127.0.4.3:19997")
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c.Close()
	out := filepath.Join(t.TempDir(), "out.img")
	if _, err := send(t, in, []string{out}, "127.0.4.3"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Error("output differs")
	}
	if err := <-done; err != nil {
		t.Errorf("node: %v", err)
	}
}

// A node that refuses its output at set-up is reported failed, the other
// one is done, and the error says some nodes failed.
func TestSetupRefusal(t *testing.T) {
	in, want := input(t)
	startNode(t, "127.0.4.4")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.img")
	// 127.0.4.5 has no node: it cannot be reached.
	rep, err := send(t, in, []string{out}, "127.0.4.4", "127.0.4.5")
	if !errors.Is(err, sender.ErrNodesFailed) {
		t.Fatalf("err = %v, want ErrNodesFailed", err)
	}
	if n := rep.Nodes[0]; n.State != sender.StateDone || !n.Verified {
		t.Errorf("reachable node: %+v", n)
	}
	if n := rep.Nodes[1]; n.State != sender.StateFailed || n.Reason == "" {
		t.Errorf("unreachable node: %+v", n)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Error("output of the reachable node differs")
	}
}

func TestDefaultChunkSize(t *testing.T) {
	for _, c := range []struct{ n, want int }{{0, 512 << 10}, {1, 512 << 10}, {16, 512 << 10}, {17, 256 << 10}, {500, 256 << 10}} {
		if got := sender.DefaultChunkSize(c.n); got != c.want {
			t.Errorf("DefaultChunkSize(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}

// TestSessionDigests: a session verifies with the algorithm it is given
// (the tree digest by default): the sender's digest and the node's are
// those of the input's bytes in that algorithm, holes included.
func TestSessionDigests(t *testing.T) {
	in, want := input(t)
	for i, alg := range []digest.Alg{"", digest.Tree, digest.SHA256} {
		t.Run(string(alg), func(t *testing.T) {
			addr := fmt.Sprintf("127.0.4.%d", 40+i)
			startNode(t, addr)
			out := filepath.Join(t.TempDir(), "out.img")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			rep, err := sender.Send(ctx, sender.Config{
				Plan:     plan.Session{Files: []plan.File{{Input: in, Output: out}}, Hosts: []string{addr}},
				DataPort: dataPort, ControlPort: controlPort, ReportPort: -1,
				ChunkSize: 64 << 10, Retries: 2, NoSync: true, NoDigestCache: true, Digest: alg,
			})
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			a := alg
			if a == "" {
				a = digest.Default
			}
			h := digest.New(a)
			h.Write(want)
			w := hex.EncodeToString(h.Sum(nil))
			if rep.Digests[0] != w || rep.Nodes[0].Files[0].Digest != w || !rep.Nodes[0].Verified {
				t.Errorf("%s: sender %s, node %s (verified %v), want %s", a, rep.Digests[0], rep.Nodes[0].Files[0].Digest, rep.Nodes[0].Verified, w)
			}
		})
	}
	// An algorithm nobody knows is refused before anything is sent.
	_, err := sender.Send(context.Background(), sender.Config{
		Plan:     plan.Session{Files: []plan.File{{Input: in, Output: "/nonexistent/out"}}, Hosts: []string{"127.0.4.49"}},
		DataPort: dataPort, ControlPort: controlPort, ReportPort: -1, Digest: "md5",
	})
	var se *sender.SetupError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), `unknown digest "md5"`) {
		t.Errorf("--digest md5: %v", err)
	}
}

// TestBusyNode: a node that answers set-up with "busy" (still ending its
// last session: the one just before, or one a --fresh sender dropped) is
// asked again until it takes the session, instead of being failed at once.
func TestBusyNode(t *testing.T) {
	in, want := input(t)
	const addr = "127.0.4.9"
	ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", addr, controlPort))
	if err != nil {
		t.Fatal(err)
	}
	// The node's last session holds its control port for two more
	// set-ups: each is refused as relay's refuseBusy does.
	refusals := make(chan struct{})
	go func() {
		defer close(refusals)
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 4096)
			_, _ = c.Read(buf) // the Hello
			_ = wire.WriteMsg(c, wire.TFail, wire.Fail{Reason: relay.ReasonBusy})
			c.Close()
		}
	}()
	out := filepath.Join(t.TempDir(), "out.img")
	type result struct {
		rep *sender.Report
		err error
	}
	sent := make(chan result, 1)
	go func() {
		rep, err := send(t, in, []string{out}, addr)
		sent <- result{rep, err}
	}()
	select {
	case <-refusals:
	case r := <-sent:
		t.Fatalf("the session ended before the node was free: %v", r.err)
	case <-time.After(20 * time.Second):
		t.Fatal("the sender did not ask twice within 20s")
	}
	ln.Close()
	done := startNode(t, addr) // the node is free now
	r := <-sent
	if r.err != nil {
		t.Fatalf("send: %v (node: %+v)", r.err, r.rep.Nodes)
	}
	if n := r.rep.Nodes[0]; n.State != sender.StateDone || !n.Verified {
		t.Errorf("node: %+v", n)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Error("output differs")
	}
	if err := <-done; err != nil {
		t.Errorf("node: %v", err)
	}
}
