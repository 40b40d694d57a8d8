package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"sync"
)

// Channel is one connection's messages and KeepAlives after its handshake.
// With a key, every such frame a side sends carries FlagMAC and a MAC
// under a key of that connection and direction (derived from the ring's
// key and both sides' nonces, see connKey), computed over the frame's
// sequence number in its direction, header and payload. A forged frame,
// one replayed from earlier on the connection or from another connection,
// and one dropped or reordered all fail the check. Without a key a Channel
// sends and takes plain frames, and refuses sealed ones.
//
// Stream frames (Data, Hole, FileStart, FileEnd, End) are not a Channel's:
// they carry a MAC under the session key (FrameMAC) so that every node can
// pass them on unchanged, and the stream position in their header binds
// each to its place (a frame replayed anywhere else breaks the order
// every receiver checks, and one replayed at its own place is the same
// bytes).
//
// Writes are serialised; reads are for one goroutine at a time.
type Channel struct {
	rw      io.ReadWriter
	wmu     sync.Mutex
	out, in *seal // nil without a key
}

// seal MACs one direction's frames in order.
type seal struct {
	h   hash.Hash
	seq uint64
}

func newSeal(key []byte) *seal { return &seal{h: hmac.New(sha256.New, key)} }

// sum appends the MAC of the direction's next frame to out.
func (s *seal) sum(out, hdr, payload []byte) []byte {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], s.seq)
	s.seq++
	s.h.Reset()
	s.h.Write(n[:])
	s.h.Write(hdr)
	s.h.Write(payload)
	return s.h.Sum(out)
}

// connKey derives the key that MACs what side (RoleConnector or
// RoleListener) sends on the connection whose handshake used the
// connector's nonce nc and the listener's nl.
func (k Key) connKey(side string, nc, nl []byte) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte("herd/1 conn " + side + "\x00"))
	m.Write(nc)
	m.Write(nl)
	return m.Sum(nil)
}

// newChannel is the channel of side after a handshake with nonces nc, nl.
func newChannel(rw io.ReadWriter, k Key, side string, nc, nl []byte) *Channel {
	c := &Channel{rw: rw}
	if !k.Set() {
		return c
	}
	other := RoleListener
	if side == RoleListener {
		other = RoleConnector
	}
	c.out = newSeal(k.connKey(side, nc, nl))
	c.in = newSeal(k.connKey(other, nc, nl))
	return c
}

// PlainChannel is a channel without a key, for connections that have no
// handshake (tests, and peers of a ring without a key).
func PlainChannel(rw io.ReadWriter) *Channel { return &Channel{rw: rw} }

// Sealed reports whether the channel MACs its frames.
func (c *Channel) Sealed() bool { return c.out != nil }

// frame encodes a frame of type t with payload body, sealed when the
// channel has a key; it must be called with wmu held.
func (c *Channel) frame(h Header, body []byte) []byte {
	b := make([]byte, HeaderSize, HeaderSize+len(body)+MACSize)
	if c.out != nil {
		h.Flags |= FlagMAC
	}
	h.Put(b)
	b = append(b, body...)
	if c.out != nil {
		b = c.out.sum(b, b[:HeaderSize], body)
	}
	return b
}

// WriteMsg sends v as a JSON message of type t.
func (c *Channel) WriteMsg(t Type, v any) error {
	body, err := msgBody(t, v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err = c.rw.Write(c.frame(Header{Type: t, Length: uint32(len(body))}, body))
	return err
}

// WriteKeepAlive sends a KeepAlive whose File and Offset say where the
// sender of it is (acknowledged stream bytes, or zero).
func (c *Channel) WriteKeepAlive(file uint32, offset uint64) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.rw.Write(c.frame(Header{Type: TKeepAlive, File: file, Offset: offset}, nil))
	return err
}

// EncodeKeepAlive returns a KeepAlive frame for a caller that writes it
// among other frames itself (in order: frames encoded are frames sent).
func (c *Channel) EncodeKeepAlive(file uint32, offset uint64) []byte {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.frame(Header{Type: TKeepAlive, File: file, Offset: offset}, nil)
}

// ReadMsg reads one frame that must be a message (or a KeepAlive) and
// returns its header and raw payload, its MAC checked.
func (c *Channel) ReadMsg() (Header, []byte, error) {
	var hb [HeaderSize]byte
	h, err := ReadHeader(c.rw, &hb)
	if err != nil {
		return h, nil, err
	}
	if !h.Type.IsMsg() && h.Type != TKeepAlive {
		return h, nil, fmt.Errorf("expected a message, got a %s frame", h.Type)
	}
	body := make([]byte, h.Length)
	if h.Type == TKeepAlive {
		body = nil
	}
	if _, err := io.ReadFull(c.rw, body); err != nil {
		return h, nil, fmt.Errorf("read %s message: %w", h.Type, err)
	}
	return h, body, c.Check(h, hb[:], body, c.rw)
}

// Check verifies a frame read elsewhere (hdr is its encoded header, body
// its payload) whose MAC, when its header says it has one, follows in r.
func (c *Channel) Check(h Header, hdr, body []byte, r io.Reader) error {
	sealed := h.Flags&FlagMAC != 0
	switch {
	case c.in == nil && sealed:
		return fmt.Errorf("%w: a sealed %s frame, but this side has no key", ErrAuth, h.Type)
	case c.in == nil:
		return nil
	case !sealed:
		return fmt.Errorf("%w: a %s frame without a MAC", ErrAuth, h.Type)
	}
	var mac [MACSize]byte
	if _, err := io.ReadFull(r, mac[:]); err != nil {
		return fmt.Errorf("read %s MAC: %w", h.Type, err)
	}
	var want [MACSize]byte
	if !hmac.Equal(mac[:], c.in.sum(want[:0], hdr, body)) {
		return fmt.Errorf("%w: forged or replayed %s frame (bad MAC)", ErrAuth, h.Type)
	}
	return nil
}

// Expect reads one message, checks it has type t (a Fail or Abort from the
// peer becomes an error carrying its reason) and decodes it into v.
func (c *Channel) Expect(t Type, v any) error {
	h, body, err := c.ReadMsg()
	if err != nil {
		return err
	}
	return Decode(h, body, t, v)
}
