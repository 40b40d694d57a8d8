package relay

import (
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/herdproject/herd/ring/bypass"
	"github.com/herdproject/herd/ring/cook"
	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/hostlist"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/sink"
	"github.com/herdproject/herd/ring/stream"
	"github.com/herdproject/herd/ring/wire"
	"golang.org/x/sys/unix"
)

// ctlConn is the control connection to the sender. It serialises writes
// (progress, keep-alives and the verdict come from different goroutines)
// and survives the sender going away: while the node waits for it to come
// back (Setup.SenderWaitMilli), messages are not sent, and the ones the
// sender must not miss (Bypassed reports, the Verdict) are kept and sent
// again on the connection of the sender that resumes the session.
type ctlConn struct {
	mu   sync.Mutex
	conn *wire.Conn
	away bool
	kept []keptMsg
}

type keptMsg struct {
	t wire.Type
	v any
}

// errSenderAway: the message was not sent, the sender is away.
var errSenderAway = errors.New("the sender is away")

func (c *ctlConn) send(t wire.Type, v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t == wire.TBypassed || t == wire.TVerdict {
		c.kept = append(c.kept, keptMsg{t, v})
	}
	if c.away {
		return errSenderAway
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return c.conn.WriteMsg(t, v)
}

// keepAlive tells the sender that this node runs: the sender takes a node
// whose control connection is silent for its bypass timeout for one that
// stopped, wherever it is in the session.
func (c *ctlConn) keepAlive() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.away {
		return
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = c.conn.WriteKeepAlive(0, 0)
}

// current is the connection to read from.
func (c *ctlConn) current() *wire.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// lose marks the sender away.
func (c *ctlConn) lose() {
	c.mu.Lock()
	c.away = true
	c.conn.Close()
	c.mu.Unlock()
}

// resume makes nc the connection to the sender: it answers r and sends
// again the messages the sender must not miss.
func (c *ctlConn) resume(nc *wire.Conn, r wire.Resumed) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn.Close()
	c.conn, c.away = nc, false
	_ = nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if err := nc.WriteMsg(wire.TResumed, r); err != nil {
		c.away = true
		return err
	}
	for _, m := range c.kept {
		if err := nc.WriteMsg(m.t, m.v); err != nil {
			c.away = true
			return err
		}
	}
	return nil
}

func (c *ctlConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn.Close()
}

