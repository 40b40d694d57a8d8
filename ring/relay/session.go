package relay

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/herdproject/herd/ring/cook"
	"github.com/herdproject/herd/ring/hostlist"
	"github.com/herdproject/herd/ring/sink"
	"github.com/herdproject/herd/ring/stream"
	"github.com/herdproject/herd/ring/wire"
	"golang.org/x/sys/unix"
)

// ctlConn serialises writes on the control connection (progress and
// verdict come from different goroutines).
type ctlConn struct {
	net.Conn
	mu sync.Mutex
}

func (c *ctlConn) send(t wire.Type, v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return wire.WriteMsg(c.Conn, t, v)
}

// session runs one session on an accepted control connection.
func (n *Node) session(ctx context.Context, raw net.Conn) (err error) {
	ctl := &ctlConn{Conn: raw}
	defer ctl.Close()
	_ = raw.SetReadDeadline(time.Now().Add(30 * time.Second))
	var hello wire.Hello
	if err := wire.Expect(raw, wire.THello, &hello); err != nil {
		return fmt.Errorf("%w: hello from %s: %v", errNoSession, raw.RemoteAddr(), err)
	}
	if err := wire.AuthAccept(raw, n.cfg.Key, hello.Nonce); err != nil {
		return fmt.Errorf("%w: %s (%s): %v", errNoSession, raw.RemoteAddr(), hello.Sender, err)
	}
	var h wire.Header
	var body []byte
	if h, body, err = wire.ReadMsg(raw); err == nil && h.Type == wire.TKill {
		var k wire.Kill
		_ = json.Unmarshal(body, &k)
		return fmt.Errorf("%w by %s (%s)", ErrKilled, k.From, raw.RemoteAddr())
	}
	var setup wire.Setup
	if err == nil {
		err = wire.Decode(h, body, wire.TSetup, &setup)
	}
	if err != nil {
		return fmt.Errorf("%w: set-up from %s: %v", errNoSession, raw.RemoteAddr(), err)
	}
	me, how := n.findSelf(raw, &setup)
	n.logf("session %s from %s (%s): I am %s, node %d of %d (%s)", setup.Session, hello.Sender, raw.RemoteAddr(), setup.Hosts[me], me+1, len(setup.Hosts), how)
	timeout := n.cfg.Timeout
	if setup.TimeoutMilli > 0 {
		timeout = time.Duration(setup.TimeoutMilli) * time.Millisecond
	}

	// Register for the upstream data connection before saying Ready: the
	// sender connects the ring as soon as every node is ready.
	upCh := make(chan net.Conn, 1)
	n.mu.Lock()
	n.waiting[setup.Session] = upCh
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.waiting, setup.Session)
		n.mu.Unlock()
		select {
		case c := <-upCh:
			c.Close()
		default:
		}
	}()

	if err := n.check(&setup); err != nil {
		_ = ctl.send(wire.TFail, wire.Fail{Reason: err.Error()})
		return err
	}
	if err := ctl.send(wire.TReady, wire.Ready{Name: fmt.Sprintf("%s (%s)", setup.Hosts[me], how)}); err != nil {
		return fmt.Errorf("send ready: %w", err)
	}

	// Wait for the topology (the sender waits for every node first).
	_ = raw.SetReadDeadline(time.Now().Add(10 * time.Minute))
	var conn wire.Connect
	if err := wire.Expect(raw, wire.TConnect, &conn); err != nil {
		return fmt.Errorf("waiting for the ring to be built: %w", err)
	}
	_ = raw.SetReadDeadline(time.Time{})
	children, err := n.dialChildren(ctx, &setup, setup.Hosts[me], conn)
	if err != nil {
		_ = ctl.send(wire.TFail, wire.Fail{Reason: err.Error()})
		return err
	}
	defer func() {
		for _, c := range children {
			c.Close()
		}
	}()
	if err := ctl.send(wire.TConnected, wire.Connected{}); err != nil {
		return fmt.Errorf("send connected: %w", err)
	}

	// From here on the sender may abort us or go away: watch the control
	// connection for that and for the final Bye.
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	bye := make(chan struct{})
	judgement := make(chan wire.Bye, 1) // filled before bye closes
	go func() {
		defer close(bye)
		for {
			h, body, err := wire.ReadMsg(raw)
			if err != nil {
				cancel(fmt.Errorf("sender connection lost: %w", err))
				return
			}
			switch h.Type {
			case wire.TAbort:
				cancel(fmt.Errorf("sender aborted the session: %s", string(body)))
				return
			case wire.TBye:
				var b wire.Bye
				if err := json.Unmarshal(body, &b); err != nil {
					b = wire.Bye{Reason: fmt.Sprintf("unreadable judgement from the sender: %v", err)}
				}
				judgement <- b
				return
			}
		}
	}()

	var up net.Conn
	wait := timeout
	if wait == 0 {
		wait = 10 * time.Minute
	}
	select {
	case up = <-upCh:
	case <-sctx.Done():
		return context.Cause(sctx)
	case <-time.After(wait):
		err := fmt.Errorf("no data connection from upstream within %v", wait)
		_ = ctl.send(wire.TVerdict, wire.Verdict{Error: err.Error()})
		return err
	}
	defer up.Close()
	context.AfterFunc(sctx, func() { up.Close() })
	if tc, ok := up.(*net.TCPConn); ok && setup.SockBuf > 0 {
		_ = tc.SetReadBuffer(setup.SockBuf)
	}

	start := time.Now()
	v := n.transfer(sctx, ctl, up, children, &setup, timeout)
	v.Seconds = time.Since(start).Seconds()
	if n.cfg.Finished != nil {
		n.cfg.Finished(setup.Files, v)
	}
	if err := ctl.send(wire.TVerdict, v); err != nil {
		return fmt.Errorf("send verdict: %w", err)
	}
	select {
	case <-bye:
	case <-time.After(byeWait):
	}
	if v.Error != "" {
		return fmt.Errorf("%w: %s", ErrSessionFailed, v.Error)
	}
	for i, f := range v.Files {
		if f.Error != "" {
			return fmt.Errorf("%w: file %d: %s", ErrSessionFailed, i+1, f.Error)
		}
	}
	// Only the sender knows the digests: the data is good when it says so.
	var judged *wire.Bye
	select {
	case b := <-judgement:
		judged = &b
	default:
	}
	switch {
	case judged == nil:
		return fmt.Errorf("%w: %w (the data was written but is not verified)", ErrSessionFailed, errNoJudgement)
	case !judged.Verified:
		return fmt.Errorf("%w: the sender did not verify this node: %s", ErrSessionFailed, judged.Reason)
	}
	n.logf("session %s done: %d file(s) written, hashed and verified by the sender in %.1fs", setup.Session, len(v.Files), v.Seconds)
	return nil
}

