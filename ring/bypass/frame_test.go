package bypass

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/herdproject/herd/ring/stream"
	"github.com/herdproject/herd/ring/wire"
)

// testMAC is the frame MAC of a ring with a key.
func testMAC() *wire.FrameMAC {
	return wire.NewFrameMAC(wire.Key("k12345678").SessionKey("s"))
}

// encHeader is h encoded.
func encHeader(h wire.Header) []byte {
	b := make([]byte, wire.HeaderSize)
	h.Put(b)
	return b
}

// sealed is f with FlagMAC and a MAC under m, computed here with the wire
// API (not with Frame.seal, which is under test).
func sealed(f Frame, m *wire.FrameMAC) Frame {
	f.H.Flags |= wire.FlagMAC
	f.MAC = m.Sum(nil, encHeader(f.H), f.Payload)
	return f
}

// payload is n bytes that differ from one offset to the next.
func payload(off uint64, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(off+uint64(i)) ^ 0x5a
	}
	return b
}

func dataFrame(file uint32, off uint64, n int) Frame {
	return Frame{H: wire.Header{Type: wire.TData, File: file, Offset: off, Length: uint32(n)}, Payload: payload(off, n)}
}

func holeFrame(file uint32, off uint64, n uint32) Frame {
	return Frame{H: wire.Header{Type: wire.THole, File: file, Offset: off, Length: n}}
}

// twoFiles is a stream of two files: every kind of data-path frame.
func twoFiles() []Frame {
	return []Frame{
		{H: wire.Header{Type: wire.TFileStart, File: 0}},
		dataFrame(0, 0, 100),
		holeFrame(0, 100, 4096),
		dataFrame(0, 4196, 10),
		{H: wire.Header{Type: wire.TFileEnd, File: 0, Offset: 4206}},
		{H: wire.Header{Type: wire.TFileStart, File: 1}},
		dataFrame(1, 0, 50),
		{H: wire.Header{Type: wire.TFileEnd, File: 1, Offset: 50}},
		{H: wire.Header{Type: wire.TEnd, File: 2}},
	}
}

func sealAll(fs []Frame, m *wire.FrameMAC) []Frame {
	out := make([]Frame, len(fs))
	for i, f := range fs {
		out[i] = sealed(f, m)
	}
	return out
}

func sameFrame(a, b Frame) bool {
	return a.H == b.H && bytes.Equal(a.Payload, b.Payload) && bytes.Equal(a.MAC, b.MAC)
}

func TestFromWholeOrDropped(t *testing.T) {
	m := testMAC()
	fs := twoFiles()
	for i, plain := range fs {
		for _, key := range []bool{false, true} {
			f, mm := plain, (*wire.FrameMAC)(nil)
			if key {
				f, mm = sealed(plain, m), m
			}
			// p <= Before: the whole frame, as it is (even sealed, and
			// even when m is nil: it is not cut, so not resealed).
			for _, p := range []wire.Position{{}, f.H.Before()} {
				g, ok := f.From(p, mm)
				if !ok || !sameFrame(g, f) {
					t.Errorf("frame %d (%v, key %v) from %v: got %+v, %v; want the whole frame", i, f.H.Type, key, p, g, ok)
				}
				if g, ok := f.From(p, nil); !ok || !sameFrame(g, f) {
					t.Errorf("frame %d (%v, key %v) from %v with nil MAC: got %+v, %v; want the whole frame", i, f.H.Type, key, p, g, ok)
				}
			}
			// After <= p: dropped.
			for _, p := range []wire.Position{f.H.After(), fs[len(fs)-1].H.After(), {File: 99}} {
				if _, ok := f.From(p, mm); ok {
					t.Errorf("frame %d (%v, key %v) from %v: kept, want dropped (it ends at %v)", i, f.H.Type, key, p, f.H.After())
				}
			}
		}
	}
}