// session runs one session on a control connection whose handshake
// (Node.handshake) gave hello and setup.
func (n *Node) session(ctx context.Context, raw *wire.Conn, hello wire.Hello, setup wire.Setup) (err error) {
	ctl := &ctlConn{conn: raw}
	defer ctl.Close()
	me, how := n.findSelf(raw, &setup)
	n.infof("session %s from %s (%s): I am %s, node %d of %d (%s)", setup.Session, hello.Sender, raw.RemoteAddr(), setup.Hosts[me], me+1, len(setup.Hosts), how)
	timeout := n.cfg.Timeout
	if setup.TimeoutMilli > 0 {
		timeout = time.Duration(setup.TimeoutMilli) * time.Millisecond
	}

	// Register for the upstream data connection before saying Ready: the
	// sender connects the ring as soon as every node is ready.
	up := newUpstream()
	n.mu.Lock()
	n.waiting[setup.Session] = up
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.waiting, setup.Session)
		n.mu.Unlock()
		up.close()
	}()

	if err := n.check(&setup); err != nil {
		_ = ctl.send(wire.TFail, wire.Fail{Reason: err.Error()})
		return err
	}
	if err := ctl.send(wire.TReady, wire.Ready{Name: fmt.Sprintf("%s (%s)", setup.Hosts[me], how), Digest: setup.Digest}); err != nil {
		return fmt.Errorf("send ready: %w", err)
	}

	// Wait for the topology (the sender waits for every node first).
	_ = raw.SetReadDeadline(time.Now().Add(10 * time.Minute))
	var conn wire.Connect
	if err := raw.Expect(wire.TConnect, &conn); err != nil {
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
	// Until the verdict, the node says every quarter of the bypass
	// timeout that it runs (after it the sender reads nothing more).
	alive := make(chan struct{})
	stopAlive := sync.OnceFunc(func() { close(alive) })
	defer stopAlive()
	go stream.SendKeepAlives(ctl.keepAlive, bypassTimeout(&conn)/4, func() bool { return true }, alive)

	n.mu.Lock()
	n.controls[setup.Session] = ctl
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.controls, setup.Session)
		n.mu.Unlock()
	}()
	// From here on the sender may abort us or go away: watch the control
	// connection for that and for the final Bye. A sender that goes away
	// may come back (restarted): the session goes on meanwhile, for at
	// most senderWait.
	senderWait := time.Duration(setup.SenderWaitMilli) * time.Millisecond
	var received atomic.Int64 // stream bytes so far, for a resuming sender
	var transferred atomic.Bool
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	bye := make(chan struct{})
	judgement := make(chan wire.Bye, 1) // filled before bye closes
	go func() {
		defer close(bye)
		for {
			h, body, err := ctl.current().ReadMsg()
			if err != nil {
				if senderWait <= 0 || sctx.Err() != nil {
					cancel(fmt.Errorf("sender connection lost: %w", err))
					return
				}
				ctl.lose()
				n.warnf("lost the sender's control connection (%v): going on, and waiting up to %v for the sender to come back (its --sender-wait)", err, senderWait)
				nc, ok := n.awaitSender(sctx, setup.Session, senderWait)
				if !ok {
					if sctx.Err() == nil {
						n.warnf("the sender did not come back within %v: ending the session", senderWait)
					}
					cancel(fmt.Errorf("sender connection lost: %w; it did not come back within %v (--sender-wait)", err, senderWait))
					return
				}
				r := wire.Resumed{Received: received.Load(), Finished: transferred.Load()}
				if err := ctl.resume(nc, r); err != nil {
					n.warnf("the sender came back (%s) but answering it failed: %v", nc.RemoteAddr(), err)
					continue
				}
				n.infof("the sender came back (%s): session %s resumed with %d bytes received", nc.RemoteAddr(), setup.Session, r.Received)
				continue
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

	wait := timeout
	if wait == 0 {
		wait = 10 * time.Minute
	}
	first, err := up.take(sctx, wait)
	if err != nil {
		if errors.Is(err, errNoUpstream) {
			err = fmt.Errorf("no data connection from upstream within %v", wait)
			_ = ctl.send(wire.TVerdict, wire.Verdict{Error: err.Error()})
		}
		return err
	}
	context.AfterFunc(sctx, up.close)
	// A node that lost its upstream waits this long for another to take
	// over: the one before it must notice (the bypass timeout) and
	// connect.
	up.bypass = bypassTimeout(&conn)
	up.stats.gap.Store(int64(up.bypass / 2))
	up.wait = max(3*up.bypass+10*time.Second, timeout)
	if slices.Contains(plan.Children(len(conn.Ring), max(conn.Fanout, 1), -1), conn.Me) {
		// The upstream is the sender: a restarted sender takes over.
		up.wait = max(up.wait, senderWait)
	}
	// Silence from upstream (no frame, no KeepAlive) for this long means
	// it stopped: -a counts from the last sign of life, and never runs
	// out before the bypass upstream of this node had its chance.
	up.silence = timeout
	if watchTimeout(&conn) > 0 {
		up.silence = max(timeout, 3*up.bypass)
	}
	if tc, ok := first.Conn.Conn.(*net.TCPConn); ok && setup.SockBuf > 0 {
		_ = tc.SetReadBuffer(setup.SockBuf)
	}

	start := time.Now()
	v := n.transfer(sctx, ctl, up, first, children, &setup, &conn, timeout, &received)
	v.Seconds = time.Since(start).Seconds()
	transferred.Store(true)
	if n.cfg.Finished != nil {
		n.cfg.Finished(setup.Files, v)
	}
	stopAlive()
	if err := ctl.send(wire.TVerdict, v); err != nil {
		if senderWait <= 0 {
			return fmt.Errorf("send verdict: %w", err)
		}
		// Kept: sent again to the sender when it comes back.
		n.warnf("verdict not sent (%v): kept for the sender's return", err)
	}
	if v.Error != "" {
		// Nothing more is read from upstream: close it once the sender
		// has this node's account, so that the upstream does not wait
		// for it to confirm the end of a stream it refused
		// (stream.LiveConn.Finish) but goes past it.
		up.close()
	}
	select {
	case <-bye:
	case <-ctx.Done():
		// Told to stop (SIGTERM, herd recv interrupted): the sender's
		// word is not waited for.
	case <-time.After(byeWait + senderWait):
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
	n.infof("session %s done: %d file(s) written, hashed and verified by the sender in %.1fs", setup.Session, len(v.Files), v.Seconds)
	return nil
}

// awaitSender waits up to d for a resuming sender's control connection
// to session (Node.resumeSession hands it over).
func (n *Node) awaitSender(ctx context.Context, session string, d time.Duration) (*wire.Conn, bool) {
	ch := make(chan *wire.Conn, 1)
	n.mu.Lock()
	n.orphans[session] = ch
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.orphans, session)
		n.mu.Unlock()
		select {
		case c := <-ch: // handed over as the wait ended
			c.Close()
		default:
		}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case c := <-ch:
		return c, true
	case <-ctx.Done():
	case <-t.C:
	}
	return nil, false
}

// resumeSession hands a resuming sender's control connection to the
// session it names, waiting for its sender; it tells whether one took it.
func (n *Node) resumeSession(session string, c *wire.Conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch := n.orphans[session]
	if ch == nil {
		return false
	}
	select {
	case ch <- c:
		return true
	default:
		return false
	}
}

// dropControl closes the control connection of a running session, which
// then waits for its sender to come back; false when there is none.
func (n *Node) dropControl(session string) bool {
	n.mu.Lock()
	c := n.controls[session]
	n.mu.Unlock()
	if c == nil {
		return false
	}
	n.infof("a sender resumes session %s: dropping its old control connection", session)
	c.Close()
	return true
}

// resumable tells whether a session runs past its set-up: a sender may
// come to resume it.
func (n *Node) resumable() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.orphans) > 0 || len(n.controls) > 0
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
		n.warnf("the sender calls me %s but I found myself as %s (%s); using the sender's", s.Hosts[s.Index], s.Hosts[i], how)
		return s.Index, "as the sender says"
	}
	return i, how
}

