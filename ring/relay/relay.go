// Package relay is a ring node: it takes a session's set-up from the sender
// on its control port, receives the stream from its upstream neighbour on
// its data port, and at the same time forwards it to its children, writes
// it to its outputs and hashes it, each in a goroutine of its own over a
// bounded pool of chunks. It ends with a verdict per file that the sender
// checks.
package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdproject/herd/ring/wire"
)

// Default ports, as dolly's.
const (
	DefaultDataPort    = 9998
	DefaultControlPort = 9997
	DefaultReportPort  = 9996
)

// Config is a node's configuration. The zero value listens on all
// addresses on dolly's ports and serves sessions until its context ends.
type Config struct {
	// ListenAddr is the one address to listen on; "" listens on all. A
	// node given an address also finds itself in the host list by it, so
	// several nodes can run on one machine (127.0.0.2, 127.0.0.3, ...).
	ListenAddr string
	// DataPort, ControlPort and ReportPort; 0 means dolly's 9998, 9997 and
	// 9996. ReportPort -1 disables the report (ping) listener.
	DataPort, ControlPort, ReportPort int
	// ReportListener, when set, is used instead of listening on
	// ReportPort (a socket systemd passed in, dolly's -d).
	ReportListener net.Listener
	// Once returns after the first session, as dolly's client does.
	Once bool
	// WaitTimeout, with Once, bounds the wait for a sender to start a
	// session: Serve returns ErrNoSender when none did. 0 waits forever.
	WaitTimeout time.Duration
	// Verbose prints the node's own progress to Log.
	Verbose bool
	// Log receives the node's messages: what it does (info) and what went
	// wrong around it (warnings); nil discards them.
	Log *slog.Logger
	// Stdout receives the data of outputs named "-"; nil is os.Stdout.
	Stdout io.Writer
	// NoSync skips fsync at the end of each file (dolly's -n).
	NoSync bool
	// Timeout is dolly's -a: give up when no data moved for this long;
	// 0 waits forever (the sender's Setup may set one too).
	Timeout time.Duration
	// PoolChunks is the number of chunks in flight; 0 means 8.
	PoolChunks int
	// Window is how many bytes of recent frames a node with children
	// keeps to feed a grandchild when a child stops (bypass); 0 means
	// bypass.DefaultWindow. What it no longer holds comes from the sender.
	Window int
	// Finished, when set, is called at the end of every session that got
	// past set-up, with the session's files and the node's verdict (the
	// agent customizes and reports from it).
	Finished func(files []wire.SetupFile, v wire.Verdict)
	// Prepare, when set, is called at set-up for each file the node will
	// write, before its output is checked; it may ready the output (load
	// brd for a /dev/ramN stage2) or refuse the file. Without it a node
	// refuses stage2 files (Mount set): only the herd agent mounts them.
	Prepare func(f *wire.SetupFile) error
	// Allow, when set, lists shell patterns (filepath.Match, e.g.
	// "/dev/vd*", "/srv/images/*") that every output must match, after
	// symbolic links are resolved; others are refused at set-up.
	Allow []string
	// Key, when set, is the ring's shared secret: the node takes sessions
	// and data only from peers that prove they hold it, checks every
	// frame's MAC before writing it, and refuses peers without a key.
	Key wire.Key
	// Getenv and Hostname find this node in the host list; nil means
	// os.Getenv and os.Hostname.
	Getenv   func(string) string
	Hostname func() (string, error)
}