func TestFromCutData(t *testing.T) {
	m := testMAC()
	orig := sealed(dataFrame(1, 1000, 10), m)
	origCopy := Frame{H: orig.H, Payload: bytes.Clone(orig.Payload), MAC: bytes.Clone(orig.MAC)}
	p := wire.Position{File: 1, Started: true, Offset: 1004}
	want := wire.Header{Type: wire.TData, File: 1, Offset: 1004, Length: 6}

	t.Run("keyed", func(t *testing.T) {
		g, ok := orig.From(p, m)
		if !ok {
			t.Fatal("dropped a frame that straddles the position")
		}
		if g.H.Flags&wire.FlagMAC == 0 {
			t.Errorf("flags %#x: FlagMAC not set", g.H.Flags)
		}
		g.H.Flags &^= wire.FlagMAC
		if g.H != want {
			t.Errorf("header %+v, want %+v", g.H, want)
		}
		if !bytes.Equal(g.Payload, origCopy.Payload[4:]) {
			t.Errorf("payload %x, want %x", g.Payload, origCopy.Payload[4:])
		}
		g.H.Flags |= wire.FlagMAC
		if len(g.MAC) != wire.MACSize || !testMAC().Verify(g.MAC, encHeader(g.H), g.Payload) {
			t.Errorf("MAC %x does not verify for the cut frame", g.MAC)
		}
		if bytes.Equal(g.MAC, orig.MAC) {
			t.Error("the cut frame kept the MAC of the whole frame")
		}
		if g.H.Before() != p || g.H.After() != orig.H.After() {
			t.Errorf("cut frame spans [%v, %v), want [%v, %v)", g.H.Before(), g.H.After(), p, orig.H.After())
		}
	})
	t.Run("no key", func(t *testing.T) {
		g, ok := orig.From(p, nil)
		if !ok {
			t.Fatal("dropped a frame that straddles the position")
		}
		if g.H != want {
			t.Errorf("header %+v, want %+v (FlagMAC cleared)", g.H, want)
		}
		if g.MAC != nil {
			t.Errorf("MAC %x, want none", g.MAC)
		}
		if !bytes.Equal(g.Payload, origCopy.Payload[4:]) {
			t.Errorf("payload %x, want %x", g.Payload, origCopy.Payload[4:])
		}
	})
	t.Run("last byte", func(t *testing.T) {
		g, ok := orig.From(wire.Position{File: 1, Started: true, Offset: 1009}, m)
		if !ok || g.H.Offset != 1009 || g.H.Length != 1 || !bytes.Equal(g.Payload, origCopy.Payload[9:]) {
			t.Errorf("cut at the last byte: got %+v, %v", g, ok)
		}
	})
	if !sameFrame(orig, origCopy) {
		t.Errorf("From changed the frame it cut: %+v, was %+v", orig, origCopy)
	}
}

func TestFromCutHole(t *testing.T) {
	m := testMAC()
	orig := sealed(holeFrame(0, 4096, 8192), m)
	p := wire.Position{File: 0, Started: true, Offset: 5000}
	want := wire.Header{Type: wire.THole, File: 0, Offset: 5000, Length: 8192 - 904}
	for _, key := range []bool{false, true} {
		var mm *wire.FrameMAC
		if key {
			mm = m
		}
		g, ok := orig.From(p, mm)
		if !ok {
			t.Fatalf("key %v: dropped a hole that straddles the position", key)
		}
		if g.Payload != nil {
			t.Errorf("key %v: hole cut carries a payload of %d bytes", key, len(g.Payload))
		}
		if got := g.H.Flags&wire.FlagMAC != 0; got != key {
			t.Errorf("key %v: FlagMAC set = %v", key, got)
		}
		h := g.H
		h.Flags &^= wire.FlagMAC
		if h != want {
			t.Errorf("key %v: header %+v, want %+v", key, h, want)
		}
		switch {
		case key && !m.Verify(g.MAC, encHeader(g.H), nil):
			t.Errorf("key %v: MAC %x does not verify", key, g.MAC)
		case !key && g.MAC != nil:
			t.Errorf("key %v: MAC %x, want none", key, g.MAC)
		}
	}
}