// check makes sure every output can be written, without writing anything,
// and that the node computes the session's digest, which it names in
// s.Digest for the rest of the session ("sha256" for "").
func (n *Node) check(s *wire.Setup) error {
	if s.ChunkSize <= 0 || s.ChunkSize > wire.MaxData {
		return fmt.Errorf("chunk size %d out of range (1..%d)", s.ChunkSize, wire.MaxData)
	}
	alg, err := digest.Parse(s.Digest)
	if err != nil {
		return fmt.Errorf("the sender asks for a digest this node does not compute: %w; run the same herd on both, or send with --digest sha256", err)
	}
	s.Digest = string(alg) // "" (a sender older than the field) is sha256
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

func (n *Node) dialChildren(ctx context.Context, s *wire.Setup, me string, c wire.Connect) ([]*wire.Conn, error) {
	var conns []*wire.Conn
	for _, p := range c.Children {
		conn, err := DialData(ctx, p.Addr, s.Session, me, n.cfg.Key, dialOptions(s, c.SegSize))
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
// tries for up to 10 seconds; opts tune the socket.
func DialData(ctx context.Context, addr, session, from string, key wire.Key, opts DialOptions) (*wire.Conn, error) {
	return Dial(ctx, addr, wire.DataHello{Session: session, From: from}, key, opts)
}

// DialOptions tune a data connection's socket.
type DialOptions struct {
	// SegSize, when > 0, sets TCP_MAXSEG (dolly's segsize).
	SegSize int
	// SockBuf, when > 0, sets the send and receive buffer sizes (dolly's
	// -u), which turns the kernel's autotuning off.
	SockBuf int
	// Congestion, when set, is the TCP congestion control (TCP_CONGESTION,
	// e.g. "cubic"). An algorithm the kernel lacks or refuses leaves the
	// system's: the connection works either way.
	Congestion string
}

// dialOptions is the DialOptions a session's Setup asks for.
func dialOptions(s *wire.Setup, segsize int) DialOptions {
	return DialOptions{SegSize: segsize, SockBuf: s.SockBuf, Congestion: s.Congestion}
}

// control sets the options that must be set before connecting.
func (o DialOptions) control(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if o.Congestion != "" {
			// Best effort: the system's algorithm is still correct.
			_ = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, o.Congestion)
		}
		if o.SegSize > 0 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, o.SegSize)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// Dial opens a data connection to addr (a node's data port, or a sender's
// fetch port), sends hello with a fresh nonce and authenticates. It tries
// for up to 10 seconds, or until ctx ends.
func Dial(ctx context.Context, addr string, hello wire.DataHello, key wire.Key, opts DialOptions) (*wire.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, Control: opts.control}
	var last error
	for try := 0; try < 20; try++ {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			if tc, ok := c.(*net.TCPConn); ok && opts.SockBuf > 0 {
				_ = tc.SetWriteBuffer(opts.SockBuf)
				_ = tc.SetReadBuffer(opts.SockBuf)
			}
			stop := context.AfterFunc(ctx, func() { c.Close() })
			ch, err := greetData(c, hello, key)
			if !stop() {
				err = context.Cause(ctx)
			}
			if err != nil {
				c.Close()
				return nil, err
			}
			return wire.NewConn(c, ch), nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil, last
}

// greetData sends the DataHello and runs the connector's handshake.
func greetData(c net.Conn, hello wire.DataHello, key wire.Key) (*wire.Channel, error) {
	hello.Nonce = wire.NewNonce()
	_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if err := wire.WriteMsg(c, wire.TDataHello, hello); err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	ch, err := wire.AuthConnect(c, key, hello.Nonce)
	if err != nil {
		var pe *wire.PeerError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%w: %s", wire.ErrAuth, pe.Reason)
		}
		return nil, err
	}
	_ = c.SetReadDeadline(time.Time{})
	_ = c.SetWriteDeadline(time.Time{})
	return ch, nil
}

// watchTimeout is how long a child may send no KeepAlive before it is
// bypassed: the session's bypass timeout, 0 when the sender said never.
func watchTimeout(c *wire.Connect) time.Duration {
	return time.Duration(c.BypassMilli) * time.Millisecond
}

// bypassTimeout is how long a child may make no progress before it is
// bypassed (0: the sender did not say; 5 seconds). Heartbeats go every
// quarter of it.
func bypassTimeout(c *wire.Connect) time.Duration {
	if c.BypassMilli > 0 {
		return time.Duration(c.BypassMilli) * time.Millisecond
	}
	return 5 * time.Second
}

// transfer runs the pipeline until the End frame or a failure, and returns
// the node's verdict.
func (n *Node) transfer(ctx context.Context, ctl *ctlConn, up *upstream, first dataConn, children []*wire.Conn, s *wire.Setup, c *wire.Connect, timeout time.Duration, received *atomic.Int64) wire.Verdict {
	depth := n.cfg.PoolChunks
	bt := bypassTimeout(c)
	var stages []stream.Stage
	var fwds []*stream.Forwarder
	win, rescuer := n.rescuer(ctx, ctl, s, c, len(children), up.cutOff, up.hold)
	chunks := depth
	if win != nil {
		chunks += bypass.ChunkWindow(n.cfg.Window, s.ChunkSize) // the chunks it keeps
	}
	pool := stream.NewPool(chunks, s.ChunkSize)
	kids := plan.Children(len(c.Ring), c.Fanout, c.Me)
	for i, conn := range children {
		f := stream.NewForwarder(fmt.Sprintf("child %d (%s)", i+1, conn.RemoteAddr()), conn, depth, watchTimeout(c), bt/4)
		if rescuer != nil && i < len(kids) {
			k := kids[i]
			f.OnFail = func(err error) { rescuer.Bypass(k, err) }
		}
		f.SetExcuse(up.cutOff)
		fwds = append(fwds, f)
		stages = append(stages, f)
	}
	w := newWriter(s, depth, n.cfg.Stdout, n.cfg.NoSync || s.NoSync, n.cfg.Log)
	hs := stream.NewHasher(depth, digest.Alg(s.Digest)) // named by check
	stages = append(stages, w, hs)

	stop := make(chan struct{})
	go n.progress(ctl, stop, received, up.arrived, w, bt/4)

	mac := wire.NewFrameMAC(n.cfg.Key.SessionKey(s.Session))
	up.downstream = func() bool {
		for _, f := range fwds {
			if f.Writing() {
				return true
			}
		}
		return rescuer != nil && rescuer.Writing()
	}
	rerr := n.readUpstream(ctx, up, first, pool, stages, win, s, mac, received)
	if win != nil {
		win.Close()
	}
	for _, f := range fwds {
		if err := f.Close(); err != nil && rescuer == nil {
			n.warnf("%v (the nodes after it get nothing from me)", err)
		}
	}
	if rescuer != nil {
		rescuer.Wait()
	}
	hs.Close()
	w.close(rerr)
	// --verify readback: re-read the outputs now that the stream has
	// ended (nothing otherwise, or after a broken stream).
	w.readBack(ctx)
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
		r.Bytes, r.StreamDigest = sum.Bytes, sum.Hex()
		wr := w.results[i]
		r.Error = wr.err
		r.Written, r.Digest = sum.Bytes, sum.Hex()
		if wr.sum != nil {
			r.Written, r.Digest = wr.written, hex.EncodeToString(wr.sum)
		}
		wr.putReadback(r)
	}
	return v
}