func (c *Config) setDefaults() {
	if c.DataPort == 0 {
		c.DataPort = DefaultDataPort
	}
	if c.ControlPort == 0 {
		c.ControlPort = DefaultControlPort
	}
	if c.ReportPort == 0 {
		c.ReportPort = DefaultReportPort
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.PoolChunks == 0 {
		c.PoolChunks = 8
	}
	if c.Getenv == nil {
		c.Getenv = os.Getenv
	}
	if c.Hostname == nil {
		c.Hostname = os.Hostname
	}
}

// Node is a listening ring node.
type Node struct {
	cfg               Config
	ctl, data, report net.Listener
	listen            netip.Addr // parsed ListenAddr, or invalid
	busy              atomic.Bool
	mu                sync.Mutex
	waiting           map[string]*upstream // session → its upstream
	// orphans are the sessions waiting for their sender to come back:
	// a resuming sender's control connection goes there.
	orphans map[string]chan *wire.Conn
	// controls are the running sessions' control connections.
	controls map[string]*ctlConn
}

// Listen binds the node's ports. Errors name the address and say what to
// do (e.g. another dolly or herd already listening).
func Listen(cfg Config) (*Node, error) {
	cfg.setDefaults()
	n := &Node{cfg: cfg, waiting: map[string]*upstream{}, orphans: map[string]chan *wire.Conn{}, controls: map[string]*ctlConn{}}
	if cfg.ListenAddr != "" {
		a, err := netip.ParseAddr(cfg.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w", cfg.ListenAddr, err)
		}
		n.listen = a
	}
	var err error
	if n.ctl, err = n.bind(cfg.ControlPort, "control"); err != nil {
		return nil, err
	}
	if n.data, err = n.bind(cfg.DataPort, "data"); err != nil {
		n.ctl.Close()
		return nil, err
	}
	switch {
	case cfg.ReportListener != nil:
		n.report = cfg.ReportListener
	case cfg.ReportPort > 0:
		if n.report, err = n.bind(cfg.ReportPort, "report"); err != nil {
			n.ctl.Close()
			n.data.Close()
			return nil, err
		}
	}
	return n, nil
}

func (n *Node) bind(port int, what string) (net.Listener, error) {
	addr := net.JoinHostPort(n.cfg.ListenAddr, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s port %s: %w (is another dolly or herd node running there? choose another address or port)", what, addr, err)
	}
	return l, nil
}

// Addrs returns the control and data listen addresses.
func (n *Node) Addrs() (control, data net.Addr) { return n.ctl.Addr(), n.data.Addr() }

// infof and warnf log one message at their level.
func (n *Node) infof(format string, args ...any) { n.cfg.Log.Info(fmt.Sprintf(format, args...)) }
func (n *Node) warnf(format string, args ...any) { n.cfg.Log.Warn(fmt.Sprintf(format, args...)) }

// ErrNoSender is returned by Serve (Once, WaitTimeout) when no sender
// started a session in time.
var ErrNoSender = errors.New("no sender started a session")

// errNoSession marks a control connection that never became a session (no
// valid Hello and Setup).
var errNoSession = errors.New("not a herd session")

// ErrSessionFailed is returned by Serve in Once mode when the session did
// not end with every file verified.
var ErrSessionFailed = errors.New("session failed")

// ErrKilled is returned by Serve when a sender holding the node's key (or
// any sender, for a node without one) told it to stop (dolly's -K).
var ErrKilled = errors.New("stopped")

// maxHandshakes bounds the control connections in their handshake (Hello,
// authentication, Setup or Kill) at a time. Beyond it the oldest one is
// closed at once to make room: a flood of idle or garbage connections
// costs the node little and cannot keep out a sender, whose handshake
// takes milliseconds, unless it opens maxHandshakes more meanwhile.
const maxHandshakes = 64

// handshakeTimeout bounds a control connection's handshake.
const handshakeTimeout = 30 * time.Second

// Serve accepts sessions until ctx ends (or, with Once, after one session).
// It closes the listeners when it returns.
//
// Each control connection goes through its handshake on its own,
// concurrently with the others (at most maxHandshakes at a time); only one
// that sent a valid Hello, proved it holds the key and sent a Setup (or a
// Kill) claims the node. A stray connection (a port scan, a health check,
// garbage) that never becomes a session neither uses up a Once node nor
// holds back the sender that comes next.
func (n *Node) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer n.ctl.Close()
	defer n.data.Close()
	if n.report != nil {
		defer n.report.Close()
		go n.serveReport(ctx)
	}
	go n.acceptData(ctx)
	go func() { <-ctx.Done(); n.ctl.Close() }()

	n.infof("herd node: waiting for a sender on control %s, data %s", n.ctl.Addr(), n.data.Addr())
	if tl, ok := n.ctl.(*net.TCPListener); ok && n.cfg.Once && n.cfg.WaitTimeout > 0 {
		_ = tl.SetDeadline(time.Now().Add(n.cfg.WaitTimeout))
	}
	cs := &controls{
		handshakes: handshakes{what: "control"},
		busy:       &n.busy,
		result:     make(chan error, 1),
		cancel:     cancel,
		refusing:   make(chan struct{}, maxHandshakes),
	}
	// Runs first: no handshake outlives Serve (the end of ctx closes
	// their connections).
	defer func() { cancel(); cs.wg.Wait() }()
	for backoff := time.Duration(0); ; {
		c, err := n.ctl.Accept()
		if err != nil {
			select {
			case r := <-cs.result:
				return r
			default:
			}
			var ne net.Error
			switch {
			case ctx.Err() != nil:
				if cs.stop() && n.cfg.Once {
					// A session has the node: it ends as it would have.
					return <-cs.result
				}
				return nil
			case errors.As(err, &ne) && ne.Timeout():
				// No sender came in time, but one in its handshake
				// may still claim the node.
				cs.wg.Wait()
				select {
				case r := <-cs.result:
					return r
				default:
				}
				return fmt.Errorf("%w within %v", ErrNoSender, n.cfg.WaitTimeout)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			n.warnf("accept control connection: %v; retrying in %v", err, backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		// A busy node still hears a sender out while one of its
		// sessions could be resumed: it waits for its sender to come
		// back, or its sender may be gone without its knowing.
		if n.busy.Load() && !n.resumable() {
			select {
			case cs.refusing <- struct{}{}:
				go func() {
					refuseBusy(c)
					<-cs.refusing
				}()
			default:
				c.Close()
			}
			continue
		}
		hs := cs.start(c, n.warnf)
		cs.wg.Add(1)
		go func() {
			defer cs.wg.Done()
			n.control(ctx, hs, cs)
		}()
	}
}

// controls is what Serve shares with its control connections.
type controls struct {
	handshakes
	busy     *atomic.Bool   // the node's: a session (or Kill) has it
	wg       sync.WaitGroup // handshakes, and a Once node's session
	result   chan error     // a Once node's session's end, or a Kill
	cancel   func()         // ends Serve
	refusing chan struct{}  // one per "busy" answer being sent
	mu       sync.Mutex
	closed   bool // Serve is ending: no more claims
}

// handshakes are the connections of one port in their handshake: at most
// maxHandshakes, the oldest closed to make room for a new one.
type handshakes struct {
	what    string // "control", "data"
	mu      sync.Mutex
	list    []*inHandshake // oldest first
	evicted int            // closed since the last message about it
	said    time.Time      // that message
}

// inHandshake is a connection in its handshake.
type inHandshake struct {
	c       net.Conn
	since   time.Time
	evicted bool // closed to make room (under handshakes.mu)
}

// start records c's handshake. With maxHandshakes in progress already, it
// closes the oldest, saying so (at most once a second) with logf.
func (h *handshakes) start(c net.Conn, logf func(string, ...any)) *inHandshake {
	hs := &inHandshake{c: c, since: time.Now()}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.list) >= maxHandshakes {
		old := h.list[0]
		h.list = slices.Delete(h.list, 0, 1)
		old.evicted = true
		old.c.Close()
		if h.evicted++; time.Since(h.said) >= time.Second {
			logf("%d %s connections in their handshake: closed the oldest, from %s (open %v), to make room (%d closed since the last such message)", maxHandshakes, h.what, old.c.RemoteAddr(), time.Since(old.since).Round(time.Millisecond), h.evicted)
			h.evicted, h.said = 0, time.Now()
		}
	}
	h.list = append(h.list, hs)
	return hs
}

// end forgets hs's handshake and tells whether it was closed to make
// room.
func (h *handshakes) end(hs *inHandshake) (evicted bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, x := range h.list {
		if x == hs {
			h.list = slices.Delete(h.list, i, i+1)
			break
		}
	}
	return hs.evicted
}

// claim gives the node to the caller, unless another connection has it or
// Serve is ending.
func (cs *controls) claim() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return !cs.closed && cs.busy.CompareAndSwap(false, true)
}

// stop refuses further claims and tells whether the node was claimed.
func (cs *controls) stop() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.closed = true
	return cs.busy.Load()
}

