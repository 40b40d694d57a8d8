package sender

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/herdproject/herd/ring/bypass"
	"github.com/herdproject/herd/ring/relay"
	"github.com/herdproject/herd/ring/source"
	"github.com/herdproject/herd/ring/stream"
	"github.com/herdproject/herd/ring/wire"
)

// DefaultBypass is how long a node may make no progress before its
// upstream bypasses it.
const DefaultBypass = 5 * time.Second

// ring is the live nodes' order for bypasses: Connect.Ring.
func (s *session) ringPeers(live []int) []wire.Peer {
	peers := make([]wire.Peer, len(live))
	for j, i := range live {
		peers[j] = wire.Peer{Name: s.hosts[i].Name, Addr: s.dataAddr(i)}
	}
	return peers
}

// startBypass makes the sender's window, its rescuer (for the first
// nodes) and its fetch port, which serves stream ranges to nodes whose
// window no longer holds what an adopted node needs. A resumed session
// asks for the port of its first run (the nodes know that one); port 0
// is any free one.
func (s *session) startBypass(ctx context.Context, live []int, port int) error {
	s.mu.Lock()
	s.live = live
	s.mu.Unlock()
	s.win = bypass.NewWindow(s.cfg.Window)
	sk := s.cfg.Key.SessionKey(s.id)
	peers := s.ringPeers(live)
	s.rescuer = bypass.New(ctx, bypass.Config{
		Ring: peers, Fanout: max(s.cfg.Plan.Fanout, 1), Timeout: s.cfg.Bypass, SessionKey: sk, Window: s.win,
		Fetch: s.fetchLocal,
		Dial: func(ctx context.Context, addr string) (*wire.Conn, error) {
			return relay.Dial(ctx, addr, wire.DataHello{Session: s.id, From: s.cfg.Name, Resume: true}, s.cfg.Key, s.dialOptions())
		},
		Report: func(j int, reason string) { s.bypassed(j, reason) },
		Logf:   s.logf,
	})
	ln, err := net.Listen("tcp", fetchAddr(port))
	if err != nil && port != 0 {
		s.warnf("cannot listen on port %d again for the nodes' fetches (%v): nodes that bypass a node and need ranges their window lost will not get them", port, err)
		ln, err = net.Listen("tcp", fetchAddr(0))
	}
	if err != nil {
		return fmt.Errorf("listen for the nodes' fetches (bypass): %w", err)
	}
	s.mu.Lock()
	s.fetchPort = ln.Addr().(*net.TCPAddr).Port
	s.mu.Unlock()
	context.AfterFunc(ctx, func() { ln.Close() })
	go s.serveFetch(ctx, ln)
	return nil
}

// bypassed marks live node j failed: it stopped and the ring went past it.
// It may come back and join late.
func (s *session) bypassed(j int, reason string) {
	if j < 0 || j >= len(s.live) {
		return
	}
	i := s.live[j]
	s.logf("node %s: bypassed: %s", s.hosts[i].Name, reason)
	s.failNode(i, "bypassed: ", reason)
	s.setJoinable(i, true)
}

// failNode marks node i failed for reason and tells it why, prefixed with
// what. Its control connection is read for a moment more (a verdict on its
// way says what happened on the node's side), then given up, so that a
// frozen node does not keep the session waiting for its verdict.
func (s *session) failNode(i int, what, reason string) {
	s.setState(i, StateFailed, reason)
	s.mu.Lock()
	c := s.ctl[i]
	s.mu.Unlock()
	if c != nil {
		_ = c.send(wire.TAbort, wire.Fail{Reason: what + reason})
		_ = c.conn.SetReadDeadline(time.Now().Add(lastWords))
	}
}

// lastWords is how long the sender still reads a failed node's control
// connection.
const lastWords = 2 * time.Second

// serveFetch answers the nodes' fetches until ctx ends.
func (s *session) serveFetch(ctx context.Context, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go func() {
			if err := s.fetchConn(ctx, c); err != nil {
				s.logf("fetch from %s: %v", c.RemoteAddr(), err)
			}
		}()
	}
}

