package stream

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/herdproject/herd/ring/wire"
)

// keyedPair is a TCP connection on loopback after a keyed handshake: the
// parent's end (the connector, which writes the stream) and the child's.
func keyedPair(t *testing.T, key wire.Key) (parent, child *wire.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   *wire.Conn
		err error
	}
	acc := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acc <- res{nil, err}
			return
		}
		var h wire.DataHello
		if err := wire.Expect(c, wire.TDataHello, &h); err != nil {
			acc <- res{nil, err}
			return
		}
		ch, err := wire.AuthAccept(c, key, h.Nonce)
		acc <- res{wire.NewConn(c, ch), err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	nonce := wire.NewNonce()
	if err := wire.WriteMsg(c, wire.TDataHello, wire.DataHello{Nonce: nonce}); err != nil {
		t.Fatal(err)
	}
	ch, err := wire.AuthConnect(c, key, nonce)
	if err != nil {
		t.Fatal(err)
	}
	r := <-acc
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { c.Close(); r.c.Close() })
	return wire.NewConn(c, ch), r.c
}

// waitDead waits up to d for l to count its peer dead and returns why.
func waitDead(t *testing.T, l *LiveConn, d time.Duration) error {
	t.Helper()
	select {
	case <-l.Dead():
		return l.Err()
	case <-time.After(d):
		t.Fatalf("the peer did not count as dead within %v", d)
		return nil
	}
}

// A child that stops sending KeepAlives is dead within the timeout even
// though every write still fits in the socket buffers, and even when the
// parent writes nothing at all; one that keeps sending them is not, also
// while it reads nothing. Forged KeepAlives and a child taken over by
// another node end the connection with their own errors.
func TestLiveConn(t *testing.T) {
	const timeout = 300 * time.Millisecond
	key := wire.Key("live-test-key")

	t.Run("silent child, small writes", func(t *testing.T) {
		p, _ := keyedPair(t, key)
		l := NewLiveConn(p, timeout)
		start := time.Now()
		go func() {
			for l.Err() == nil {
				_, _ = l.Write(make([]byte, 100))
				time.Sleep(10 * time.Millisecond)
			}
		}()
		err := waitDead(t, l, 5*timeout)
		var se *StallError
		if !errors.As(err, &se) {
			t.Fatalf("dead for %v, want a StallError", err)
		}
		if took := time.Since(start); took < timeout {
			t.Errorf("counted dead after %v, before the timeout %v", took, timeout)
		}
		if _, err := l.Write([]byte("x")); !errors.As(err, &se) {
			t.Errorf("a write after death returned %v, want the StallError", err)
		}
	})

	t.Run("silent child, nothing written", func(t *testing.T) {
		p, _ := keyedPair(t, key)
		l := NewLiveConn(p, timeout)
		var se *StallError
		if err := waitDead(t, l, 5*timeout); !errors.As(err, &se) {
			t.Fatalf("dead for %v, want a StallError", err)
		}
	})

	t.Run("child that reads nothing but says it is alive", func(t *testing.T) {
		p, c := keyedPair(t, key)
		l := NewLiveConn(p, timeout)
		stop := make(chan struct{})
		defer close(stop)
		go SendKeepAlives(func() { _ = c.WriteKeepAlive(0, 42) }, timeout/4, func() bool { return true }, stop)
		// Fill its buffers: the write blocks, and must go on waiting.
		wrote := make(chan error, 1)
		go func() { _, err := l.Write(make([]byte, 64<<20)); wrote <- err }()
		select {
		case <-l.Dead():
			t.Fatalf("a child that sends KeepAlives counted as dead: %v", l.Err())
		case err := <-wrote:
			t.Fatalf("64 MiB written to a child that reads nothing: %v", err)
		case <-time.After(6 * timeout):
		}
		if !l.Writing() {
			t.Error("Writing() is false during a blocked write")
		}
		if got := l.Acked(); got != 42 {
			t.Errorf("Acked() = %d, want the child's 42", got)
		}
	})

	t.Run("forged KeepAlive", func(t *testing.T) {
		p, c := keyedPair(t, key)
		l := NewLiveConn(p, 0)
		var hb [wire.HeaderSize]byte
		wire.Header{Type: wire.TKeepAlive, Flags: wire.FlagMAC}.Put(hb[:])
		if _, err := c.Conn.Write(append(hb[:], make([]byte, wire.MACSize)...)); err != nil {
			t.Fatal(err)
		}
		if err := waitDead(t, l, 2*time.Second); !errors.Is(err, wire.ErrAuth) {
			t.Errorf("dead for %v, want an auth failure", err)
		}
	})

	t.Run("taken over", func(t *testing.T) {
		p, c := keyedPair(t, key)
		l := NewLiveConn(p, timeout)
		if err := c.WriteMsg(wire.TAbort, wire.Abort{Reason: "taken over by node-a"}); err != nil {
			t.Fatal(err)
		}
		if err := waitDead(t, l, 2*time.Second); !errors.Is(err, ErrTakenOver) {
			t.Errorf("dead for %v, want ErrTakenOver", err)
		}
	})

	t.Run("child closes before the end", func(t *testing.T) {
		p, c := keyedPair(t, key)
		l := NewLiveConn(p, timeout)
		c.Close()
		err := waitDead(t, l, 2*time.Second)
		var se *StallError
		if err == nil || errors.As(err, &se) {
			t.Errorf("dead for %v, want the closed connection", err)
		}
	})
}
