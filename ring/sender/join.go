package sender

import (
	"cmp"
	"context"
	"errors"
	"net"
	"time"

	"github.com/herdproject/herd/ring/bypass"
	"github.com/herdproject/herd/ring/relay"
	"github.com/herdproject/herd/ring/wire"
)

// Late join: while a session runs, the sender keeps trying the nodes that
// failed because they could not be reached at set-up or stopped during the
// transfer (bypassed, lost contact). One that answers again (herd recv
// restarted, the machine rebooted into the agent) gets the session's Setup
// and joins at the tail: the sender feeds it from where it is, the start
// for a fresh node -- from its window while that holds what the node
// needs, else re-read from the inputs -- without holding the ring back.
// It is judged as any node: done only once it verified every file.

// joinEvery is how often the sender tries the nodes that may join late.
const joinEvery = 2 * time.Second

// maxJoins bounds how often one node may join one session late.
const maxJoins = 3

// joinWait bounds a late joiner's Ready and Connected.
const joinWait = 30 * time.Second

// nodeState is what the session tracks of one node besides its report
// (under session.mu): late join, and its judgement.
type nodeState struct {
	bye       bool // its judgement (Bye) was sent on its current connection
	joinable  bool // failed in a way it may recover from by coming back
	trying    bool // a join attempt runs
	listening bool // a listen goroutine reads its control connection
	joins     int  // times it joined this session late
	told      bool // "waiting for it to come back" was logged
	meter     meter
}

// lateJoin tells whether this session takes late joiners: not in dummy
// mode (-t: nothing to re-read) and not when the caller turned it off.
func (s *session) lateJoin() bool {
	return !s.cfg.NoLateJoin && s.cfg.Dummy == 0
}

// setJoinable records whether node i may join late.
func (s *session) setJoinable(i int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.track != nil {
		s.track[i].joinable = ok
	}
}

// startListen reads node i's control connection in the background.
func (s *session) startListen(ctx context.Context, i int, start time.Time, verdicts chan<- int, digestsReady <-chan struct{}) {
	s.mu.Lock()
	s.track[i].listening = true
	s.mu.Unlock()
	go s.listen(ctx, i, start, verdicts, digestsReady)
}

// lateJoins tries the joinable nodes every joinEvery until ctx ends and
// hands those that came back, set up and connected, to joined.
func (s *session) lateJoins(ctx context.Context, setups []wire.Setup, joined chan<- *nodeConn) {
	tick := time.NewTicker(joinEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		var try []int
		for i := range s.track {
			j := &s.track[i]
			if j.joinable && !j.trying && !j.listening && j.joins < maxJoins {
				j.trying = true
				if !j.told {
					j.told = true
					s.logf("node %s: will join late if it comes back (tried every %v)", s.hosts[i].Name, joinEvery)
				}
				try = append(try, i)
			}
		}
		s.mu.Unlock()
		for _, i := range try {
			go func() {
				defer func() {
					s.mu.Lock()
					s.track[i].trying = false
					s.mu.Unlock()
				}()
				nc, err := s.tryJoin(ctx, i, setups[i])
				if err != nil {
					return
				}
				select {
				case joined <- nc:
				case <-ctx.Done():
					_ = nc.send(wire.TAbort, wire.Fail{Reason: "the session ended before the node could join"})
					nc.conn.Close()
				}
			}()
		}
	}
}

// tryJoin sets node i up for the running session as a leaf of its own
// (no children): Hello, Setup, Ready, Connect, Connected. A node that is
// still down fails quietly; one that answers but refuses is logged, and
// one that refuses the session itself is not tried again.
func (s *session) tryJoin(ctx context.Context, i int, setup wire.Setup) (*nodeConn, error) {
	h := s.hosts[i]
	if s.cfg.Activate {
		pokeReport(ctx, s.reportAddr(i))
	}
	d := net.Dialer{Timeout: joinEvery}
	conn, err := d.DialContext(ctx, "tcp", s.ctlAddr(i))
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	nc := &nodeConn{i: i, conn: conn}
	if _, err := s.handshakeNode(nc, setup, joinWait); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		s.logf("node %s: came back but cannot join: %v", h.Name, err)
		// A node that refuses the session itself (a disk too small, the
		// key) will refuse it again; one busy with the end of its last
		// session will not.
		var pe *wire.PeerError
		if errors.As(err, &pe) && pe.Reason != relay.ReasonBusy || errors.Is(err, wire.ErrAuth) {
			s.setJoinable(i, false)
		}
		return nil, err
	}
	err = nc.send(wire.TConnect, wire.Connect{
		SegSize: s.cfg.Plan.SegSize, Ring: []wire.Peer{{Name: h.Name, Addr: s.dataAddr(i)}}, Fanout: 1, Me: 0,
		BypassMilli: s.cfg.Bypass.Milliseconds(), FetchPort: s.fetchPort,
	})
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(joinWait))
		err = nc.channel().Expect(wire.TConnected, nil)
		_ = conn.SetReadDeadline(time.Time{})
	}
	if err != nil {
		if ctx.Err() == nil {
			s.logf("node %s: came back but cannot join: %v", h.Name, err)
		}
		return nil, err
	}
	ok = true
	return nc, nil
}

// admit makes a late joiner a member of the session: its new control
// connection replaces the old one, its report starts again, and the
// sender's rescuer feeds it from where it is.
func (s *session) admit(ctx context.Context, nc *nodeConn, start time.Time, verdicts chan<- int, digestsReady <-chan struct{}) {
	i := nc.i
	s.mu.Lock()
	old := s.ctl[i]
	s.ctl[i] = nc
	n := &s.rep.Nodes[i]
	before := n.Reason
	n.State, n.Reason, n.Verified = StateReceiving, "", false
	n.Received, n.Written, n.Rate, n.Files = 0, 0, 0, nil
	n.Joins++
	n.JoinedAfter = before
	s.track[i].joinable = false
	s.track[i].joins++
	s.track[i].bye = false
	s.mu.Unlock()
	if old != nil && old != nc {
		old.conn.Close()
	}
	s.logf("node %s: joined late (it had failed: %s); feeding it from where it is", s.hosts[i].Name, cmp.Or(before, "unknown"))
	s.startListen(ctx, i, start, verdicts, digestsReady)
	s.rescuer.Join(wire.Peer{Name: s.hosts[i].Name, Addr: s.dataAddr(i)}, func(err error) {
		if bypass.NotItsFault(err) {
			s.failNode(i, "", "late join: "+err.Error())
			return
		}
		reason := bypass.Reason(err, s.cfg.Bypass)
		s.logf("node %s: stopped after joining late: %s", s.hosts[i].Name, reason)
		s.failNode(i, "bypassed: ", reason)
		s.setJoinable(i, true)
	})
}
