package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdproject/herd/internal/logging"
	"github.com/herdproject/herd/ring/wire"
)

// syncLog is a node's log, safe for its goroutines.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freePorts returns k TCP ports free on 127.0.0.1 a moment ago.
func freePorts(t *testing.T, k int) []int {
	t.Helper()
	var ports []int
	for range k {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// testNode is a node on 127.0.0.1 serving in a goroutine.
type testNode struct {
	node   *Node
	ctl    string // control address
	data   string // data address
	log    *syncLog
	cancel context.CancelFunc
	done   chan error // Serve's result
}

// startNode starts a node (cfg's addresses and ports are set here) and
// stops it when t ends.
func startNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	p := freePorts(t, 2)
	cfg.ListenAddr, cfg.DataPort, cfg.ControlPort, cfg.ReportPort = "127.0.0.1", p[0], p[1], -1
	tn := &testNode{ctl: net.JoinHostPort("127.0.0.1", strconv.Itoa(p[1])), data: net.JoinHostPort("127.0.0.1", strconv.Itoa(p[0])), log: &syncLog{}, done: make(chan error, 1)}
	cfg.Log = logging.New(tn.log, "", slog.LevelDebug, logging.Plain)
	n, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tn.node = n
	ctx, cancel := context.WithCancel(context.Background())
	tn.cancel = cancel
	go func() { tn.done <- n.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-tn.done:
		case <-time.After(5 * time.Second):
			t.Errorf("Serve still runs 5s after its context ended")
		}
		if t.Failed() {
			t.Logf("node log:\n%s", tn.log)
		}
	})
	return tn
}

// wait returns Serve's result, failing t if it takes longer than d.
func (tn *testNode) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-tn.done:
		tn.done <- err // for the cleanup
		return err
	case <-time.After(d):
		t.Fatalf("Serve did not return within %v", d)
		return nil
	}
}

// dial opens a control connection that gives up after d.
func dial(t *testing.T, addr string, d time.Duration) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(d))
	return c
}

// greet sends a Hello and runs the sender's side of the handshake (no
// key).
func greet(c net.Conn) error {
	nonce := wire.NewNonce()
	if err := wire.WriteMsg(c, wire.THello, wire.Hello{Version: wire.Version, Session: "test", Sender: "relay_test", Nonce: nonce}); err != nil {
		return err
	}
	_, err := wire.AuthConnect(c, nil, nonce)
	return err
}

