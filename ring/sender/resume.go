package sender

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/herdproject/herd/ring/bypass"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/wire"
)

// resumeWait bounds a node's answer to a resuming sender.
const resumeWait = 30 * time.Second

// resume takes back the session in st after the sender restarted: it
// greets every node that was still in it, feeds the first nodes of the
// ring from where they are, and collects the verdicts as run does.
func (s *session) resume(ctx context.Context, st *savedState) (*Report, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.restore(st)
	defer s.begin()()
	setups := s.setups()
	live := st.Live
	s.notef("Resuming session %s (started %s) after a restart of the sender (restart %d), from the state in %s: %d node(s) in its ring",
		s.id, st.Started.Local().Format(time.DateTime), s.restarts, s.stateFile, len(live))
	if err := s.startBypass(ctx, live, st.FetchPort); err != nil {
		return s.snapshot(), err
	}
	for i, sn := range st.Nodes {
		if sn.State == StateDone || sn.State == StateFailed {
			s.setJoinable(i, sn.Joinable)
		}
	}

	// Greet the nodes that were still in the session.
	var members []int
	finished := map[int]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range s.hosts {
		if st.Nodes[i].State == StateDone || st.Nodes[i].State == StateFailed {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			r, err := s.resumeNode(ctx, i, setups[i])
			if err != nil {
				reason := "lost while the sender was away: " + err.Error()
				s.logf("node %s: %s", s.hosts[i].Name, reason)
				s.setState(i, StateFailed, reason)
				s.setJoinable(i, true)
				return
			}
			how := fmt.Sprintf("%d bytes received", r.Received)
			if r.Finished {
				how = "its transfer ended, its verdict follows"
			}
			s.logf("node %s: resumed (%s)", s.hosts[i].Name, how)
			s.mu.Lock()
			s.rep.Nodes[i].Received = r.Received
			s.mu.Unlock()
			s.setState(i, StateReceiving, "")
			mu.Lock()
			members = append(members, i)
			finished[i] = r.Finished
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(members) == 0 {
		s.notef("No node of session %s answered as still in it: the ones that may come back join late", s.id)
	}

	// The first nodes' upstream was this sender: feed each from where it
	// is (its window moves on as any upstream's); a first node that did
	// not come back is bypassed.
	feed := func() {
		fanout := max(s.cfg.Plan.Fanout, 1)
		for _, k := range plan.Children(len(live), fanout, -1) {
			i := live[k]
			mu.Lock()
			fin := finished[i]
			mu.Unlock()
			switch {
			case s.failed(i):
				if st.Nodes[i].State != StateDone {
					s.rescuer.Bypass(k, errors.New("reset: lost while the sender was away"))
				}
			case fin:
			default:
				s.rescuer.Join(wire.Peer{Name: s.hosts[i].Name, Addr: s.dataAddr(i)}, func(err error) {
					if bypass.NotItsFault(err) {
						s.failNode(i, "", "resume: "+err.Error())
						return
					}
					s.rescuer.Bypass(k, err)
				})
			}
		}
	}
	return s.collect(ctx, setups, members, nil, nil, feed)
}

// resumeNode greets node i as the session's sender come back: Hello with
// Resume, Setup, and the node's Resumed.
func (s *session) resumeNode(ctx context.Context, i int, setup wire.Setup) (wire.Resumed, error) {
	var r wire.Resumed
	conn, err := s.dialControl(ctx, i)
	if err != nil {
		return r, err
	}
	nc := &nodeConn{i: i, conn: conn}
	s.mu.Lock()
	s.ctl[i] = nc
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	hello := wire.Hello{Version: wire.Version, Session: s.id, Sender: s.cfg.Name, Resume: true}
	err = s.exchange(nc, hello, setup, resumeWait, wire.TResumed, &r, "resume")
	return r, err
}

// dialControl connects to node i's control port, trying -r times a
// second apart.
func (s *session) dialControl(ctx context.Context, i int) (net.Conn, error) {
	addr := s.ctlAddr(i)
	d := net.Dialer{Timeout: 5 * time.Second}
	var err error
	for try := 1; try <= s.cfg.Retries; try++ {
		var c net.Conn
		if c, err = d.DialContext(ctx, "tcp", addr); err == nil {
			return c, nil
		}
		if try < s.cfg.Retries {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
	return nil, fmt.Errorf("cannot reach %s after %d tries: %w (is herd recv / dolly running there?)", addr, s.cfg.Retries, err)
}

// drop tells the nodes still waiting in the session of st, abandoned for
// a fresh one (--fresh), to end it, so that they take the new one. A node
// that does not answer at once is not waited for.
func (s *session) drop(st *savedState) {
	var wg sync.WaitGroup
	for i, sn := range st.Nodes {
		if sn.State == StateDone || sn.State == StateFailed || i >= len(s.hosts) {
			continue
		}
		wg.Go(func() {
			d := net.Dialer{Timeout: 3 * time.Second}
			conn, err := d.Dial("tcp", s.ctlAddr(i))
			if err != nil {
				return
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			nc := &nodeConn{i: i, conn: conn}
			ch, err := greet(conn, nc, s.cfg.Key, wire.Hello{Version: wire.Version, Session: st.Session, Sender: s.cfg.Name, Resume: true})
			if err != nil {
				return
			}
			nc.ch.Store(ch)
			if nc.send(wire.TSetup, wire.Setup{Session: st.Session}) != nil || ch.Expect(wire.TResumed, nil) != nil {
				return
			}
			_ = nc.send(wire.TAbort, wire.Fail{Reason: "the sender started a fresh session (--fresh)"})
			s.logf("node %s: told to drop session %s", s.hosts[i].Name, st.Session)
		})
	}
	wg.Wait()
}
