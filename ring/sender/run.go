package sender

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdproject/herd/ring/bypass"
	"github.com/herdproject/herd/ring/cook"
	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/relay"
	"github.com/herdproject/herd/ring/source"
	"github.com/herdproject/herd/ring/stream"
	"github.com/herdproject/herd/ring/wire"
)

// nodeConn is the control connection to one node.
type nodeConn struct {
	i    int
	conn net.Conn
	mu   sync.Mutex // serialises writes
	// ch seals the messages after the handshake (nil before).
	ch atomic.Pointer[wire.Channel]
}

// send writes a message: plain during the handshake, on the channel
// after it.
func (n *nodeConn) send(t wire.Type, v any) error {
	if ch := n.ch.Load(); ch != nil {
		return ch.WriteMsg(t, v)
	}
	return wire.WriteMsg(n, t, v)
}

// channel is the connection's channel once greeted: reads and writes go
// through it (writes through the locked writer).
func (n *nodeConn) channel() *wire.Channel { return n.ch.Load() }

// Write writes one whole message (its callers write each in one call).
func (n *nodeConn) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	_ = n.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return n.conn.Write(p)
}

// begin makes the per-node tables; the returned function closes the
// control connections.
func (s *session) begin() (end func()) {
	s.mu.Lock()
	s.ctl = make([]*nodeConn, len(s.hosts))
	s.track = make([]nodeState, len(s.hosts))
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.ctl {
			if c != nil {
				c.conn.Close()
			}
		}
	}
}

func (s *session) run(ctx context.Context) (*Report, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer s.begin()()

	// 1. Set-up: every node checks its outputs and writes nothing.
	setups := s.setups()
	s.logf("Setting up %d node(s) for session %s...", len(s.hosts), s.id)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range s.hosts {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := s.setupNode(ctx, i, setups[i]); err != nil {
				s.setState(i, StateFailed, err.Error())
				s.logf("node %s: %v", s.hosts[i].Name, err)
			}
		})
	}
	wg.Wait()
	var live []int
	for i := range s.hosts {
		if s.rep.Nodes[i].State == StateReady {
			live = append(live, i)
		}
	}
	if len(live) == 0 || (s.cfg.RequireAll && len(live) < len(s.hosts)) {
		s.abortAll("session not set up: " + s.failedSummary())
		err := fmt.Errorf("no node is ready; nothing was written: %s", s.failedSummary())
		if len(live) > 0 {
			err = fmt.Errorf("%d of %d nodes failed set-up (--require-all); nothing was written: %s", len(s.hosts)-len(live), len(s.hosts), s.failedSummary())
		}
		return s.snapshot(), err
	}

	// 2. Connect the ready nodes into a chain or tree, leaves first so
	// that every node's children are listening for it. Every node learns
	// the whole ring, to bypass a child that stops.
	fanout := max(s.cfg.Plan.Fanout, 1)
	if err := s.startBypass(ctx, live, 0); err != nil {
		s.abortAll("ring not built")
		return s.snapshot(), fmt.Errorf("%w; nothing was written", err)
	}
	peers := s.ringPeers(live)
	for j := len(live) - 1; j >= 0; j-- {
		i := live[j]
		var kids []wire.Peer
		for _, k := range plan.Children(len(live), fanout, j) {
			kids = append(kids, wire.Peer{Name: s.hosts[live[k]].Name, Addr: s.dataAddr(live[k])})
		}
		c := s.ctl[i]
		err := c.send(wire.TConnect, wire.Connect{
			Children: kids, SegSize: s.cfg.Plan.SegSize,
			Ring: peers, Fanout: fanout, Me: j, BypassMilli: s.cfg.Bypass.Milliseconds(), FetchPort: s.fetchPort,
		})
		if err == nil {
			_ = c.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
			err = c.channel().Expect(wire.TConnected, nil)
			_ = c.conn.SetReadDeadline(time.Time{})
		}
		if err != nil {
			// A node that cannot build its part of the ring makes the
			// topology unusable: stop before anything is written.
			s.setState(i, StateFailed, "building the ring: "+err.Error())
			s.abortAll("ring not built")
			return s.snapshot(), fmt.Errorf("building the ring at node %s: %w; nothing was written", s.hosts[i].Name, err)
		}
	}
	var conns []*wire.Conn
	firsts := plan.Children(len(live), fanout, -1)
	for _, k := range firsts {
		c, err := relay.DialData(ctx, s.dataAddr(live[k]), s.id, s.cfg.Name, s.cfg.Key, s.dialOptions())
		if err != nil {
			s.abortAll("ring not built")
			return s.snapshot(), fmt.Errorf("connect to first node %s: %w; nothing was written", s.hosts[live[k]].Name, err)
		}
		conns = append(conns, c)
		defer c.Close()
	}
	for _, i := range live {
		s.setState(i, StateReceiving, "")
	}
	s.logf("Ring built: %d node(s), fanout %d. Sending...", len(live), fanout)

	return s.collect(ctx, setups, live, conns, firsts, nil)
}

