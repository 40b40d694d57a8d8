// Package relay is a ring node: it takes a session's set-up from the sender
// on its control port, receives the stream from its upstream neighbour on
// its data port, and at the same time forwards it to its children, writes
// it to its outputs and hashes it, each in a goroutine of its own over a
// bounded pool of chunks. It ends with a verdict per file that the sender
// checks.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
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
	// Log receives messages for humans; nil discards them.
	Log io.Writer
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
		c.Log = io.Discard
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
	logMu             sync.Mutex
}

// Listen binds the node's ports. Errors name the address and say what to
// do (e.g. another dolly or herd already listening).
func Listen(cfg Config) (*Node, error) {
	cfg.setDefaults()
	n := &Node{cfg: cfg, waiting: map[string]*upstream{}}
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

func (n *Node) logf(format string, args ...any) {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	fmt.Fprintf(n.cfg.Log, format+"\n", args...)
}

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

// Serve accepts sessions until ctx ends (or, with Once, after one session).
// It closes the listeners when it returns.
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

	n.logf("herd node: waiting for a sender on control %s, data %s", n.ctl.Addr(), n.data.Addr())
	if tl, ok := n.ctl.(*net.TCPListener); ok && n.cfg.Once && n.cfg.WaitTimeout > 0 {
		_ = tl.SetDeadline(time.Now().Add(n.cfg.WaitTimeout))
	}
	killed := make(chan error, 1)
	for backoff := time.Duration(0); ; {
		c, err := n.ctl.Accept()
		if err != nil {
			select {
			case kerr := <-killed:
				return kerr
			default:
			}
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("%w within %v", ErrNoSender, n.cfg.WaitTimeout)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			n.logf("accept control connection: %v; retrying in %v", err, backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if n.cfg.Once {
			// One session, as dolly's client: served here, so that a
			// stray connection (a port scan, a health check) that never
			// becomes a session does not use it up.
			n.busy.Store(true)
			err := n.session(ctx, c)
			n.busy.Store(false)
			if errors.Is(err, errNoSession) {
				n.logf("ignored: %v; still waiting for a sender", err)
				continue
			}
			if errors.Is(err, ErrKilled) {
				n.logf("%v", err)
				return err
			}
			if err != nil {
				n.logf("session failed: %v", err)
			}
			return err
		}
		if !n.busy.CompareAndSwap(false, true) {
			go func() {
				_ = wire.WriteMsg(c, wire.TFail, wire.Fail{Reason: "node busy with another session"})
				c.Close()
			}()
			continue
		}
		go func() {
			defer n.busy.Store(false)
			err := n.session(ctx, c)
			if errors.Is(err, ErrKilled) {
				n.logf("%v", err)
				killed <- err
				cancel()
				return
			}
			if err != nil {
				n.logf("session failed: %v", err)
			}
		}()
	}
}

// acceptData hands each incoming data connection to the session it names.
func (n *Node) acceptData(ctx context.Context) {
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
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var hello wire.DataHello
			if err := wire.Expect(c, wire.TDataHello, &hello); err != nil {
				n.logf("data connection from %s: %v", c.RemoteAddr(), err)
				c.Close()
				return
			}
			if err := wire.AuthAccept(c, n.cfg.Key, hello.Nonce); err != nil {
				n.logf("data connection from %s (%s): %v: closed", c.RemoteAddr(), hello.From, err)
				c.Close()
				return
			}
			_ = c.SetReadDeadline(time.Time{})
			n.mu.Lock()
			up := n.waiting[hello.Session]
			n.mu.Unlock()
			if up == nil {
				n.logf("data connection from %s (%s) for unknown session %s: closed", c.RemoteAddr(), hello.From, hello.Session)
				c.Close()
				return
			}
			if !up.offer(dataConn{Conn: c, from: hello.From, resume: hello.Resume}) {
				n.logf("second data connection from %s (%s) for session %s: closed", c.RemoteAddr(), hello.From, hello.Session)
				c.Close()
			}
		}()
	}
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
