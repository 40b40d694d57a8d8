package wire

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// handshake runs both sides of the handshake over a pipe and returns the
// two channels.
func handshake(t *testing.T, k Key) (conn, lis *Channel) {
	t.Helper()
	c, l := net.Pipe()
	t.Cleanup(func() { c.Close(); l.Close() })
	nonce := NewNonce()
	type res struct {
		ch  *Channel
		err error
	}
	done := make(chan res, 1)
	go func() { ch, err := AuthAccept(l, k, nonce); done <- res{ch, err} }()
	conn, err := AuthConnect(c, k, nonce)
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	return conn, r.ch
}

// recorder keeps what a channel writes, to replay or tamper with it.
type recorder struct{ bytes.Buffer }

func (r *recorder) Read(p []byte) (int, error) { return r.Buffer.Read(p) }

// Every message and KeepAlive after the handshake is sealed: the peer
// takes them in order, and refuses a forged one, one replayed on the same
// connection or from another connection, one dropped, and a plain one.
func TestChannelSeal(t *testing.T) {
	k := Key("ring-key")
	conn, lis := handshake(t, k)
	if !conn.Sealed() || !lis.Sealed() {
		t.Fatal("channels with a key are not sealed")
	}
	go func() {
		_ = conn.WriteMsg(TProgress, Progress{Received: 1})
		_ = conn.WriteKeepAlive(2, 3)
	}()
	var p Progress
	if err := lis.Expect(TProgress, &p); err != nil || p.Received != 1 {
		t.Fatalf("sealed message: %v, %+v", err, p)
	}
	h, _, err := lis.ReadMsg()
	if err != nil || h.Type != TKeepAlive || h.File != 2 || h.Offset != 3 {
		t.Fatalf("sealed KeepAlive: %v, %+v", err, h)
	}

	// Frames recorded from a writer channel, fed to a fresh reader.
	record := func(w *Channel, n int) [][]byte {
		var out [][]byte
		for i := range n {
			var r recorder
			w.rw = &r
			if err := w.WriteMsg(TVerdict, Verdict{Seconds: float64(i)}); err != nil {
				t.Fatal(err)
			}
			out = append(out, append([]byte(nil), r.Bytes()...))
		}
		return out
	}
	pair := func() (*Channel, *Channel) {
		nc, nl := NewNonce(), NewNonce()
		return newChannel(nil, k, RoleConnector, nc, nl), newChannel(nil, k, RoleListener, nc, nl)
	}
	read := func(r *Channel, frames ...[]byte) error {
		r.rw = &recorder{*bytes.NewBuffer(bytes.Join(frames, nil))}
		for range frames {
			if _, _, err := r.ReadMsg(); err != nil {
				return err
			}
		}
		return nil
	}
	w, r := pair()
	fr := record(w, 3)
	if err := read(r, fr...); err != nil {
		t.Fatalf("in order: %v", err)
	}
	for _, tt := range []struct {
		name  string
		order []int // indices of recorded frames, as fed to the reader
	}{
		{"replayed on the same connection", []int{0, 0}},
		{"dropped", []int{0, 2}},
		{"reordered", []int{1, 0}},
	} {
		w, r := pair()
		fr := record(w, 3)
		var frames [][]byte
		for _, i := range tt.order {
			frames = append(frames, fr[i])
		}
		if err := read(r, frames...); !errors.Is(err, ErrAuth) {
			t.Errorf("%s: %v, want auth failed", tt.name, err)
		}
	}
	// From another connection: the same position, other nonces.
	_, other := pair()
	if err := read(other, fr[0]); !errors.Is(err, ErrAuth) {
		t.Errorf("replayed from another connection: %v, want auth failed", err)
	}
	// Forged: a flipped payload bit.
	w, r = pair()
	forged := record(w, 1)[0]
	forged[HeaderSize+2] ^= 1
	if err := read(r, forged); !errors.Is(err, ErrAuth) {
		t.Errorf("forged: %v, want auth failed", err)
	}
	// Plain frames on a sealed channel, and sealed ones on a plain one.
	var plain recorder
	if err := PlainChannel(&plain).WriteMsg(TBye, Bye{Verified: true}); err != nil {
		t.Fatal(err)
	}
	_, r = pair()
	if err := read(r, plain.Bytes()); !errors.Is(err, ErrAuth) {
		t.Errorf("plain Bye on a sealed channel: %v, want auth failed", err)
	}
	w, _ = pair()
	if err := read(PlainChannel(nil), record(w, 1)[0]); !errors.Is(err, ErrAuth) {
		t.Errorf("sealed frame on a channel without a key: %v, want auth failed", err)
	}
}

// FuzzChannelReadMsg feeds arbitrary bytes to a sealed channel's reader:
// it must never panic, and nothing but frames sealed by the matching
// writer, in order, passes (the corpus's first entry is such a pair).
func FuzzChannelReadMsg(f *testing.F) {
	k := Key("fuzz-key")
	nc, nl := bytes.Repeat([]byte{1}, NonceSize), bytes.Repeat([]byte{2}, NonceSize)
	var rec recorder
	w := newChannel(&rec, k, RoleConnector, nc, nl)
	_ = w.WriteMsg(TProgress, Progress{Received: 7})
	_ = w.WriteKeepAlive(0, 9)
	f.Add(bytes.Clone(rec.Bytes()))
	var plain bytes.Buffer
	_ = WriteMsg(&plain, TBye, Bye{})
	f.Add(plain.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newChannel(&recorder{*bytes.NewBuffer(data)}, k, RoleListener, nc, nl)
		for i := 0; i < 4; i++ {
			h, body, err := r.ReadMsg()
			if err != nil {
				return
			}
			if h.Type != TKeepAlive && len(body) != int(h.Length) {
				t.Fatalf("body %d bytes, header says %d", len(body), h.Length)
			}
			if h.Flags&FlagMAC == 0 {
				t.Fatalf("a sealed channel took an unsealed %s frame", h.Type)
			}
		}
	})
}