// collect streams the inputs (to conns, the first nodes' connections, and
// to the window), while the nodes report progress and verdicts, and nodes
// that failed (unreachable, bypassed) may come back and join late. It
// listens to members, calls feed once the stream started, and returns
// when every member was judged or the session ended otherwise.
func (s *session) collect(ctx context.Context, setups []wire.Setup, members []int, conns []*wire.Conn, firsts []int, feed func()) (*Report, error) {
	// A resumed session's transfer began in the sender's first run: its
	// times count from then.
	s.mu.Lock()
	if s.transferStart.IsZero() {
		s.transferStart = time.Now()
	}
	start := s.transferStart
	s.moved = time.Now()
	s.mu.Unlock()
	// What a restarted sender needs, on disk until the session ends.
	finishState := s.keepState(ctx)
	defer finishState()
	verdicts := make(chan int, len(s.hosts)*(maxJoins+1))
	// A node may finish before the sender's own hashing does (a single
	// fast node, or the last chunks still in the sender's hasher): its
	// verdict is judged once the sender's digests are known.
	digestsReady := make(chan struct{})
	members = slices.Clone(members) // every node of the session: Bye goes to them
	for _, i := range members {
		s.startListen(ctx, i, start, verdicts, digestsReady)
	}
	stopWatch := s.startWatch(ctx, start)
	jctx, stopJoins := context.WithCancel(ctx)
	defer stopJoins()
	joined := make(chan *nodeConn)
	if s.lateJoin() {
		go s.lateJoins(jctx, setups, joined)
	}
	streamDone := make(chan error, 1)
	go func() { streamDone <- s.stream(ctx, conns, firsts) }()
	if feed != nil {
		feed()
	}

	// Wait for the stream and every verdict (a node whose control
	// connection drops reports failed through listen), bounded by -a.
	var serr error
	streaming, pending := true, len(members)
	interrupted := ctx.Done()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for streaming || pending > 0 && serr == nil {
		select {
		case serr = <-streamDone:
			streaming = false
			close(digestsReady)
			if serr != nil {
				s.abortAll("sender failed: " + serr.Error())
				for _, i := range members {
					s.setState(i, StateFailed, "sender failed: "+serr.Error())
				}
			}
		case <-verdicts:
			pending--
		case nc := <-joined:
			if !slices.Contains(members, nc.i) {
				members = append(members, nc.i)
			}
			pending++
			s.admit(ctx, nc, start, verdicts, digestsReady)
		case <-tick.C:
			if !streaming && s.cfg.Timeout > 0 {
				s.mu.Lock()
				idle := time.Since(s.moved)
				s.mu.Unlock()
				if idle > s.cfg.Timeout {
					reason := fmt.Sprintf("no data moved for %v (-a %v)", idle.Round(time.Second), s.cfg.Timeout)
					for _, i := range members {
						s.setState(i, StateFailed, reason)
					}
					s.abortAll(reason)
					pending = 0
				}
			}
		case <-interrupted:
			// The stream ends with ctx too.
			interrupted = nil
			for _, i := range members {
				s.setState(i, StateFailed, "interrupted")
			}
			s.abortAll("sender interrupted")
			pending = 0
		}
	}
	stopJoins()
	for _, i := range members {
		s.sendBye(i)
	}
	s.mu.Lock()
	s.rep.Seconds = time.Since(start).Seconds()
	s.rep.Done = true
	s.mu.Unlock()
	stopWatch()
	rep := s.snapshot()
	if serr != nil {
		return rep, serr
	}
	if f := rep.Failed(); len(f) > 0 {
		return rep, fmt.Errorf("%w: %d of %d", ErrNodesFailed, len(f), len(rep.Nodes))
	}
	return rep, nil
}

