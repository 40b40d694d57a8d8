package sender

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herdproject/herd/ring/hostlist"
	"github.com/herdproject/herd/ring/relay"
	"github.com/herdproject/herd/ring/wire"
)

// KillResult is one node's answer to Kill.
type KillResult struct {
	Name string
	// Err is nil when the node took the order.
	Err error
	// NotRunning says that nothing listens on the node's control port
	// (connection refused): no node waits there, there is nothing to
	// stop. Err says so too.
	NotRunning bool
}

// Kill tells waiting nodes to stop (dolly's -K), each after the handshake,
// so that a node with a key obeys only a holder of it. Ports, Key, Name,
// Network and Resolver come from cfg; its Plan is not used.
func Kill(ctx context.Context, cfg Config, hosts []string) ([]KillResult, error) {
	cfg.setDefaults()
	res, err := hostlist.Resolve(ctx, cfg.Resolver, hosts, cfg.Network)
	if err != nil {
		return nil, err
	}
	out := make([]KillResult, len(res))
	var wg sync.WaitGroup
	for i, h := range res {
		out[i].Name = h.Name
		wg.Go(func() {
			out[i].Err = killOne(ctx, cfg, net.JoinHostPort(h.Addr.String(), strconv.Itoa(cfg.ControlPort)))
			out[i].NotRunning = errors.Is(out[i].Err, syscall.ECONNREFUSED)
		})
	}
	wg.Wait()
	return out, nil
}

func killOne(ctx context.Context, cfg Config, addr string) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	ch, err := greet(c, c, cfg.Key, wire.Hello{Version: wire.Version, Session: "kill", Sender: cfg.Name})
	if err != nil {
		return err
	}
	return ch.WriteMsg(wire.TKill, wire.Kill{From: cfg.Name})
}

// greet opens a control connection: Hello with a fresh nonce, then the
// handshake (wire.AuthConnect), its failures worded "auth failed: why".
// w is where messages go (the node's locked writer). It returns the
// connection's channel, which reads from r and writes to w.
func greet(r io.Reader, w io.Writer, key wire.Key, hello wire.Hello) (*wire.Channel, error) {
	hello.Nonce = wire.NewNonce()
	if err := wire.WriteMsg(w, wire.THello, hello); err != nil {
		return nil, fmt.Errorf("hello: %w", err)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{r, w}
	ch, err := wire.AuthConnect(rw, key, hello.Nonce)
	if err != nil {
		return nil, authError(err)
	}
	return ch, nil
}

// authError words a failed handshake for the summary: "auth failed: why".
func authError(err error) error {
	var pe *wire.PeerError
	switch {
	case errors.As(err, &pe) && strings.HasPrefix(pe.Reason, wire.ErrAuth.Error()):
		return fmt.Errorf("%w%s", wire.ErrAuth, strings.TrimPrefix(pe.Reason, wire.ErrAuth.Error()))
	case errors.As(err, &pe) && pe.Reason == relay.ReasonBusy:
		// Refused before any authentication: not a key problem.
		return fmt.Errorf("refused the session: %w", pe)
	case errors.As(err, &pe):
		return fmt.Errorf("%w: refused by the node: %s", wire.ErrAuth, pe.Reason)
	case errors.Is(err, wire.ErrAuth):
		return err
	}
	return fmt.Errorf("hello: %w", err)
}