// finish hands Serve its result and ends it.
func (cs *controls) finish(err error) {
	select {
	case cs.result <- err:
	default:
	}
	cs.cancel()
}

// control serves one control connection: its handshake, then, if it
// claims the node, its session or Kill.
func (n *Node) control(ctx context.Context, hs *inHandshake, cs *controls) {
	c := hs.c
	g, err := n.handshake(ctx, c)
	if evicted := cs.end(hs); evicted || err != nil {
		if evicted {
			// Logged as such by Serve.
			c.Close()
		} else if ctx.Err() == nil {
			n.warnf("ignored: %v; still waiting for a sender", err)
		}
		return
	}
	if g.hello.Resume {
		n.resume(c, g)
		return
	}
	if !cs.claim() {
		if g.kill != nil {
			n.infof("stop order from %s (%s) ignored: busy with another session", g.kill.From, c.RemoteAddr())
			c.Close()
			return
		}
		refuseBusy(c)
		return
	}
	if g.kill != nil {
		err := fmt.Errorf("%w by %s (%s)", ErrKilled, g.kill.From, c.RemoteAddr())
		c.Close()
		n.warnf("%v", err)
		cs.finish(err)
		return
	}
	if n.cfg.Once {
		err := n.session(ctx, wire.NewConn(c, g.ch), g.hello, g.setup)
		if err != nil {
			n.warnf("%v", sessionFailed(err))
		}
		cs.finish(err)
		return
	}
	go func() {
		defer n.busy.Store(false)
		if err := n.session(ctx, wire.NewConn(c, g.ch), g.hello, g.setup); err != nil {
			n.warnf("%v", sessionFailed(err))
		}
	}()
}