// byeWait bounds the wait for the sender's judgement after the verdict.
const byeWait = 30 * time.Second

// errNoJudgement: the sender went away before judging the verdict.
var errNoJudgement = errors.New("no judgement from the sender after the verdict")

// findSelf locates this node in the host list as dolly's client does; the
// address the sender reached us on comes first.
func (n *Node) findSelf(c net.Conn, s *wire.Setup) (int, string) {
	hosts := make([]hostlist.Resolved, len(s.Hosts))
	for i, h := range s.Hosts {
		hosts[i].Name = h
		if i < len(s.Addrs) {
			hosts[i].Addr, _ = netip.ParseAddr(s.Addrs[i])
		}
	}
	var pref []netip.Addr
	if n.listen.IsValid() {
		pref = append(pref, n.listen)
	}
	if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil {
		pref = append(pref, ap.Addr().Unmap())
	}
	ifaces, _ := hostlist.InterfaceAddrs()
	hn, _ := n.cfg.Hostname()
	i, how, err := hostlist.FindSelf(hosts, pref, ifaces, n.cfg.Getenv, hn, s.HyphenNormal)
	if err != nil || i < 0 || i >= len(s.Hosts) {
		return s.Index, "as the sender says; cannot find myself in the host list"
	}
	if i != s.Index {
		n.logf("warning: the sender calls me %s but I found myself as %s (%s); using the sender's", s.Hosts[s.Index], s.Hosts[i], how)
		return s.Index, "as the sender says"
	}
	return i, how
}

