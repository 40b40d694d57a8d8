// Package bypass keeps a ring going past nodes that stop. Every node with
// children (and the sender) keeps a window of the frames it passed on
// recently. When a child resets or makes no progress for the bypass
// timeout, its parent reports it to the sender and connects to the
// child's children instead; each says where it is in the stream (a
// wire.Position), and the parent feeds it from there: from its window, or,
// for what the window no longer holds, from the sender, which re-reads its
// inputs. A node that stops later is bypassed the same way, as often as it
// happens.
package bypass

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/herdproject/herd/ring/stream"
	"github.com/herdproject/herd/ring/wire"
)

// Frame is one data-path frame that owns its bytes (not a pooled chunk's).
type Frame struct {
	H       wire.Header
	Payload []byte // Data frames only
	MAC     []byte // when sealed (H.Flags has wire.FlagMAC)
}

// FromChunk copies chunk c's frames.
func FromChunk(c *stream.Chunk) []Frame {
	out := make([]Frame, len(c.Segs))
	for i, s := range c.Segs {
		out[i] = Frame{H: s.H, Payload: clone(c.Payload(i)), MAC: clone(c.MAC(i))}
	}
	return out
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// size is what a frame costs in a window.
func (f Frame) size() int { return wire.HeaderSize + len(f.Payload) + len(f.MAC) }

// From returns f cut to begin at p, resealed under m when cut (nil m: the
// ring has no key), and false when f ends at or before p. Only Data and
// Hole frames can straddle a position.
func (f Frame) From(p wire.Position, m *wire.FrameMAC) (Frame, bool) {
	if !p.Less(f.H.After()) {
		return f, false
	}
	if !f.H.Before().Less(p) || f.H.Type != wire.TData && f.H.Type != wire.THole {
		// Whole: only Data and Hole frames have a middle (a position
		// inside another frame is bad input, which the receiver refuses).
		return f, true
	}
	cut := p.Offset - f.H.Offset
	g := Frame{H: f.H}
	g.H.Offset = p.Offset
	g.H.Length -= uint32(cut)
	if f.H.Type == wire.TData {
		g.Payload = f.Payload[cut:]
	}
	g.seal(m)
	return g, true
}

// seal sets or clears the frame's MAC.
func (f *Frame) seal(m *wire.FrameMAC) {
	if m == nil {
		f.H.Flags &^= wire.FlagMAC
		f.MAC = nil
		return
	}
	f.H.Flags |= wire.FlagMAC
	var hb [wire.HeaderSize]byte
	f.H.Put(hb[:])
	f.MAC = m.Sum(nil, hb[:], f.Payload)
}

// Write sends the frame to w.
func (f Frame) Write(w io.Writer) error {
	var hb [wire.HeaderSize]byte
	f.H.Put(hb[:])
	b := net.Buffers{hb[:]}
	if len(f.Payload) > 0 {
		b = append(b, f.Payload)
	}
	if len(f.MAC) > 0 {
		b = append(b, f.MAC)
	}
	_, err := b.WriteTo(w)
	return err
}

// ReadFrame reads one data-path frame from r; with m (the ring has a key)
// it must carry a valid MAC.
func ReadFrame(r *bufio.Reader, m *wire.FrameMAC) (Frame, error) {
	var hb [wire.HeaderSize]byte
	h, err := wire.ReadHeader(r, &hb)
	if err != nil {
		return Frame{}, err
	}
	switch h.Type {
	case wire.TData, wire.THole, wire.TFileStart, wire.TFileEnd, wire.TEnd:
	default:
		return Frame{}, fmt.Errorf("protocol: unexpected %s frame in a stream", h.Type)
	}
	f := Frame{H: h}
	if n := h.PayloadLen(); n > 0 {
		f.Payload = make([]byte, n)
		if _, err := io.ReadFull(r, f.Payload); err != nil {
			return Frame{}, err
		}
	}
	switch {
	case m == nil && h.Flags&wire.FlagMAC != 0:
		return Frame{}, fmt.Errorf("%w: authenticated frames, but this node has no key", wire.ErrAuth)
	case m == nil:
		return f, nil
	case h.Flags&wire.FlagMAC == 0:
		return Frame{}, fmt.Errorf("%w: %s frame at %v has no MAC", wire.ErrAuth, h.Type, h.Before())
	}
	f.MAC = make([]byte, wire.MACSize)
	if _, err := io.ReadFull(r, f.MAC); err != nil {
		return Frame{}, err
	}
	if !m.Verify(f.MAC, hb[:], f.Payload) {
		return Frame{}, fmt.Errorf("%w: %s frame at %v: bad MAC", wire.ErrAuth, h.Type, h.Before())
	}
	return f, nil
}

// FetchFrom asks a sender's fetch port, on conn (after the DataHello and
// handshake), for the stream range in req and calls emit for each frame it
// answers with. Each frame must arrive within idle.
func FetchFrom(conn *wire.Conn, req wire.Fetch, sessionKey []byte, idle time.Duration, emit func(Frame) error) error {
	_ = conn.SetWriteDeadline(time.Now().Add(idle))
	if err := conn.WriteMsg(wire.TFetch, req); err != nil {
		return fmt.Errorf("ask for the range: %w", err)
	}
	m := wire.NewFrameMAC(sessionKey)
	br := bufio.NewReaderSize(conn, 256<<10)
	at := req.From
	for at.Less(req.To) {
		_ = conn.SetReadDeadline(time.Now().Add(idle))
		f, err := ReadFrame(br, m)
		if err != nil {
			return fmt.Errorf("at %v: %w", at, err)
		}
		if f.H.Before() != at && !(f.H.Before().Less(at) && at.Less(f.H.After())) {
			return fmt.Errorf("protocol: the sender sent %v, expected %v", f.H.Before(), at)
		}
		if err := emit(f); err != nil {
			return err
		}
		at = f.H.After()
	}
	return nil
}

// ServeRange writes the frames of [from, to) that get produces, cut to
// begin at from, to w.
func ServeRange(w io.Writer, from, to wire.Position, m *wire.FrameMAC, frames []Frame) error {
	for _, f := range frames {
		if !f.H.Before().Less(to) {
			break
		}
		f, ok := f.From(from, m)
		if !ok {
			continue
		}
		if err := f.Write(w); err != nil {
			return err
		}
	}
	return nil
}