// sessionFailed is err said as a failed session, once.
func sessionFailed(err error) error {
	if errors.Is(err, ErrSessionFailed) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrSessionFailed, err)
}

// resume hands a resuming sender's connection to its session, or tells it
// that this node has no such session waiting for it.
func (n *Node) resume(c net.Conn, g greeting) {
	conn := wire.NewConn(c, g.ch)
	_ = c.SetReadDeadline(time.Time{})
	if g.kill == nil && n.resumeSession(g.setup.Session, conn) {
		return
	}
	// The session may not have noticed yet that its sender went away (a
	// sender whose machine lost power sends no FIN): the sender's return
	// says so. Drop the old connection and hand over the new one.
	if g.kill == nil && n.dropControl(g.setup.Session) {
		for range 60 {
			time.Sleep(50 * time.Millisecond)
			if n.resumeSession(g.setup.Session, conn) {
				return
			}
		}
	}
	reason := fmt.Sprintf("no session %s waits here for its sender (it ended, gave up waiting, or this node restarted)", g.setup.Session)
	n.warnf("resume from %s (%s) refused: %s", g.hello.Sender, c.RemoteAddr(), reason)
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = conn.WriteMsg(wire.TFail, wire.Fail{Reason: reason})
	c.Close()
}

// ReasonBusy is the reason a node gives a sender while another session
// has it.
const ReasonBusy = "node busy with another session"

// refuseBusy tells a sender that the node has a session already, and
// closes c: after what the sender sent meanwhile (its Hello), so that the
// refusal is not lost to a reset.
func refuseBusy(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if wire.WriteMsg(c, wire.TFail, wire.Fail{Reason: ReasonBusy}) != nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
}