// check makes sure every output can be written, without writing anything.
func (n *Node) check(s *wire.Setup) error {
	if s.ChunkSize <= 0 || s.ChunkSize > wire.MaxData {
		return fmt.Errorf("chunk size %d out of range (1..%d)", s.ChunkSize, wire.MaxData)
	}
	for i, f := range s.Files {
		if f.Discard {
			continue
		}
		switch {
		case n.cfg.Prepare != nil:
			if err := n.cfg.Prepare(&s.Files[i]); err != nil {
				return fmt.Errorf("file %d (%s): %w", i+1, f.Output, err)
			}
			f = s.Files[i]
		case f.Mount != "":
			return fmt.Errorf("file %d (%s) is a stage2 to mount at %s: only the herd agent takes stage2 files", i+1, f.Output, f.Mount)
		}
		if err := n.allowed(f); err != nil {
			return fmt.Errorf("file %d (%s): %w", i+1, f.Output, err)
		}
		if err := checkFile(f); err != nil {
			return fmt.Errorf("file %d (%s): %w", i+1, f.Output, err)
		}
	}
	return nil
}

// allowed checks an output against the node's allow-list: the absolute
// path, symbolic links resolved (as far as the path exists), must match a
// pattern. Split outputs are checked by their first part's name.
func (n *Node) allowed(f wire.SetupFile) error {
	if len(n.cfg.Allow) == 0 {
		return nil
	}
	if f.Output == "-" {
		return fmt.Errorf("standard output is not in this node's allow-list (%s)", strings.Join(n.cfg.Allow, " "))
	}
	p := f.Output
	if f.Split > 0 {
		p += "_0"
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return err
	}
	real := resolveExisting(abs)
	for _, pat := range n.cfg.Allow {
		if ok, _ := filepath.Match(pat, real); ok {
			return nil
		}
	}
	shown := abs
	if real != abs {
		shown = abs + " (→ " + real + ")"
	}
	return fmt.Errorf("%s is outside this node's allow-list (%s): refusing to write", shown, strings.Join(n.cfg.Allow, " "))
}

// resolveExisting resolves the symbolic links of an absolute path, also a
// dangling one (writing would create its target) and below the longest
// existing prefix, following at most 40 links.
func resolveExisting(p string) string {
	for range 40 {
		fi, err := os.Lstat(p)
		switch {
		case err == nil && fi.Mode()&os.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return p
			}
			if !filepath.IsAbs(t) {
				t = filepath.Join(filepath.Dir(p), t)
			}
			p = filepath.Clean(t)
			continue
		case err == nil:
			if r, err := filepath.EvalSymlinks(p); err == nil {
				return r
			}
			return p
		}
		parent := filepath.Dir(p)
		if parent == p {
			return p
		}
		return filepath.Join(resolveExisting(parent), filepath.Base(p))
	}
	return p
}

func checkFile(f wire.SetupFile) error {
	if !f.Cooked {
		return sink.Check(f.Output, sink.Options{Size: f.Size, DataSize: f.DataSize, Split: f.Split})
	}
	k, err := cook.KindOf(f.InputName)
	if err != nil {
		return err
	}
	if k.Archive == "" {
		return sink.Check(f.Output, sink.Options{Size: -1, DataSize: -1, Split: f.Split})
	}
	// An archive unpacks under a directory that exists or can be made.
	dir := filepath.Clean(f.Output)
	for {
		st, err := os.Stat(dir)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s is not a directory: an archive unpacks under a directory", dir)
			}
			if err := unix.Access(dir, unix.W_OK); err != nil {
				return fmt.Errorf("directory %s is not writable: %w", dir, err)
			}
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return fmt.Errorf("cannot create %s", f.Output)
		}
		dir = parent
	}
}

func (n *Node) dialChildren(ctx context.Context, s *wire.Setup, me string, c wire.Connect) ([]net.Conn, error) {
	var conns []net.Conn
	for _, p := range c.Children {
		conn, err := DialData(ctx, p.Addr, s.Session, me, n.cfg.Key, c.SegSize, s.SockBuf)
		if err != nil {
			for _, x := range conns {
				x.Close()
			}
			return nil, fmt.Errorf("connect to next node %s (%s): %w", p.Name, p.Addr, err)
		}
		conns = append(conns, conn)
	}
	return conns, nil
}

