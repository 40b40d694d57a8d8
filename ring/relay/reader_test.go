package relay

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/herdproject/herd/ring/wire"
)

// frameStream is n Data frames of random lengths (up to max) and their
// encoding, written to a connection in pieces of random sizes.
func frameStream(n, max int) ([]wire.Header, [][]byte, []byte) {
	rnd := rand.New(rand.NewPCG(3, 4))
	var hs []wire.Header
	var ps [][]byte
	var enc bytes.Buffer
	off := uint64(0)
	for range n {
		l := 1 + rnd.IntN(max)
		if rnd.IntN(4) == 0 {
			l = 1 + rnd.IntN(64) // short ones too
		}
		h := wire.Header{Type: wire.TData, Offset: off, Length: uint32(l)}
		p := make([]byte, l)
		for i := range p {
			p[i] = byte(rnd.Uint32())
		}
		var hb [wire.HeaderSize]byte
		h.Put(hb[:])
		enc.Write(hb[:])
		enc.Write(p)
		hs, ps = append(hs, h), append(ps, p)
		off += uint64(l)
	}
	return hs, ps, enc.Bytes()
}

// writePieces writes b to c in pieces of random sizes, then closes c.
func writePieces(c net.Conn, b []byte) {
	rnd := rand.New(rand.NewPCG(5, 6))
	for len(b) > 0 {
		k := min(len(b), 1+rnd.IntN(100<<10))
		if _, err := c.Write(b[:k]); err != nil {
			break
		}
		b = b[k:]
		if rnd.IntN(8) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	c.Close()
}

// readFrames reads frames as readFrame does.
func readFrames(t *testing.T, fr *frameReader, hs []wire.Header, ps [][]byte) {
	t.Helper()
	var hb [wire.HeaderSize]byte
	buf := make([]byte, 1<<20)
	for i := range hs {
		fr.expect(wire.HeaderSize)
		h, err := wire.ReadHeader(fr, &hb)
		if err != nil {
			t.Fatalf("frame %d: header: %v", i, err)
		}
		if h != hs[i] {
			t.Fatalf("frame %d: header %+v, want %+v", i, h, hs[i])
		}
		fr.expect(h.PayloadLen())
		p := buf[:h.Length]
		if _, err := io.ReadFull(fr, p); err != nil {
			t.Fatalf("frame %d: payload: %v", i, err)
		}
		if !bytes.Equal(p, ps[i]) {
			t.Fatalf("frame %d: payload differs", i)
		}
	}
	fr.expect(wire.HeaderSize)
	if _, err := wire.ReadHeader(fr, &hb); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// tcpFeed returns the accepting end of a loopback TCP connection on
// which b arrives in pieces (writePieces), with a read deadline a minute
// away; it is closed at the test's end.
func tcpFeed(t *testing.T, b []byte) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		writePieces(c, b)
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	return c
}

// The frame reader gives back the stream as it was sent, however it
// arrives, on a TCP connection (where it sets SO_RCVLOWAT) and on a pipe.
func TestFrameReader(t *testing.T) {
	hs, ps, enc := frameStream(60, 1<<20)
	t.Run("tcp", func(t *testing.T) {
		fr := newFrameReader(dataConn{Conn: wire.NewConn(tcpFeed(t, enc), wire.PlainChannel(nil))}, nil)
		if fr.sock == nil {
			t.Fatal("no socket to set SO_RCVLOWAT on")
		}
		readFrames(t, fr, hs, ps)
		if fr.sock == nil {
			t.Error("setting SO_RCVLOWAT failed")
		}
	})
	t.Run("pipe", func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		go writePieces(a, enc)
		readFrames(t, newFrameReader(b, nil), hs, ps)
	})
}

// A stream that ends inside a payload is an unexpected EOF, as with any
// reader: the node waits for another upstream.
func TestFrameReaderShortPayload(t *testing.T) {
	hs, _, enc := frameStream(1, 100<<10)
	fr := newFrameReader(tcpFeed(t, enc[:len(enc)-1]), nil)
	var hb [wire.HeaderSize]byte
	fr.expect(wire.HeaderSize)
	h, err := wire.ReadHeader(fr, &hb)
	if err != nil || h != hs[0] {
		t.Fatalf("header: %+v, %v", h, err)
	}
	fr.expect(h.PayloadLen())
	if _, err := io.ReadFull(fr, make([]byte, h.Length)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short payload: %v, want io.ErrUnexpectedEOF", err)
	}
}