func (s *session) fetchConn(ctx context.Context, c net.Conn) error {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hello wire.DataHello
	if err := wire.Expect(c, wire.TDataHello, &hello); err != nil {
		return err
	}
	if hello.Session != s.id {
		return fmt.Errorf("%s asks for session %s, not this one (%s)", hello.From, hello.Session, s.id)
	}
	ch, err := wire.AuthAccept(c, s.cfg.Key, hello.Nonce)
	if err != nil {
		return fmt.Errorf("%s: %w", hello.From, err)
	}
	var req wire.Fetch
	if err := ch.Expect(wire.TFetch, &req); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Time{})
	s.logf("%s fetches %v up to %v", hello.From, req.From, req.To)
	bw := bufio.NewWriterSize(c, 256<<10)
	err = s.fetchLocal(ctx, req.From, req.To, func(f bypass.Frame) error {
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		return f.Write(bw)
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// fetchLocal emits the frames that cover [from, to): from the window when
// it holds them, else re-read from the inputs.
func (s *session) fetchLocal(ctx context.Context, from, to wire.Position, emit func(bypass.Frame) error) error {
	if frames, ok := s.win.Range(from, to); ok {
		for _, f := range frames {
			if err := emit(f); err != nil {
				return err
			}
		}
		return nil
	}
	m := wire.NewFrameMAC(s.cfg.Key.SessionKey(s.id))
	p := from
	for p.Less(to) {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		f := p.File
		if int(f) >= len(s.sources) {
			return fmt.Errorf("no input for file %d", f+1)
		}
		var out bypass.Frame
		s.mu.Lock()
		length, known := s.lens[f]
		s.mu.Unlock()
		switch {
		case !p.Started:
			out.H = wire.Header{Type: wire.TFileStart, File: f}
		case known && p.Offset >= uint64(length):
			out.H = wire.Header{Type: wire.TFileEnd, File: f, Offset: p.Offset}
		default:
			frames, err := s.readAt(f, p.Offset, to, m)
			if err != nil {
				return err
			}
			for _, fr := range frames {
				if err := emit(fr); err != nil {
					return err
				}
				p = fr.H.After()
			}
			continue
		}
		sealed := stream.Chunk{}
		sealed.Add(out.H, 0, 0)
		sealed.Seal(m)
		out = bypass.FromChunk(&sealed)[0]
		if err := emit(out); err != nil {
			return err
		}
		p = out.H.After()
	}
	return nil
}

// readAt re-reads up to a chunk of file f's input at off (not past to)
// and returns it as sealed Data and Hole frames.
func (s *session) readAt(f uint32, off uint64, to wire.Position, m *wire.FrameMAC) ([]bypass.Frame, error) {
	src := s.sources[f]
	ra := src.ReaderAt()
	if ra == nil {
		return nil, fmt.Errorf("input %s is a stream and cannot be re-read from offset %d (the nodes' windows no longer hold it); use a larger --window", src.Name(), off)
	}
	n, limit := uint64(s.cfg.ChunkSize), uint64(source.MaxHole)
	if to.File == f && to.Started {
		n = min(n, to.Offset-off)
		limit = min(limit, to.Offset-off)
	}
	if n == 0 {
		return nil, fmt.Errorf("file %d: nothing to read at %d", f+1, off)
	}
	// A regular file's holes are not read (as produce does); a file
	// system that cannot tell is read.
	if hole, length, err := src.Extent(int64(off)); err == nil && length > 0 {
		if hole {
			c := stream.Chunk{}
			c.Add(wire.Header{Type: wire.THole, File: f, Offset: off, Length: uint32(min(uint64(length), limit))}, 0, 0)
			c.Seal(m)
			return bypass.FromChunk(&c), nil
		}
		n = min(n, uint64(length))
	}
	c := stream.Chunk{Buf: make([]byte, n)}
	got, err := ra.ReadAt(c.Buf, int64(off))
	if got == 0 {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("%s ends at %d", src.Name(), off)
		}
		return nil, fmt.Errorf("re-read %s at offset %d: %w", src.Name(), off, err)
	}
	c.Segment(f, off, got)
	c.Seal(m)
	return bypass.FromChunk(&c), nil
}