// DialData opens a data connection to addr and introduces the session. It
// tries for up to 10 seconds. segsize and sockbuf, when > 0, set
// TCP_MAXSEG (dolly's segsize) and the socket buffers (dolly's -u).
func DialData(ctx context.Context, addr, session, from string, key wire.Key, segsize, sockbuf int) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if segsize > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, segsize) })
			if err != nil {
				return err
			}
			return serr
		}
	}
	var last error
	for try := 0; try < 20; try++ {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			if tc, ok := c.(*net.TCPConn); ok && sockbuf > 0 {
				_ = tc.SetWriteBuffer(sockbuf)
				_ = tc.SetReadBuffer(sockbuf)
			}
			nonce := wire.NewNonce()
			if err := wire.WriteMsg(c, wire.TDataHello, wire.DataHello{Session: session, From: from, Nonce: nonce}); err != nil {
				c.Close()
				return nil, err
			}
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if err := wire.AuthConnect(c, key, nonce); err != nil {
				c.Close()
				var pe *wire.PeerError
				if errors.As(err, &pe) {
					return nil, fmt.Errorf("%w: %s", wire.ErrAuth, pe.Reason)
				}
				return nil, err
			}
			_ = c.SetReadDeadline(time.Time{})
			return c, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil, last
}

// transfer runs the pipeline until the End frame or a failure, and returns
// the node's verdict.
func (n *Node) transfer(ctx context.Context, ctl *ctlConn, up net.Conn, children []net.Conn, s *wire.Setup, timeout time.Duration) wire.Verdict {
	pool := stream.NewPool(n.cfg.PoolChunks, s.ChunkSize)
	depth := pool.Cap()
	var stages []stream.Stage
	var fwds []*stream.Forwarder
	for i, c := range children {
		f := stream.NewForwarder(fmt.Sprintf("child %d (%s)", i+1, c.RemoteAddr()), c, depth, timeout)
		fwds = append(fwds, f)
		stages = append(stages, f)
	}
	w := newWriter(s, depth, n.cfg.Stdout, n.cfg.NoSync || s.NoSync, n.logf)
	hs := stream.NewHasher(depth)
	stages = append(stages, w, hs)

	var received atomic.Int64
	stop := make(chan struct{})
	go n.progress(ctl, stop, &received, w)

	mac := wire.NewFrameMAC(n.cfg.Key.SessionKey(s.Session))
	rerr := readUpstream(ctx, up, pool, stages, s, mac, timeout, &received)
	for _, f := range fwds {
		if err := f.Close(); err != nil {
			n.logf("warning: %v (the nodes after it get nothing from me)", err)
		}
	}
	hs.Close()
	w.close(rerr)
	close(stop)

	v := wire.Verdict{Files: make([]wire.FileResult, len(s.Files))}
	if rerr != nil {
		v.Error = rerr.Error()
	}
	for i := range s.Files {
		r := &v.Files[i]
		sum, ok := hs.Sum(uint32(i))
		if !ok {
			r.Error = "not received completely"
			if rerr != nil {
				r.Error += ": " + rerr.Error()
			}
			continue
		}
		r.Bytes, r.StreamSHA256 = sum.Bytes, sum.Hex()
		wr := w.results[i]
		r.Error = wr.err
		r.Written, r.SHA256 = sum.Bytes, sum.Hex()
		if wr.sha != nil {
			r.Written, r.SHA256 = wr.written, hex.EncodeToString(wr.sha)
		}
	}
	return v
}