// rescuer sets up the bypass of children that stop, when this node has
// children and the sender told it the ring: a window of recent frames, and
// the rescuer that adopts a stopped child's children.
func (n *Node) rescuer(ctx context.Context, ctl *ctlConn, s *wire.Setup, c *wire.Connect, children int, excuse func() time.Time, hold func() bool) (*bypass.Window, *bypass.Rescuer) {
	if children == 0 || c.Me < 0 || c.Me >= len(c.Ring) {
		return nil, nil
	}
	me := c.Ring[c.Me].Name
	win := bypass.NewWindow(n.cfg.Window)
	sk := n.cfg.Key.SessionKey(s.Session)
	cfg := bypass.Config{
		Ring: c.Ring, Fanout: c.Fanout, Timeout: bypassTimeout(c), SessionKey: sk, Window: win, Excuse: excuse, Hold: hold,
		Dial: func(ctx context.Context, addr string) (*wire.Conn, error) {
			return Dial(ctx, addr, wire.DataHello{Session: s.Session, From: me, Resume: true}, n.cfg.Key, dialOptions(s, c.SegSize))
		},
		Report: func(i int, reason string) {
			go func() { _ = ctl.send(wire.TBypassed, wire.Bypassed{Node: c.Ring[i].Name, Index: i, Reason: reason}) }()
		},
		Logf: n.infof,
	}
	if host, _, err := net.SplitHostPort(ctl.current().RemoteAddr().String()); err == nil && c.FetchPort > 0 {
		addr := net.JoinHostPort(host, strconv.Itoa(c.FetchPort))
		cfg.Fetch = func(ctx context.Context, from, to wire.Position, emit func(bypass.Frame) error) error {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			conn, err := Dial(dctx, addr, wire.DataHello{Session: s.Session, From: me}, n.cfg.Key, dialOptions(s, 0))
			cancel()
			if err != nil {
				return fmt.Errorf("connect to the sender's fetch port %s: %w", addr, err)
			}
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			n.infof("fetching %v up to %v from the sender", from, to)
			return bypass.FetchFrom(conn, wire.Fetch{Session: s.Session, From: from, To: to}, sk, 30*time.Second, emit)
		}
	}
	return win, bypass.New(ctx, cfg)
}