func (s *session) setups() []wire.Setup {
	var files []wire.SetupFile
	for i, f := range s.cfg.Plan.Files {
		sf := wire.SetupFile{Output: f.Output, InputName: f.Input, Size: -1, DataSize: -1, Split: f.SplitOut, Mount: f.Mount}
		if s.cfg.Dummy > 0 {
			sf.Discard = true
		} else {
			sf.Size, sf.DataSize = s.sources[i].Size(), s.sources[i].DataSize()
		}
		if k := s.kinds[i]; k != nil {
			sf.Cooked = true
			sf.InputName = cookName(f, *k)
		}
		files = append(files, sf)
	}
	var names, addrs []string
	for _, h := range s.hosts {
		names = append(names, h.Name)
		addrs = append(addrs, h.Addr.String())
	}
	out := make([]wire.Setup, len(s.hosts))
	for i := range out {
		out[i] = wire.Setup{
			Session: s.id, Hosts: names, Addrs: addrs, Index: i, Server: s.cfg.Name,
			Files: files, ChunkSize: s.cfg.ChunkSize, NoSync: s.cfg.NoSync,
			TimeoutMilli: s.cfg.Timeout.Milliseconds(), HyphenNormal: s.cfg.Plan.HyphenNormal,
			SockBuf:    s.cfg.SockBuf,
			Congestion: s.congestion(),
			Verify:     s.cfg.Verify,
			Digest:     string(s.cfg.Digest),
		}
		if s.stateFile != "" && s.cfg.SenderWait > 0 {
			// The session can be resumed: the nodes wait for it.
			out[i].SenderWaitMilli = s.cfg.SenderWait.Milliseconds()
		}
	}
	return out
}

// cookName is the name a node decodes a cooked file by: the input's own
// name when it says what it is, else one that does.
func cookName(f plan.File, k cook.Kind) string {
	if got, err := cook.KindOf(f.Input); err == nil && got == k {
		return f.Input
	}
	name := f.Input
	if len(f.Dirs) > 0 {
		name = strings.Join(f.Dirs, ",")
	}
	if k.Archive != "" {
		name += "." + k.Archive
	}
	if k.Compression != "" {
		name += "." + k.Compression
	}
	return name
}

// setupNode connects to node i's control port (with -r retries) and
// exchanges Hello, Setup and Ready.
func (s *session) setupNode(ctx context.Context, i int, setup wire.Setup) error {
	h := s.hosts[i]
	if s.cfg.Activate {
		pokeReport(ctx, s.reportAddr(i))
	}
	wait := 60 * time.Second
	if s.cfg.Timeout > 0 {
		wait = s.cfg.Timeout
	}
	var busySince time.Time
	for {
		conn, err := s.dialControl(ctx, i)
		if err != nil {
			s.setJoinable(i, true)
			return err
		}
		nc := &nodeConn{i: i, conn: conn}
		s.mu.Lock()
		s.ctl[i] = nc
		s.mu.Unlock()
		// An interrupt during set-up must not wait out the read deadlines.
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		r, err := s.handshakeNode(nc, setup, wait)
		stop()
		if err == nil {
			s.setState(i, StateReady, "")
			s.logf("Host ready '%s' (%s).", h.Name, r.Name)
			return nil
		}
		conn.Close()
		// A node still ending its last session (the one just before,
		// or one a --fresh sender dropped) is free within moments: ask
		// again for a while before it counts as failed.
		var pe *wire.PeerError
		if !errors.As(err, &pe) || pe.Reason != relay.ReasonBusy || ctx.Err() != nil {
			return err
		}
		if busySince.IsZero() {
			busySince = time.Now()
			s.logf("node %s: busy with another session; asking again for up to %v", h.Name, busyWait)
		}
		if time.Since(busySince) >= busyWait {
			return fmt.Errorf("%w (still, after %v)", err, busyWait)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(busyEvery):
		}
	}
}

