package wire

import (
	"errors"
	"net"
	"strings"
	"testing"
)

// The handshake over a pipe, for every combination of keys: it succeeds
// only when both sides hold the same key or neither has one, and each side
// says why it failed, from its own point of view (the side with the key
// is told that the peer has none, not the reverse).
func TestHandshake(t *testing.T) {
	a, b := Key("ring-key-one"), Key("ring-key-two")
	tests := []struct {
		name                 string
		connector, listener  Key
		ok                   bool
		connErr, listenerErr string
	}{
		{"no keys", nil, nil, true, "", ""},
		{"same key", a, a, true, "", ""},
		{"wrong key", a, b, false, "wrong key", "wrong key"},
		{"connector without key", nil, a, false, "this side none", "the peer has no key"},
		{"listener without key", a, nil, false, "the peer has no key", "this side none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, l := net.Pipe()
			defer c.Close()
			defer l.Close()
			nonce := NewNonce()
			lerr := make(chan error, 1)
			go func() { _, err := AuthAccept(l, tt.listener, nonce); lerr <- err; l.Close() }()
			_, cerr := AuthConnect(c, tt.connector, nonce)
			c.Close()
			le := <-lerr
			if tt.ok {
				if cerr != nil || le != nil {
					t.Fatalf("connector %v, listener %v", cerr, le)
				}
				return
			}
			if !errors.Is(cerr, ErrAuth) || !strings.Contains(cerr.Error(), tt.connErr) {
				t.Errorf("connector error %v, want auth failed: …%s", cerr, tt.connErr)
			}
			var pe *PeerError
			if le == nil || errors.As(le, &pe) && !strings.Contains(pe.Reason, tt.listenerErr) {
				t.Errorf("listener error %v, want the connector's reason, worded for the listener (%s)", le, tt.listenerErr)
			}
		})
	}
}

// A replayed proof does not pass for a fresh nonce; proofs never contain
// the key.
func TestProof(t *testing.T) {
	k := Key("secret-secret")
	n1, n2, n3 := NewNonce(), NewNonce(), NewNonce()
	p := k.Proof(RoleConnector, n1, n2)
	if err := k.Check(p, RoleConnector, n2, n1); err != nil {
		t.Fatalf("valid proof refused: %v", err)
	}
	if err := k.Check(p, RoleConnector, n2, n3); err == nil {
		t.Error("proof accepted for another nonce (replay)")
	}
	if err := k.Check(p, RoleListener, n2, n1); err == nil {
		t.Error("proof accepted for the other role (reflection)")
	}
	if strings.Contains(string(p), string(k)) {
		t.Error("proof contains the key")
	}
	if string(k.SessionKey("s1")) == string(k.SessionKey("s2")) {
		t.Error("two sessions share a session key")
	}
}

func TestFrameMAC(t *testing.T) {
	m := NewFrameMAC(Key("k-k-k-k-k").SessionKey("s"))
	var hdr [HeaderSize]byte
	Header{Type: TData, File: 1, Offset: 4096, Length: 5, Flags: FlagMAC}.Put(hdr[:])
	payload := []byte("hello")
	mac := m.Sum(nil, hdr[:], payload)
	if !m.Verify(mac, hdr[:], payload) {
		t.Fatal("own MAC refused")
	}
	payload[0] ^= 1
	if m.Verify(mac, hdr[:], payload) {
		t.Error("flipped payload bit accepted")
	}
	payload[0] ^= 1
	Header{Type: TData, File: 1, Offset: 8192, Length: 5, Flags: FlagMAC}.Put(hdr[:])
	if m.Verify(mac, hdr[:], payload) {
		t.Error("frame moved to another offset accepted")
	}
	if NewFrameMAC(nil) != nil {
		t.Error("a MAC without a key")
	}
}

func TestFlags(t *testing.T) {
	var b [HeaderSize]byte
	for _, tt := range []struct {
		h  Header
		ok bool
	}{
		{Header{Type: TData, Length: 1, Flags: FlagMAC}, true},
		{Header{Type: TEnd, Flags: FlagMAC}, true},
		{Header{Type: TData, Length: 1, Flags: 2}, false},
		{Header{Type: TSetup, Length: 2, Flags: FlagMAC}, true},
		{Header{Type: TKeepAlive, Flags: FlagMAC | 4}, false},
	} {
		tt.h.Put(b[:])
		if _, err := ParseHeader(b[:]); (err == nil) != tt.ok {
			t.Errorf("%+v: %v", tt.h, err)
		}
	}
}