func TestWriteReadFrame(t *testing.T) {
	for _, key := range []bool{false, true} {
		name := "no key"
		fs := twoFiles()
		var m *wire.FrameMAC
		if key {
			name, m = "keyed", testMAC()
			fs = sealAll(fs, m)
		}
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			for _, f := range fs {
				if err := f.Write(&buf); err != nil {
					t.Fatal(err)
				}
			}
			br := bufio.NewReader(&buf)
			for i, want := range fs {
				got, err := ReadFrame(br, m)
				if err != nil {
					t.Fatalf("frame %d (%v): %v", i, want.H.Type, err)
				}
				if !sameFrame(got, want) {
					t.Errorf("frame %d: read %+v, wrote %+v", i, got, want)
				}
				if want.H.Type == wire.THole && got.Payload != nil {
					t.Errorf("frame %d: hole read with a payload", i)
				}
			}
			if _, err := ReadFrame(br, m); err != io.EOF {
				t.Errorf("after the last frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestWriteSize(t *testing.T) {
	m := testMAC()
	for _, f := range []Frame{dataFrame(0, 0, 10), sealed(dataFrame(0, 0, 10), m), sealed(holeFrame(0, 0, 10), m), holeFrame(0, 0, 10)} {
		var buf bytes.Buffer
		if err := f.Write(&buf); err != nil {
			t.Fatal(err)
		}
		if want := wire.HeaderSize + len(f.Payload) + len(f.MAC); buf.Len() != want || f.size() != want {
			t.Errorf("%+v: wrote %d bytes, size %d, want %d", f.H, buf.Len(), f.size(), want)
		}
		if !bytes.Equal(buf.Bytes()[:wire.HeaderSize], encHeader(f.H)) {
			t.Errorf("%+v: header bytes differ", f.H)
		}
	}
}

func TestReadFrameRejects(t *testing.T) {
	m := testMAC()
	enc := func(f Frame) []byte {
		var buf bytes.Buffer
		if err := f.Write(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	data := dataFrame(0, 0, 16)
	good := enc(sealed(data, m))
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 1
		return b
	}
	var hello bytes.Buffer
	if err := wire.WriteMsg(&hello, wire.THello, wire.Hello{}); err != nil {
		t.Fatal(err)
	}
	var keepAlive bytes.Buffer
	if err := wire.WriteFrame(&keepAlive, wire.Header{Type: wire.TKeepAlive}); err != nil {
		t.Fatal(err)
	}
	var dataHello bytes.Buffer
	if err := wire.WriteMsg(&dataHello, wire.TDataHello, nil); err != nil {
		t.Fatal(err)
	}
	otherKey := wire.NewFrameMAC(wire.Key("another key").SessionKey("s"))
	otherSession := wire.NewFrameMAC(wire.Key("k12345678").SessionKey("t"))

	tests := []struct {
		name    string
		in      []byte
		m       *wire.FrameMAC
		auth    bool   // errors.Is(err, wire.ErrAuth)
		want    error  // errors.Is(err, want), when set
		contain string // in the message, when set
	}{
		{"no MAC with a key", enc(data), m, true, nil, "no MAC"},
		{"no MAC with a key (FileEnd)", enc(Frame{H: wire.Header{Type: wire.TFileEnd, Offset: 5}}), m, true, nil, "no MAC"},
		{"MAC without a key", good, nil, true, nil, "no key"},
		{"flipped payload byte", flip(wire.HeaderSize + 3), m, true, nil, "bad MAC"},
		{"flipped MAC byte", flip(len(good) - 1), m, true, nil, "bad MAC"},
		{"offset changed", flip(15), m, true, nil, "bad MAC"},
		{"file changed", flip(7), m, true, nil, "bad MAC"},
		{"other key", good, otherKey, true, nil, "bad MAC"},
		{"other session", good, otherSession, true, nil, "bad MAC"},
		{"Hello in a stream", hello.Bytes(), nil, false, nil, "unexpected Hello frame"},
		{"Hello in a keyed stream", hello.Bytes(), m, false, nil, "unexpected Hello frame"},
		{"KeepAlive in a stream", keepAlive.Bytes(), nil, false, nil, "unexpected KeepAlive frame"},
		{"DataHello in a stream", dataHello.Bytes(), m, false, nil, "unexpected DataHello frame"},
		{"bad magic", append([]byte("XX"), good[2:]...), m, false, wire.ErrMagic, ""},
		{"short payload", enc(data)[:wire.HeaderSize+8], nil, false, io.ErrUnexpectedEOF, ""},
		{"short MAC", good[:len(good)-1], m, false, io.ErrUnexpectedEOF, ""},
		{"short header", good[:10], m, false, io.ErrUnexpectedEOF, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ReadFrame(bufio.NewReader(bytes.NewReader(tt.in)), tt.m)
			if err == nil {
				t.Fatalf("accepted %+v", f)
			}
			if got := errors.Is(err, wire.ErrAuth); got != tt.auth {
				t.Errorf("%v: errors.Is(err, ErrAuth) = %v, want %v", err, got, tt.auth)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.contain) {
				t.Errorf("got %q, want it to mention %q", err, tt.contain)
			}
		})
	}
	// The unaltered frame passes, so the cases above fail for their
	// alteration.
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(good)), m); err != nil {
		t.Fatalf("the good frame: %v", err)
	}
}

func TestFromChunk(t *testing.T) {
	m := testMAC()
	pool := stream.NewPool(1, 3*stream.HoleBlock)
	c, err := pool.Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Buf {
		c.Buf[i] = 0
	}
	for i := range stream.HoleBlock {
		c.Buf[2*stream.HoleBlock+i] = byte(i) | 1
	}
	c.Segment(4, 1<<20, len(c.Buf)) // a hole, then data
	c.Seal(m)
	fs := FromChunk(c)
	if len(fs) != 2 || fs[0].H.Type != wire.THole || fs[1].H.Type != wire.TData {
		t.Fatalf("got %d frames %+v, want a hole and data", len(fs), fs)
	}
	for i, f := range fs {
		if !bytes.Equal(f.Payload, c.Payload(i)) {
			t.Errorf("frame %d: payload differs from the chunk's", i)
		}
		if f.H.Flags&wire.FlagMAC == 0 || !m.Verify(f.MAC, encHeader(f.H), f.Payload) {
			t.Errorf("frame %d: MAC does not verify", i)
		}
	}
	if fs[0].Payload != nil {
		t.Errorf("hole frame has a payload")
	}
	want := bytes.Clone(fs[1].Payload)
	c.Buf[2*stream.HoleBlock] ^= 0xff // the pool reuses the buffer
	wantMAC := bytes.Clone(fs[1].MAC)
	c.MAC(1)[0] ^= 0xff
	if !bytes.Equal(fs[1].Payload, want) || !bytes.Equal(fs[1].MAC, wantMAC) {
		t.Error("the frames share bytes with the chunk")
	}
}

func TestServeRange(t *testing.T) {
	for _, key := range []bool{false, true} {
		var m *wire.FrameMAC
		fs := twoFiles()
		if key {
			m = testMAC()
			fs = sealAll(fs, m)
		}
		from := wire.Position{File: 0, Started: true, Offset: 50} // inside fs[1]
		to := fs[6].H.Before()                                    // the data of file 1
		var buf bytes.Buffer
		if err := ServeRange(&buf, from, to, m, fs); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(&buf)
		at := from
		var types []wire.Type
		for {
			f, err := ReadFrame(br, m)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("key %v: %v", key, err)
			}
			if f.H.Before() != at {
				t.Fatalf("key %v: frame begins at %v, want %v", key, f.H.Before(), at)
			}
			at = f.H.After()
			types = append(types, f.H.Type)
		}
		want := []wire.Type{wire.TData, wire.THole, wire.TData, wire.TFileEnd, wire.TFileStart}
		if at != to || len(types) != len(want) {
			t.Errorf("key %v: served up to %v with %v, want up to %v with %v", key, at, types, to, want)
		}
	}
}