// A node that answers set-up with relay.ReasonBusy is asked again every
// busyEvery for busyWait: one that is ending its last session is free
// within moments, one in another sender's session stays busy.
const (
	busyWait  = 10 * time.Second
	busyEvery = 250 * time.Millisecond
)

// reportAddr is node i's report address.
func (s *session) reportAddr(i int) string {
	return net.JoinHostPort(s.hosts[i].Addr.String(), strconv.Itoa(s.cfg.ReportPort))
}

// ctlAddr is node i's control address.
func (s *session) ctlAddr(i int) string {
	return net.JoinHostPort(s.hosts[i].Addr.String(), strconv.Itoa(s.cfg.ControlPort))
}

// handshakeNode greets a node on its control connection, sends it setup
// and waits up to wait for its Ready.
func (s *session) handshakeNode(nc *nodeConn, setup wire.Setup, wait time.Duration) (wire.Ready, error) {
	var r wire.Ready
	err := s.exchange(nc, wire.Hello{Version: wire.Version, Session: s.id, Sender: s.cfg.Name}, setup, wait, wire.TReady, &r, "set-up")
	if err == nil {
		err = checkDigest(r, s.cfg.Digest)
	}
	return r, err
}

// checkDigest checks that a node computes the session's digest: it echoes
// Setup.Digest in its Ready. A node that says nothing is older than
// Setup.Digest and computes SHA-256 whatever it was asked.
func checkDigest(r wire.Ready, alg digest.Alg) error {
	got := digest.Alg(r.Digest)
	if got == "" {
		got = digest.SHA256
	}
	if got != alg {
		return fmt.Errorf("set-up: the node computes %s, not the %s this session verifies with (an older herd?): boot it with this herd's boot tree, or send with --digest %s", got.Title(), alg.Title(), got)
	}
	return nil
}

// exchange greets a node on its control connection with hello (within
// 30 s), sends it setup and reads its answer of type want into v, waiting
// up to wait for it; what names the step in errors. A node that answers
// Fail or Abort refused the session.
func (s *session) exchange(nc *nodeConn, hello wire.Hello, setup wire.Setup, wait time.Duration, want wire.Type, v any, what string) error {
	conn := nc.conn
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	ch, err := greet(conn, nc, s.cfg.Key, hello)
	if err != nil {
		return err
	}
	nc.ch.Store(ch)
	if err := nc.send(wire.TSetup, setup); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	if err := ch.Expect(want, v); err != nil {
		var pe *wire.PeerError
		if errors.As(err, &pe) {
			return fmt.Errorf("refused the session: %w", pe)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return nil
}

// pokeReport connects to a node's report port and reads its answer, which
// makes systemd start the node's service when socket-activated (dolly -d).
func pokeReport(ctx context.Context, addr string) {
	d := net.Dialer{Timeout: 3 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 256))
	c.Close()
}

func (s *session) abortAll(reason string) {
	s.mu.Lock()
	ctl := slices.Clone(s.ctl)
	s.mu.Unlock()
	for _, c := range ctl {
		if c != nil {
			_ = c.send(wire.TAbort, wire.Fail{Reason: reason})
		}
	}
}

func (s *session) failedSummary() string {
	var parts []string
	for _, n := range s.rep.Nodes {
		if n.State == StateFailed {
			parts = append(parts, n.Name+": "+n.Reason)
		}
	}
	return strings.Join(parts, "; ")
}

func (s *session) snapshot() *Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rep
	r.Nodes = append([]NodeReport(nil), s.rep.Nodes...)
	now := time.Now()
	for i := range r.Nodes {
		if n := &r.Nodes[i]; n.State == StateReceiving && i < len(s.track) {
			n.Rate = s.track[i].meter.rate(now)
			n.Moved = s.track[i].meter.moved
		}
	}
	r.Digests = append([]string(nil), s.rep.Digests...)
	return &r
}