// readUpstream reads frames from the upstream connection and dispatches
// them until End, checking that files and offsets arrive in order. When
// the upstream breaks, the node waits for another one to take over (the
// node before the one that stopped) and tells it where to resume.
// With mac (the node has a key) every frame must carry a valid MAC, checked
// before the frame goes to any stage: nothing unauthenticated is written
// or forwarded. With win, every frame is also kept there for a bypass.
func (n *Node) readUpstream(ctx context.Context, up *upstream, conn dataConn, pool *stream.Pool, stages []stream.Stage, win *bypass.Window, s *wire.Setup, mac *wire.FrameMAC, received *atomic.Int64) error {
	var pos streamPos
	var hb [wire.HeaderSize]byte
	var mb [wire.MACSize]byte
	// KeepAlives, each with the bytes received so far, tell the upstream
	// this node is alive while it waits for data or makes progress (a
	// frame dispatched within twice the bypass timeout): a node waiting
	// on a slow disk or a stalled child is not bypassed, a frozen one or
	// one whose pipeline is wedged is.
	var moved atomic.Int64
	moved.Store(time.Now().UnixNano())
	stop := make(chan struct{})
	defer close(stop)
	// A node blocked by its child is alive too, until it bypasses the
	// child: it stopped moving at the same moment as the child, and the
	// upstream must not give up on it first.
	go stream.SendKeepAlives(func() { up.keepAlive(up.bypass/4, received.Load()) }, up.bypass/4, func() bool {
		return up.stats.reading.Load() || time.Since(time.Unix(0, moved.Load())) < 2*up.bypass || up.downstream != nil && up.downstream()
	}, stop)
	br, err := switchTo(conn, pos.position(), &up.stats)
	if err != nil {
		err = lost{err}
	} else {
		up.setLive(conn.Conn)
	}
	for takeovers := 0; ; {
		if err == nil {
			var h wire.Header
			var c *stream.Chunk
			var next streamPos
			h, c, next, err = readFrame(ctx, conn, br, &hb, &mb, pos, pool, s, mac, up.silence)
			if err == nil {
				if win != nil {
					if err := win.AddChunk(ctx, c); err != nil {
						stream.Dispatch(c, nil)
						return err
					}
				}
				pos = next
				moved.Store(time.Now().UnixNano())
				received.Add(c.Bytes())
				stream.Dispatch(c, stages)
				if h.Type == wire.TEnd {
					up.finished(conn)
					return nil
				}
				continue
			}
		}
		var l lost
		if !errors.As(err, &l) || ctx.Err() != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return err
		}
		// The upstream broke or was replaced: wait for the node that
		// takes over, within bounds.
		up.lose()
		conn.Close()
		if takeovers++; takeovers > 100 {
			return fmt.Errorf("%v (after %d changes of upstream)", l.error, takeovers-1)
		}
		n.warnf("%v; waiting up to %v for a node to take over", l.error, up.wait)
		nc, werr := up.take(ctx, up.wait)
		if errors.Is(werr, errNoUpstream) {
			return fmt.Errorf("%v, and no node took over within %v", l.error, up.wait)
		}
		if werr != nil {
			return werr
		}
		conn = nc
		if br, err = switchTo(conn, pos.position(), &up.stats); err != nil {
			err = lost{err}
			continue
		}
		up.setLive(conn.Conn)
		n.infof("upstream is now %s (%s), resuming at %v", conn.from, conn.RemoteAddr(), pos.position())
	}
}