// TestIdleFlood: 100 control connections that never send anything (more
// than maxHandshakes) neither hold a Once node's accept loop nor keep a
// real sender out: its handshake completes at once and its Kill stops
// the node.
func TestIdleFlood(t *testing.T) {
	tn := startNode(t, Config{Once: true})
	var idle []net.Conn
	for range 100 {
		idle = append(idle, dial(t, tn.ctl, 10*time.Second))
	}
	// Beyond maxHandshakes, the oldest are closed at once.
	first := idle[0]
	_ = first.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := first.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("the first of 100 idle connections: read %v, want it closed by the node", err)
	}

	start := time.Now()
	c := dial(t, tn.ctl, 2*time.Second)
	if err := greet(c); err != nil {
		t.Fatalf("handshake with 100 idle connections open: %v (after %v)", err, time.Since(start))
	}
	if err := wire.WriteMsg(c, wire.TKill, wire.Kill{From: "relay_test"}); err != nil {
		t.Fatalf("send Kill: %v", err)
	}
	if err := tn.wait(t, 3*time.Second); !errors.Is(err, ErrKilled) {
		t.Fatalf("Serve returned %v, want %v", err, ErrKilled)
	}
	t.Logf("killed %v after the 100 idle connections", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(tn.log.String(), "closed the oldest") {
		t.Errorf("no log line for the connections closed beyond %d handshakes:\n%s", maxHandshakes, tn.log)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestStrayConnections: garbage, a Hello without the rest and a Setup
// that is not one do not use up a Once node; each is logged as ignored.
func TestStrayConnections(t *testing.T) {
	tn := startNode(t, Config{Once: true})
	garbage := dial(t, tn.ctl, 5*time.Second)
	if _, err := garbage.Write([]byte("GET / HTTP/1.1\r\nHost: a-node\r\nUser-Agent: health-check\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	halfway := dial(t, tn.ctl, 5*time.Second)
	if err := greet(halfway); err != nil {
		t.Fatal(err)
	}
	halfway.Close()
	notSetup := dial(t, tn.ctl, 5*time.Second)
	if err := greet(notSetup); err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteMsg(notSetup, wire.TConnect, wire.Connect{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for strings.Count(tn.log.String(), "ignored: ") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := strings.Count(tn.log.String(), "ignored: "); got != 3 {
		t.Fatalf("%d connections logged as ignored, want 3:\n%s", got, tn.log)
	}
	select {
	case err := <-tn.done:
		t.Fatalf("Serve returned %v after stray connections", err)
	default:
	}
	c := dial(t, tn.ctl, 2*time.Second)
	if err := greet(c); err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteMsg(c, wire.TKill, wire.Kill{From: "relay_test"}); err != nil {
		t.Fatal(err)
	}
	if err := tn.wait(t, 3*time.Second); !errors.Is(err, ErrKilled) {
		t.Fatalf("Serve returned %v, want %v", err, ErrKilled)
	}
}

// TestBusyWithAnotherSession: a node serving several sessions (not Once)
// answers a second sender that it is busy while a session has it, and
// takes the next one after.
func TestBusyWithAnotherSession(t *testing.T) {
	tn := startNode(t, Config{})
	first := dial(t, tn.ctl, 5*time.Second)
	if err := greet(first); err != nil {
		t.Fatal(err)
	}
	setup := wire.Setup{Session: "s1", Hosts: []string{"127.0.0.1"}, Addrs: []string{"127.0.0.1"}, ChunkSize: 1 << 20}
	if err := wire.WriteMsg(first, wire.TSetup, setup); err != nil {
		t.Fatal(err)
	}
	if err := wire.Expect(first, wire.TReady, nil); err != nil {
		t.Fatalf("first sender: %v, want Ready", err)
	}

	second := dial(t, tn.ctl, 2*time.Second)
	var pe *wire.PeerError
	if err := greet(second); !errors.As(err, &pe) || pe.Reason != "node busy with another session" {
		t.Fatalf("second sender: %v, want the node busy", err)
	}

	// The first session ends (its sender goes away): the node takes
	// sessions again.
	first.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		c := dial(t, tn.ctl, 2*time.Second)
		err := greet(c)
		c.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node still refuses senders 3s after its session ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tn.cancel()
	if err := tn.wait(t, 3*time.Second); err != nil {
		t.Fatalf("Serve returned %v after its context ended, want nil", err)
	}
}

// TestNoSenderWithStrays: with Once and WaitTimeout, a node that only
// got stray connections still ends with ErrNoSender.
func TestNoSenderWithStrays(t *testing.T) {
	tn := startNode(t, Config{Once: true, WaitTimeout: 300 * time.Millisecond})
	c := dial(t, tn.ctl, 5*time.Second)
	if _, err := c.Write([]byte("garbage, not a herd frame at all")); err != nil {
		t.Fatal(err)
	}
	if err := tn.wait(t, 3*time.Second); !errors.Is(err, ErrNoSender) {
		t.Fatalf("Serve returned %v, want %v", err, ErrNoSender)
	}
}

// TestDataFlood: 100 data connections that never finish their handshake
// neither exhaust the node nor keep a real peer out: beyond maxHandshakes
// the oldest are closed, and a data connection that authenticates gets
// through at once.
func TestDataFlood(t *testing.T) {
	tn := startNode(t, Config{})
	var idle []net.Conn
	for range 100 {
		idle = append(idle, dial(t, tn.data, 10*time.Second))
	}
	first := idle[0]
	_ = first.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := first.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("the first of 100 idle data connections: read %v, want it closed by the node", err)
	}
	c := dial(t, tn.data, 2*time.Second)
	nonce := wire.NewNonce()
	if err := wire.WriteMsg(c, wire.TDataHello, wire.DataHello{Session: "none", From: "relay_test", Nonce: nonce}); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.AuthConnect(c, nil, nonce); err != nil {
		t.Fatalf("data handshake with 100 idle data connections open: %v", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(tn.log.String(), "for unknown session none: closed") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range []string{"data connections in their handshake: closed the oldest", "for unknown session none: closed"} {
		if !strings.Contains(tn.log.String(), want) {
			t.Errorf("node log lacks %q:\n%s", want, tn.log)
		}
	}
}