// listen reads node i's progress and verdict; it judges the verdict once
// digestsReady is closed (the sender's stream, and so its digests, done).
func (s *session) listen(ctx context.Context, i int, start time.Time, verdicts chan<- int, digestsReady <-chan struct{}) {
	s.mu.Lock()
	c := s.ctl[i]
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.track[i].listening = false
		s.mu.Unlock()
		verdicts <- i
	}()
	var lastRB int64
	s.mu.Lock()
	s.track[i].meter.start(time.Now())
	s.mu.Unlock()
	for {
		// A node says every quarter of the bypass timeout that it runs:
		// one silent for the whole timeout stopped (frozen, powered off,
		// cut off), wherever it is in the session.
		watched := s.cfg.Bypass > 0 && !s.failed(i)
		if watched {
			_ = c.conn.SetReadDeadline(time.Now().Add(s.cfg.Bypass))
		}
		h, body, err := c.channel().ReadMsg()
		if err != nil {
			var ne net.Error
			switch {
			case ctx.Err() != nil:
			case watched && errors.As(err, &ne) && ne.Timeout():
				reason := fmt.Sprintf("timeout: no word from the node for %v (frozen, powered off or cut off)", s.cfg.Bypass)
				s.logf("node %s: %s", s.hosts[i].Name, reason)
				s.failNode(i, "", reason)
				s.setJoinable(i, true)
			case errors.Is(err, wire.ErrAuth):
				s.logf("node %s: %v: dropped its control connection", s.hosts[i].Name, err)
				s.failNode(i, "", err.Error())
			default:
				s.setState(i, StateFailed, fmt.Sprintf("reset: lost contact: %v", err))
				s.setJoinable(i, true)
			}
			return
		}
		switch h.Type {
		case wire.TProgress:
			var p wire.Progress
			if json.Unmarshal(body, &p) == nil {
				now := time.Now()
				s.mu.Lock()
				n := &s.rep.Nodes[i]
				if p.Received > n.Received || p.ReadBack > lastRB {
					s.moved = now
				}
				if p.Received > n.Received {
					s.track[i].meter.progressed(now)
				}
				lastRB = p.ReadBack
				arrived := p.Arrived
				if arrived == 0 {
					arrived = p.Received // a node that does not count arrivals
				}
				s.track[i].meter.add(now, arrived)
				n.Received, n.Written, n.Arrived = p.Received, p.Written, arrived
				n.Seconds = now.Sub(start).Seconds()
				s.mu.Unlock()
			}
		case wire.TVerdict:
			var v wire.Verdict
			if err := json.Unmarshal(body, &v); err != nil {
				s.setState(i, StateFailed, "bad verdict: "+err.Error())
				return
			}
			select {
			case <-digestsReady:
			case <-ctx.Done():
			}
			s.judge(i, v)
			// Judged: the node may end its session now, whatever
			// the others still do (a late joiner catching up).
			s.sendBye(i)
			return
		case wire.TBypassed:
			var b wire.Bypassed
			switch {
			case json.Unmarshal(body, &b) != nil:
			case s.failed(i):
				// A node that failed (bypassed itself, cut off, frozen)
				// judges its children by its own silence, which was
				// not theirs: its word does not fail them.
				s.logf("node %s: ignored its report on %s (%s): it failed itself", s.hosts[i].Name, b.Node, b.Reason)
			default:
				s.bypassed(b.Index, fmt.Sprintf("%s (bypassed by %s)", b.Reason, s.hosts[i].Name))
			}
		case wire.TFail, wire.TAbort:
			var f wire.Fail
			_ = json.Unmarshal(body, &f)
			s.setState(i, StateFailed, f.Reason)
			return
		}
	}
}

// sendBye sends node i its judgement, once per connection.
func (s *session) sendBye(i int) {
	s.mu.Lock()
	n, c := s.rep.Nodes[i], s.ctl[i]
	sent := s.track[i].bye
	s.track[i].bye = true
	s.mu.Unlock()
	if sent || c == nil {
		return
	}
	bye := wire.Bye{Verified: n.State == StateDone && n.Verified, Reason: n.Reason}
	if !bye.Verified && bye.Reason == "" {
		bye.Reason = "not verified"
	}
	_ = c.send(wire.TBye, bye)
}