// readFrame reads the next frame into a chunk of the pool and checks its
// place (and MAC, into mb). Failures of the connection are lost errors.
func readFrame(ctx context.Context, conn dataConn, br *frameReader, hb *[wire.HeaderSize]byte, mb *[wire.MACSize]byte, pos streamPos, pool *stream.Pool, s *wire.Setup, mac *wire.FrameMAC, silence time.Duration) (wire.Header, *stream.Chunk, streamPos, error) {
	from := conn.RemoteAddr()
	connErr := func(what string, err error) error {
		var ne net.Error
		switch {
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case errors.As(err, &ne) && ne.Timeout():
			return lost{fmt.Errorf("nothing from upstream %s (no data, no heartbeat) for %v", from, silence)}
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return lost{fmt.Errorf("upstream %s closed the stream before its end", from)}
		case errors.As(err, new(*net.OpError)):
			return lost{fmt.Errorf("%s from upstream %s: %w", what, from, err)}
		}
		return fmt.Errorf("%s from upstream %s: %w", what, from, err)
	}
	var h wire.Header
	for {
		if silence > 0 {
			_ = conn.SetReadDeadline(time.Now().Add(silence))
		}
		br.expect(wire.HeaderSize)
		var err error
		if h, err = wire.ReadHeader(br, hb); err != nil {
			return h, nil, pos, connErr("read", err)
		}
		if h.Type != wire.TKeepAlive {
			if br.stats != nil {
				br.stats.fed.Store(time.Now().UnixNano())
			}
			break
		}
		// The upstream is alive and has nothing to send yet.
		if h.Flags&wire.FlagMAC != 0 {
			br.expect(wire.MACSize)
		}
		if err := conn.Check(h, hb[:], nil, br); err != nil {
			return h, nil, pos, fmt.Errorf("upstream %s: %w", from, err)
		}
	}
	if h.Flags&wire.FlagMAC != 0 {
		br.expect(h.PayloadLen() + wire.MACSize)
	} else {
		br.expect(h.PayloadLen())
	}
	next, err := pos.advance(h, len(s.Files), pool.ChunkSize())
	if err != nil {
		return h, nil, pos, err
	}
	c, err := pool.Get(ctx)
	if err != nil {
		return h, nil, pos, err
	}
	n := 0
	if h.Type == wire.TData {
		// Waiting for a free chunk is backpressure from this node's own
		// stages (a stalled child, a slow disk), not upstream inactivity:
		// the payload gets a full -a period of its own.
		if silence > 0 {
			_ = conn.SetReadDeadline(time.Now().Add(silence))
		}
		n = int(h.Length)
		if _, err := io.ReadFull(br, c.Buf[:n]); err != nil {
			stream.Dispatch(c, nil)
			return h, nil, pos, connErr("read data", err)
		}
	}
	switch {
	case mac == nil && h.Flags&wire.FlagMAC != 0:
		err = fmt.Errorf("%w: upstream %s sends authenticated frames but this node has no key", wire.ErrAuth, from)
	case mac == nil:
	case h.Flags&wire.FlagMAC == 0:
		err = fmt.Errorf("%w: %s frame for file %d at offset %d from %s has no MAC", wire.ErrAuth, h.Type, h.File+1, h.Offset, from)
	default:
		if _, rerr := io.ReadFull(br, mb[:]); rerr != nil {
			err = connErr("read MAC", rerr)
		} else if !mac.Verify(mb[:], hb[:], c.Buf[:n]) {
			err = fmt.Errorf("%w: %s frame for file %d at offset %d from %s: bad MAC (tampered with or corrupted in flight); nothing of it written", wire.ErrAuth, h.Type, h.File+1, h.Offset, from)
		}
	}
	if err != nil {
		stream.Dispatch(c, nil)
		return h, nil, pos, err
	}
	addFrame(c, h, n, mac, mb[:])
	return h, c, next, nil
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
func (n *Node) progress(ctl *ctlConn, stop <-chan struct{}, received *atomic.Int64, arrived func() int64, w *writer, every time.Duration) {
	t := time.NewTicker(min(max(every, 100*time.Millisecond), 500*time.Millisecond))
	defer t.Stop()
	start := time.Now()
	var lastLog time.Time
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			p := wire.Progress{Received: received.Load(), Arrived: arrived(), Written: w.written.Load(), File: int(w.file.Load()), State: "receiving", ReadBack: w.readBackBytes.Load()}
			if p.ReadBack > 0 {
				p.State = "reading back"
			}
			// A sender away (or a failed write) skips a report: the
			// sender may come back, and progress goes on meanwhile.
			_ = ctl.send(wire.TProgress, p)
			if n.cfg.Verbose && now.Sub(lastLog) >= time.Second {
				lastLog = now
				mb := float64(p.Received) / 1e6
				n.infof("Transfered MB: %.0f, MB/s: %.3f", mb, mb/now.Sub(start).Seconds())
			}
		}
	}
}
