package wire

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
)

// Authentication. A ring may share a secret key (dolly's -P password,
// herd's --key-file, the agent's herd.key=). Every connection then opens
// with a challenge-response in both directions that never sends the key:
//
//	connector → listener   Hello / DataHello with a fresh nonce Nc
//	listener  → connector  Challenge{Nonce: Nl, Proof: P(listener, Nc, Nl)}
//	connector → listener   Auth{Proof: P(connector, Nl, Nc)}
//
// where P(role, theirs, mine) = HMAC-SHA256(key, "herd/1 proof " role 0
// theirs mine). Without a key both proofs are empty, and a peer that has a
// key refuses one that sends none.
//
// Every message and KeepAlive after the handshake is sealed by the
// connection's Channel (see channel.go). Every stream frame carries
// FlagMAC and is followed by a MAC:
// HMAC-SHA256 under the session key (derived from the key and the session
// ID, so every key holder computes it and nobody sends it) over the
// frame's header and payload. A node checks it before it writes or
// forwards the frame. Offsets in the header place every frame, and the
// offset checks of the receiver catch a frame dropped or moved.

// MACSize is the length of a frame MAC and of a proof.
const MACSize = sha256.Size

// NonceSize is the length of a challenge nonce.
const NonceSize = 32

// FlagMAC in a header's Flags says that a MAC follows the payload.
const FlagMAC uint32 = 1

// knownFlags are the header flags this version understands.
const knownFlags = FlagMAC

// Roles in the challenge-response.
const (
	RoleConnector = "connector"
	RoleListener  = "listener"
)

// ErrAuth is an authentication failure: a wrong key, or none.
var ErrAuth = errors.New("auth failed")

// Key is a ring's shared secret; empty means none.
type Key []byte

// Set reports whether there is a key.
func (k Key) Set() bool { return len(k) > 0 }

// NewNonce returns NonceSize random bytes.
func NewNonce() []byte {
	b := make([]byte, NonceSize)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return b
}

// Proof is what a peer in role sends to show it holds k, bound to both
// sides' nonces. It is nil without a key.
func (k Key) Proof(role string, theirs, mine []byte) []byte {
	if !k.Set() {
		return nil
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte("herd/1 proof " + role + "\x00"))
	m.Write(theirs)
	m.Write(mine)
	return m.Sum(nil)
}

// Check verifies the proof of a peer in role (theirs and mine are from
// the verifier's point of view: the peer's proof covers mine, then
// theirs). Both sides must agree on having a key.
func (k Key) Check(proof []byte, role string, theirs, mine []byte) error {
	switch {
	case !k.Set() && len(proof) == 0:
		return nil
	case !k.Set():
		return &authError{here: "the peer has a key and this side none (give both the same key)", there: "the peer has no key (give it the same key)"}
	case len(proof) == 0:
		return &authError{here: "the peer has no key (give it the same key)", there: "the peer has a key and this side none (give both the same key)"}
	case len(theirs) != NonceSize || len(mine) != NonceSize:
		return &authError{here: "bad nonce"}
	case !hmac.Equal(proof, k.Proof(role, mine, theirs)):
		return &authError{here: "wrong key"}
	}
	return nil
}

// authError is a failed Check, worded for this side (here) and, when the
// sides differ, for the peer it is sent to (there).
type authError struct{ here, there string }

func (e *authError) Error() string { return ErrAuth.Error() + ": " + e.here }
func (e *authError) Unwrap() error { return ErrAuth }

// forPeer words err for the peer: "the peer" is this side there.
func forPeer(err error) string {
	var ae *authError
	if errors.As(err, &ae) && ae.there != "" {
		return ErrAuth.Error() + ": " + ae.there
	}
	return err.Error()
}

// SessionKey derives the key that MACs one session's frames.
func (k Key) SessionKey(session string) []byte {
	if !k.Set() {
		return nil
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte("herd/1 session " + session))
	return m.Sum(nil)
}

// FrameMAC computes frame MACs under a session key. It is not safe for
// concurrent use.
type FrameMAC struct {
	h hash.Hash
}

// NewFrameMAC returns a MAC for session key sk, or nil when sk is empty
// (no authentication).
func NewFrameMAC(sk []byte) *FrameMAC {
	if len(sk) == 0 {
		return nil
	}
	return &FrameMAC{h: hmac.New(sha256.New, sk)}
}

// Sum appends the MAC of a frame (its encoded header, FlagMAC set, and
// payload) to out.
func (f *FrameMAC) Sum(out, hdr, payload []byte) []byte {
	f.h.Reset()
	f.h.Write(hdr)
	f.h.Write(payload)
	return f.h.Sum(out)
}

// Verify checks a received frame's MAC.
func (f *FrameMAC) Verify(mac, hdr, payload []byte) bool {
	var b [MACSize]byte
	return hmac.Equal(mac, f.Sum(b[:0], hdr, payload))
}

// Challenge is a listener's answer to Hello or DataHello.
type Challenge struct {
	Nonce []byte `json:"nonce,omitempty"`
	Proof []byte `json:"proof,omitempty"`
}

// Auth is the connector's proof, answering Challenge.
type Auth struct {
	Proof []byte `json:"proof,omitempty"`
}

// AuthConnect is the connector's side of the handshake, after it sent its
// Hello or DataHello with nonce mine: it checks the listener's Challenge
// and answers with its proof. On failure it tells the listener why. It
// returns the connection's Channel, which seals what follows when there
// is a key.
func AuthConnect(rw io.ReadWriter, k Key, mine []byte) (*Channel, error) {
	var ch Challenge
	if err := Expect(rw, TChallenge, &ch); err != nil {
		return nil, err
	}
	if err := k.Check(ch.Proof, RoleListener, ch.Nonce, mine); err != nil {
		_ = WriteMsg(rw, TFail, Fail{Reason: forPeer(err)})
		return nil, err
	}
	if err := WriteMsg(rw, TAuth, Auth{Proof: k.Proof(RoleConnector, ch.Nonce, mine)}); err != nil {
		return nil, err
	}
	return newChannel(rw, k, RoleConnector, mine, ch.Nonce), nil
}

// AuthAccept is the listener's side, after it read the connector's nonce
// theirs: it sends its Challenge and checks the connector's Auth. It
// returns the connection's Channel.
func AuthAccept(rw io.ReadWriter, k Key, theirs []byte) (*Channel, error) {
	mine := NewNonce()
	if err := WriteMsg(rw, TChallenge, Challenge{Nonce: mine, Proof: k.Proof(RoleListener, theirs, mine)}); err != nil {
		return nil, err
	}
	var a Auth
	if err := Expect(rw, TAuth, &a); err != nil {
		return nil, err
	}
	if err := k.Check(a.Proof, RoleConnector, theirs, mine); err != nil {
		_ = WriteMsg(rw, TFail, Fail{Reason: forPeer(err)})
		return nil, err
	}
	return newChannel(rw, k, RoleListener, theirs, mine), nil
}