// judge compares a node's verdict with the sender's digests.
func (s *session) judge(i int, v wire.Verdict) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := &s.rep.Nodes[i]
	n.Files = v.Files
	n.Seconds = v.Seconds
	var bytes int64
	for _, f := range v.Files {
		bytes += f.Bytes
	}
	n.Received = max(n.Received, bytes) // a partial file reports 0 bytes
	var problems []string
	if v.Error != "" {
		problems = append(problems, v.Error)
	}
	for k, f := range v.Files {
		want := ""
		if k < len(s.rep.Digests) {
			want = s.rep.Digests[k]
		}
		switch {
		case f.Error != "":
			problems = append(problems, fmt.Sprintf("file %d: %s", k+1, f.Error))
		case want == "":
			problems = append(problems, fmt.Sprintf("file %d: the sender has no digest to compare", k+1))
		case f.Digest != want:
			problems = append(problems, fmt.Sprintf("file %d: verify failed: %s %s, sender has %s", k+1, s.cfg.Digest.Title(), short(f.Digest), short(want)))
		default:
			if p := readbackProblem(s.cfg.Verify, f, want, s.cfg.Digest); p != "" {
				problems = append(problems, fmt.Sprintf("file %d: %s", k+1, p))
			}
		}
	}
	if len(v.Files) != len(s.cfg.Plan.Files) {
		problems = append(problems, fmt.Sprintf("reported %d of %d files", len(v.Files), len(s.cfg.Plan.Files)))
	}
	if len(problems) > 0 {
		n.State, n.Verified = StateFailed, false
		// The node's own account beats its upstream's "reset" (the node
		// closed its upstream because of what it reports).
		if n.Reason == "" || strings.HasPrefix(n.Reason, "reset") {
			n.Reason = strings.Join(problems, "; ")
		}
		return
	}
	if n.State != StateFailed {
		n.State, n.Verified = StateDone, true
	}
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}

// stream reads every input once and sends it through the ring, hashing as
// it goes (and decoding cooked files to know their decoded digest). A file
// whose digest came from its digest cache (s.cached) is neither hashed
// nor decoded: its chunks go to the forwarders and the window only.
func (s *session) stream(ctx context.Context, conns []*wire.Conn, firsts []int) error {
	depth := s.cfg.PoolChunks
	// The window keeps chunks of the pool besides those in the stages.
	pool := stream.NewPool(depth+bypass.ChunkWindow(s.cfg.Window, s.cfg.ChunkSize), s.cfg.ChunkSize)
	var fwdStages []stream.Stage
	var fwds []*stream.Forwarder
	for j, c := range conns {
		f := stream.NewForwarder(c.RemoteAddr().String(), c, depth, s.cfg.Bypass, s.cfg.Bypass/4)
		k := firsts[j]
		f.OnFail = func(err error) { s.rescuer.Bypass(k, err) }
		fwds = append(fwds, f)
		fwdStages = append(fwdStages, f)
	}
	// Raw files are hashed as they go out; only cooked files need
	// decoding to know their digest (the nodes report the digest of the
	// decoded bytes for those: hashing their stream would be wasted).
	nfiles := len(s.cfg.Plan.Files)
	hashing := make([]bool, nfiles)
	decodeKinds := make([]*cook.Kind, nfiles)
	var hs *stream.Hasher
	var dg *digester
	for i := range nfiles {
		switch {
		case s.cached[i] != "":
		case s.kinds[i] != nil:
			decodeKinds[i] = s.kinds[i]
		default:
			hashing[i] = true
		}
	}
	if slices.Contains(hashing, true) {
		hs = stream.NewHasher(depth, s.cfg.Digest)
	}
	if slices.ContainsFunc(decodeKinds, func(k *cook.Kind) bool { return k != nil }) {
		dg = newDigester(decodeKinds, depth, s.cfg.Digest)
	}
	perFile := make([][]stream.Stage, nfiles)
	for i := range nfiles {
		st := slices.Clone(fwdStages)
		switch {
		case hashing[i]:
			st = append(st, hs)
		case decodeKinds[i] != nil:
			st = append(st, dg)
		}
		perFile[i] = st
	}
	stagesOf := func(f uint32) []stream.Stage {
		if int(f) < nfiles {
			return perFile[f]
		}
		return fwdStages // End
	}

	err := s.produce(ctx, pool, stagesOf)
	s.win.Close()
	for _, f := range fwds {
		_ = f.Close() // a first node that failed is bypassed
	}
	if hs != nil {
		hs.Close()
	}
	var dsums map[int]string
	if dg != nil {
		dsums = dg.close()
	}
	if err != nil {
		return err
	}
	digests := make([]string, nfiles)
	var hashed int64
	for i := range digests {
		if hashing[i] || decodeKinds[i] != nil {
			s.mu.Lock()
			hashed += s.lens[uint32(i)]
			s.mu.Unlock()
		}
		if s.cached[i] != "" {
			digests[i] = s.cached[i]
		} else if d, ok := dsums[i]; ok {
			digests[i] = d
		} else if hs != nil {
			if sum, ok := hs.Sum(uint32(i)); ok {
				digests[i] = sum.Hex()
			}
		}
	}
	s.mu.Lock()
	s.rep.Digests = digests
	s.rep.Hashed = hashed
	s.mu.Unlock()
	return nil
}