// greeting is what a control connection sent in its handshake: the
// sender's Hello, then its Setup or a Kill.
type greeting struct {
	ch    *wire.Channel // the connection's, after the handshake
	hello wire.Hello
	setup wire.Setup
	kill  *wire.Kill // a stop order (dolly's -K) instead of a Setup
}

// handshake reads a control connection's Hello, authenticates the sender
// (wire.AuthAccept with the node's key) and reads its Setup or Kill, all
// within handshakeTimeout. Anything else, or the end of ctx first, fails
// with errNoSession, and c is closed.
func (n *Node) handshake(ctx context.Context, c net.Conn) (g greeting, err error) {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer func() {
		if !stop() && err == nil {
			err = fmt.Errorf("%w: %s: the node is stopping", errNoSession, c.RemoteAddr())
		}
		if err != nil {
			c.Close()
		}
	}()
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := wire.Expect(c, wire.THello, &g.hello); err != nil {
		return g, fmt.Errorf("%w: hello from %s: %v", errNoSession, c.RemoteAddr(), err)
	}
	if g.ch, err = wire.AuthAccept(c, n.cfg.Key, g.hello.Nonce); err != nil {
		return g, fmt.Errorf("%w: %s (%s): %v", errNoSession, c.RemoteAddr(), g.hello.Sender, err)
	}
	h, body, err := g.ch.ReadMsg()
	switch {
	case err == nil && h.Type == wire.TKill:
		g.kill = new(wire.Kill)
		_ = json.Unmarshal(body, g.kill)
	case err == nil:
		err = wire.Decode(h, body, wire.TSetup, &g.setup)
	}
	if err != nil {
		return g, fmt.Errorf("%w: set-up from %s: %v", errNoSession, c.RemoteAddr(), err)
	}
	// The read deadline stays until the session waits for its ring.
	_ = c.SetWriteDeadline(time.Time{})
	return g, nil
}

// acceptData hands each incoming data connection to the session it names.
func (n *Node) acceptData(ctx context.Context) {
	pending := &handshakes{what: "data"}
	for backoff := time.Duration(0); ; {
		c, err := n.data.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		hs := pending.start(c, n.warnf)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var hello wire.DataHello
			who := c.RemoteAddr().String()
			var ch *wire.Channel
			err := wire.Expect(c, wire.TDataHello, &hello)
			if err == nil {
				who += " (" + hello.From + ")"
				ch, err = wire.AuthAccept(c, n.cfg.Key, hello.Nonce)
			}
			if pending.end(hs) {
				return // closed to make room, and said so
			}
			if err != nil {
				n.warnf("data connection from %s: %v: closed", who, err)
				c.Close()
				return
			}
			_ = c.SetReadDeadline(time.Time{})
			n.mu.Lock()
			up := n.waiting[hello.Session]
			n.mu.Unlock()
			if up == nil {
				n.warnf("data connection from %s (%s) for unknown session %s: closed", c.RemoteAddr(), hello.From, hello.Session)
				c.Close()
				return
			}
			dc := dataConn{Conn: wire.NewConn(c, ch), from: hello.From, resume: hello.Resume}
			if why := up.offer(dc); why != "" {
				n.warnf("data connection from %s (%s) for session %s: %s", c.RemoteAddr(), hello.From, hello.Session, why)
				refuse(dc.Conn, why)
			}
		}()
	}
}

// refuse tells a data connection's peer why it is not taken, and closes
// it without a reset that could overtake the reason.
func refuse(c *wire.Conn, why string) {
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = c.WriteMsg(wire.TFail, wire.Fail{Reason: why})
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(c.Conn, 1<<20))
	c.Close()
}

// serveReport answers dolly's ping port: one line saying who is here.
func (n *Node) serveReport(ctx context.Context) {
	for {
		c, err := n.report.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		state := "ready"
		if n.busy.Load() {
			state = "busy"
		}
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(c, "herd %s control=%d data=%d\n", state, n.cfg.ControlPort, n.cfg.DataPort)
		c.Close()
	}
}