// readUpstream reads frames from the upstream connection and dispatches
// them until End. It checks that files and offsets arrive in order.
// With mac (the node has a key) every frame must carry a valid MAC, checked
// before the frame goes to any stage: nothing unauthenticated is written
// or forwarded.
func readUpstream(ctx context.Context, up net.Conn, pool *stream.Pool, stages []stream.Stage, s *wire.Setup, mac *wire.FrameMAC, timeout time.Duration, received *atomic.Int64) error {
	br := bufio.NewReaderSize(up, 256<<10)
	var hb [wire.HeaderSize]byte
	var mb [wire.MACSize]byte
	// sealed reads and checks the MAC that follows a frame.
	sealed := func(h wire.Header, payload []byte) error {
		switch {
		case mac == nil && h.Flags&wire.FlagMAC != 0:
			return fmt.Errorf("%w: upstream %s sends authenticated frames but this node has no key", wire.ErrAuth, up.RemoteAddr())
		case mac == nil:
			return nil
		case h.Flags&wire.FlagMAC == 0:
			return fmt.Errorf("%w: %s frame for file %d at offset %d from %s has no MAC", wire.ErrAuth, h.Type, h.File+1, h.Offset, up.RemoteAddr())
		}
		if _, err := io.ReadFull(br, mb[:]); err != nil {
			return fmt.Errorf("read MAC from upstream %s: %w", up.RemoteAddr(), err)
		}
		if !mac.Verify(mb[:], hb[:], payload) {
			return fmt.Errorf("%w: %s frame for file %d at offset %d from %s: bad MAC (tampered with or corrupted in flight); nothing of it written", wire.ErrAuth, h.Type, h.File+1, h.Offset, up.RemoteAddr())
		}
		return nil
	}
	file, next, inFile := uint32(0), uint32(0), false
	var off uint64
	for {
		if timeout > 0 {
			_ = up.SetReadDeadline(time.Now().Add(timeout))
		}
		h, err := wire.ReadHeader(br, &hb)
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("upstream %s closed the stream before its end", up.RemoteAddr())
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("no data from upstream %s for %v (-a)", up.RemoteAddr(), timeout)
			}
			return fmt.Errorf("read from upstream %s: %w", up.RemoteAddr(), err)
		}
		// Order checks: the writer relies on them.
		switch h.Type {
		case wire.TFileStart:
			if inFile || h.File != next || int(h.File) >= len(s.Files) {
				return fmt.Errorf("protocol: unexpected start of file %d", h.File+1)
			}
			file, inFile, off = h.File, true, 0
			next++
		case wire.TData, wire.THole:
			if !inFile || h.File != file || h.Offset != off {
				return fmt.Errorf("protocol: %s frame for file %d at offset %d, expected file %d at %d", h.Type, h.File+1, h.Offset, file+1, off)
			}
			if h.Type == wire.TData && int(h.Length) > pool.ChunkSize() {
				return fmt.Errorf("protocol: data frame of %d bytes exceeds the chunk size %d", h.Length, pool.ChunkSize())
			}
			off += uint64(h.Length)
		case wire.TFileEnd:
			if !inFile || h.File != file || h.Offset != off {
				return fmt.Errorf("protocol: end of file %d at %d, expected file %d at %d", h.File+1, h.Offset, file+1, off)
			}
			inFile = false
		case wire.TEnd:
			if inFile || int(next) != len(s.Files) {
				return fmt.Errorf("protocol: end of session after %d of %d files", next, len(s.Files))
			}
		default:
			return fmt.Errorf("protocol: unexpected %s frame on the data connection", h.Type)
		}
		c, err := pool.Get(ctx)
		if err != nil {
			return err
		}
		if h.Type == wire.TData {
			// Waiting for a free chunk is backpressure from this node's
			// own stages (a stalled child, a slow disk), not upstream
			// inactivity: the payload gets a full -a period of its own.
			if timeout > 0 {
				_ = up.SetReadDeadline(time.Now().Add(timeout))
			}
			if _, err := io.ReadFull(br, c.Buf[:h.Length]); err != nil {
				stream.Dispatch(c, nil)
				return fmt.Errorf("read data from upstream %s: %w", up.RemoteAddr(), err)
			}
			if err := sealed(h, c.Buf[:h.Length]); err != nil {
				stream.Dispatch(c, nil)
				return err
			}
			addFrame(c, h, int(h.Length), mac, mb[:])
		} else {
			if err := sealed(h, nil); err != nil {
				stream.Dispatch(c, nil)
				return err
			}
			addFrame(c, h, 0, mac, mb[:])
		}
		received.Add(c.Bytes())
		stream.Dispatch(c, stages)
		if h.Type == wire.TEnd {
			return nil
		}
	}
}

// addFrame puts a received frame into c, with its MAC when sealed.
func addFrame(c *stream.Chunk, h wire.Header, n int, mac *wire.FrameMAC, m []byte) {
	if mac != nil {
		c.AddSealed(h, 0, n, m)
		return
	}
	c.Add(h, 0, n)
}

// progress reports the node's progress to the sender (and to the log with
// -v) until stop closes.
func (n *Node) progress(ctl *ctlConn, stop <-chan struct{}, received *atomic.Int64, w *writer) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	start := time.Now()
	var lastLog time.Time
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			p := wire.Progress{Received: received.Load(), Written: w.written.Load(), File: int(w.file.Load()), State: "receiving"}
			if err := ctl.send(wire.TProgress, p); err != nil {
				return
			}
			if n.cfg.Verbose && now.Sub(lastLog) >= time.Second {
				lastLog = now
				mb := float64(p.Received) / 1e6
				n.logf("Transfered MB: %.0f, MB/s: %.3f", mb, mb/now.Sub(start).Seconds())
			}
		}
	}
}