// produce reads every file and dispatches its chunks to stagesOf(file)
// (End to stagesOf(number of files)). A regular file's holes are found
// with SEEK_DATA/SEEK_HOLE (source.SparseReader): one at least a chunk
// long goes out as a Hole frame without being read, shorter ones are
// cleared in the chunk, not read. Every chunk is still segmented, blocks
// of zeros becoming holes, so the frames' bytes and the digests are those
// of a plain read.
func (s *session) produce(ctx context.Context, pool *stream.Pool, stagesOf func(file uint32) []stream.Stage) error {
	mac := wire.NewFrameMAC(s.cfg.Key.SessionKey(s.id))
	var werr error
	var onWire int64
	send := func(c *stream.Chunk, stages []stream.Stage) {
		c.Seal(mac)
		onWire += wireSize(c)
		if werr == nil {
			werr = s.win.AddChunk(ctx, c)
		}
		s.mu.Lock()
		s.rep.Sent += c.Bytes()
		s.moved = time.Now()
		s.mu.Unlock()
		stream.Dispatch(c, stages)
	}
	ctrl := func(h wire.Header) error {
		c, err := pool.Get(ctx)
		if err != nil {
			return err
		}
		c.Add(h, 0, 0)
		send(c, stagesOf(h.File))
		return nil
	}
	var total int64
	for i := range s.cfg.Plan.Files {
		var r io.Reader
		var sp *source.SparseReader
		var name string
		if s.cfg.Dummy > 0 {
			r, name = source.Dummy(-1), "dummy data"
			r = &deadlineReader{r: r, end: time.Now().Add(s.cfg.Dummy)}
		} else {
			r, name = s.sources[i], s.sources[i].Name()
			sp = s.sources[i].Sparse()
		}
		f := uint32(i)
		stages := stagesOf(f)
		if err := ctrl(wire.Header{Type: wire.TFileStart, File: f}); err != nil {
			return err
		}
		var off uint64
		for {
			c, err := pool.Get(ctx)
			if err != nil {
				return err
			}
			var n int
			var hole int64
			var rerr error
			if sp != nil {
				n, hole, rerr = sp.Next(c.Buf)
			} else {
				n, rerr = io.ReadFull(r, c.Buf)
			}
			switch {
			case hole > 0:
				c.Add(wire.Header{Type: wire.THole, File: f, Offset: off, Length: uint32(hole)}, 0, 0)
				off += uint64(hole)
				send(c, stages)
			case n > 0:
				c.Segment(f, off, n)
				off += uint64(n)
				send(c, stages)
			default:
				stream.Dispatch(c, nil) // nothing read: back to the pool
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				return fmt.Errorf("read %s at offset %d: %w", name, off, rerr)
			}
		}
		s.mu.Lock()
		s.lens[f] = int64(off)
		s.mu.Unlock()
		if err := ctrl(wire.Header{Type: wire.TFileEnd, File: f, Offset: off}); err != nil {
			return err
		}
		if werr != nil {
			return werr
		}
		total += int64(off)
	}
	s.mu.Lock()
	s.rep.Total = total
	s.mu.Unlock()
	if err := ctrl(wire.Header{Type: wire.TEnd, File: uint32(len(s.cfg.Plan.Files))}); err != nil {
		return err
	}
	s.mu.Lock()
	s.rep.Stream = onWire
	s.mu.Unlock()
	return nil
}

// wireSize is what chunk c takes on the wire: each frame's header, Data
// payload and MAC.
func wireSize(c *stream.Chunk) int64 {
	var n int64
	for i, sg := range c.Segs {
		n += int64(wire.HeaderSize + len(c.MAC(i)))
		if sg.H.Type == wire.TData {
			n += int64(sg.Len)
		}
	}
	return n
}

// deadlineReader ends a reader at a point in time (dolly's -t).
type deadlineReader struct {
	r   io.Reader
	end time.Time
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if time.Now().After(d.end) {
		return 0, io.EOF
	}
	return d.r.Read(p)
}

// digester decodes cooked files as they go out, to know the digest of the
// bytes the nodes will write.
type digester struct {
	alg   digest.Alg
	in    chan *stream.Chunk
	done  chan struct{}
	kinds []*cook.Kind
	sums  map[int]string
	errs  map[int]error
}

func newDigester(kinds []*cook.Kind, depth int, alg digest.Alg) *digester {
	d := &digester{alg: alg, in: make(chan *stream.Chunk, depth), done: make(chan struct{}), kinds: kinds, sums: map[int]string{}, errs: map[int]error{}}
	go d.run()
	return d
}

func (d *digester) In() chan<- *stream.Chunk { return d.in }

func (d *digester) run() {
	defer close(d.done)
	var pw *io.PipeWriter
	var res chan string
	var cur int
	for c := range d.in {
		for i, sg := range c.Segs {
			f := int(sg.H.File)
			switch sg.H.Type {
			case wire.TFileStart:
				if f < len(d.kinds) && d.kinds[f] != nil {
					var pr *io.PipeReader
					pr, pw = io.Pipe()
					res, cur = make(chan string, 1), f
					k, alg := *d.kinds[f], d.alg
					go func() {
						_, sum, err := cook.Digest(k, pr, alg)
						if err != nil {
							pr.CloseWithError(err)
							res <- "error: " + err.Error()
							return
						}
						_, _ = io.Copy(io.Discard, pr)
						res <- hex.EncodeToString(sum)
					}()
				}
			case wire.TData:
				if pw != nil {
					_, _ = pw.Write(c.Payload(i))
				}
			case wire.THole:
				if pw != nil {
					for left := int64(sg.H.Length); left > 0; {
						k := min(left, int64(len(stream.Zeros)))
						_, _ = pw.Write(stream.Zeros[:k])
						left -= k
					}
				}
			case wire.TFileEnd:
				if pw != nil {
					pw.Close()
					d.sums[cur] = <-res
					pw = nil
				}
			}
		}
		c.Release()
	}
	if pw != nil {
		pw.CloseWithError(errors.New("stream ended"))
		<-res
	}
}

func (d *digester) close() map[int]string {
	close(d.in)
	<-d.done
	return d.sums
}

// startWatch calls cfg.Watch twice a second until the returned function is
// called, which calls it a last time.
func (s *session) startWatch(ctx context.Context, start time.Time) (stop func()) {
	if s.cfg.Watch == nil {
		return func() {}
	}
	ticking := every(ctx, 500*time.Millisecond, func() {
		r := s.snapshot()
		r.Seconds = time.Since(start).Seconds()
		s.cfg.Watch(r)
	})
	return func() {
		ticking()
		s.cfg.Watch(s.snapshot())
	}
}

// every calls fn every d until ctx ends or the returned function is
// called, which returns once fn no longer runs.
func every(ctx context.Context, d time.Duration, fn func()) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				fn()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// congestion is the congestion control the session asks for: "" for the
// system's.
func (s *session) congestion() string {
	if s.cfg.Congestion == SystemCongestion {
		return ""
	}
	return s.cfg.Congestion
}

// dialOptions is how the sender's own data connections are set up.
func (s *session) dialOptions() relay.DialOptions {
	return relay.DialOptions{SegSize: s.cfg.Plan.SegSize, SockBuf: s.cfg.SockBuf, Congestion: s.congestion()}
}
