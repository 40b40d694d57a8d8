// Package sender is the ring's source: it checks the inputs, sets up every
// node (which checks its outputs and writes nothing yet), connects them into
// a chain or a tree, streams the files once through the ring, collects each
// node's verdict and checks it against its own digests.
package sender

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/herdproject/herd/ring/bypass"
	"github.com/herdproject/herd/ring/cook"
	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/hostlist"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/relay"
	"github.com/herdproject/herd/ring/source"
	"github.com/herdproject/herd/ring/wire"
)

// Config is a session to send. Zero values mean dolly's defaults.
type Config struct {
	// Plan is what to send where.
	Plan plan.Session
	// DataPort, ControlPort, ReportPort of the nodes; 0 = 9998, 9997, 9996.
	DataPort, ControlPort, ReportPort int
	// ChunkSize is the size of one read and of the largest data frame in
	// bytes (dolly's -b); 0 = DefaultChunkSize for the plan's hosts.
	ChunkSize int
	// PoolChunks is the number of chunks in flight; 0 = 8.
	PoolChunks int
	// SockBuf is dolly's -u: the TCP send and receive buffer size of data
	// connections in bytes; 0 leaves the system's.
	SockBuf int
	// Congestion is the TCP congestion control of every data connection,
	// the sender's and the nodes': "" = DefaultCongestion, SystemCongestion
	// = each machine's own (net.ipv4.tcp_congestion_control).
	Congestion string
	// Timeout is dolly's -a: the session fails when no data moved for this
	// long, set-up and transfer alike. 0 waits forever.
	Timeout time.Duration
	// Bypass is how long a node may make no progress (a full socket, no
	// read) before its upstream bypasses it; 0 = DefaultBypass, or half of Timeout when that is
	// shorter. A node
	// whose connection resets is bypassed at once.
	Bypass time.Duration
	// Window is how many bytes of recent frames the sender keeps to feed
	// a node again after a bypass; 0 = bypass.DefaultWindow. Older ranges
	// are re-read from the inputs.
	Window int
	// Retries is dolly's -r: how many times to try to reach each node's
	// control port, a second apart. 0 = 5; below 0, one try.
	Retries int
	// Network is "ip4" (dolly -R, the default) or "ip6" (-6).
	Network string
	// Dummy, when > 0, is dolly's -t: send generated data for about this
	// long instead of the plan's inputs; nodes write nothing.
	Dummy time.Duration
	// NoSync is dolly's -n: nodes skip fsync.
	NoSync bool
	// Verify is how nodes verify what they wrote: "" by the digest of
	// the stream as it arrived, wire.VerifyReadback by re-reading their
	// outputs after the stream (Setup.Verify).
	Verify string
	// Digest is the algorithm by which nodes and sender verify every file
	// (package ring/digest); "" is digest.Default, the tree digest. Every
	// node must compute it: one that does not (an older herd, which
	// computes SHA-256 only) fails at set-up, saying so.
	Digest digest.Alg
	// NoDigestCache makes the sender hash every input itself. By default
	// a regular file sent as it is, with a digest cache beside it
	// (IMAGE.herd-digest, written by herd image info and capture; see
	// source.DigestCache) that still matches the file's size, times,
	// device and inode, is not hashed: its digest is the cached one. The
	// nodes still hash what they receive and the sender compares: a stale
	// cache fails the nodes, it cannot pass them.
	NoDigestCache bool
	// RequireAll aborts the session before anything is written when any
	// node fails set-up; by default the others go on and the failed ones
	// are reported.
	RequireAll bool
	// NoLateJoin turns late join off: by default the sender keeps trying,
	// while the session runs, the nodes that could not be reached or
	// stopped, and feeds those that come back from the start.
	NoLateJoin bool
	// Activate is dolly's -d: first connect to each node's report port so
	// that systemd starts the node's service, then connect as usual.
	Activate bool
	// Key, when set, authenticates every connection both ways and MACs
	// every frame; nodes without the same key fail set-up ("auth
	// failed") and write nothing.
	Key wire.Key
	// Name is the sender's name sent to the nodes; "" = the hostname.
	Name string
	// Log receives the session's messages: set-up and per-node events at
	// debug level (-v), what an operator must see whatever the verbosity
	// (a resumed session, a state file that cannot be kept) at info or
	// warning; nil discards them.
	Log *slog.Logger
	// Watch, when set, is called about twice a second with the state of
	// every node, and once more at the end.
	Watch func(*Report)
	// Resolver resolves host names; nil = net.DefaultResolver.
	Resolver *net.Resolver
	// StateFile, when set, is where the sender keeps what it needs to
	// take the session back after it was killed (state.go), written
	// atomically while the session runs and removed when it ends. When
	// the file holds an unfinished session of the same command and the
	// same inputs, Send resumes it instead of starting a new one.
	StateFile string
	// Fresh starts a new session even when StateFile holds an unfinished
	// one; the nodes still waiting in that one are told to drop it.
	Fresh bool
	// SenderWait is how long the nodes keep the session when the sender
	// goes away, waiting for it to come back: 0 = DefaultSenderWait, < 0
	// = not at all (the session ends on the node at once).
	SenderWait time.Duration
}

// DefaultChunkSize is the block size for a ring of n nodes: 512 KiB, or
// 256 KiB beyond 16 nodes. A node forwards a frame once it has all of it,
// so every hop delays the stream by one block's time on the wire (512
// KiB: 11 ms at 400 Mbit/s, 44 ms at 100 Mbit/s); smaller blocks cost
// more wake-ups per GiB. Measured in the bench lab (docs/bench/levers.md):
// at 400 Mbit/s, 512 KiB against 1 MiB takes time(16)/time(1) from 1.21
// to 1.09 and link efficiency at 8 nodes from 95.6 to 98.1 % for 0.1
// CPU-seconds per GiB more; past 16 hops, 256 KiB.
func DefaultChunkSize(n int) int {
	if n > 16 {
		return 256 << 10
	}
	return 512 << 10
}

// DefaultCongestion is the TCP congestion control herd asks for on its
// data connections: CUBIC, the kernel's default. A ring's connections are
// long single flows through switch ports; BBR, which some systems set,
// paces every packet with a timer, and in the bench lab that took the 100
// Mbit/s ring of 32 nodes from 2.7 to 4.7 CPU-seconds per GiB
// (docs/bench/levers.md).
const DefaultCongestion = "cubic"

// SystemCongestion as Config.Congestion leaves each machine's own
// congestion control.
const SystemCongestion = "system"

func (c *Config) setDefaults() {
	if c.Congestion == "" {
		c.Congestion = DefaultCongestion
	}
	if c.DataPort == 0 {
		c.DataPort = relay.DefaultDataPort
	}
	if c.ControlPort == 0 {
		c.ControlPort = relay.DefaultControlPort
	}
	if c.ReportPort == 0 {
		c.ReportPort = relay.DefaultReportPort
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultChunkSize(len(c.Plan.Hosts))
	}
	if c.Digest == "" {
		c.Digest = digest.Default
	}
	if c.PoolChunks == 0 {
		c.PoolChunks = 8
	}
	if c.Retries == 0 {
		c.Retries = 5
	}
	c.Retries = max(c.Retries, 1)
	if c.Bypass == 0 {
		// Bypass well within -a, which ends the whole session.
		c.Bypass = DefaultBypass
		if c.Timeout > 0 {
			c.Bypass = min(c.Bypass, max(c.Timeout/2, 500*time.Millisecond))
		}
	}
	if c.Network == "" {
		c.Network = "ip4"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Name == "" {
		c.Name, _ = os.Hostname()
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.SenderWait == 0 {
		c.SenderWait = DefaultSenderWait
	}
}

// State of a node in a session.
type State string

// Node states, in the order a healthy node goes through them.
const (
	StateConnecting State = "connecting"
	StateReady      State = "ready"
	StateReceiving  State = "receiving"
	StateVerifying  State = "verifying"
	StateDone       State = "done"
	StateFailed     State = "failed"
)

// NodeReport is one node's state and, at the end, its result.
type NodeReport struct {
	Index    int
	Name     string
	Addr     string
	State    State
	Reason   string // why it failed
	Received int64  // stream bytes received so far
	Written  int64
	Seconds  float64
	Verified bool
	Files    []wire.FileResult
	// Rate is the receive rate in bytes per second over the last
	// RateWindow, from what arrived at the node as it arrived.
	Rate float64
	// Moved is when bytes last arrived at the node, or it took some from
	// its socket (while receiving).
	Moved time.Time
	// Arrived is the stream bytes (frames, on the wire) that arrived at
	// the node: read, or waiting in its socket.
	Arrived int64
	// Joins is how often the node joined the session late, after it
	// failed (unreachable at set-up, or stopped and bypassed), and
	// JoinedAfter why it had failed the last time.
	Joins       int
	JoinedAfter string
}

// Report is the session as the sender sees it.
type Report struct {
	Nodes []NodeReport
	// Total is the length of the stream (all files), once known; during
	// the transfer, the expected length or -1.
	Total int64
	// Sent is how many stream bytes the sender produced so far.
	Sent int64
	// Stream is the length of the stream on the wire (frames with their
	// headers and MACs), once the sender produced all of it; 0 before.
	Stream int64
	// Seconds from the start of the transfer to the last verdict.
	Seconds float64
	// Outputs are the plan's outputs, for logs.
	Outputs []string
	// Digests are the sender's SHA-256 per file (hex): of the stream for
	// raw files, of the decoded bytes for cooked ones.
	Digests []string
	// Hashed is how many stream bytes the sender hashed (raw files) or
	// decoded (cooked files) for its digests: the files whose digest came
	// from a digest cache (Config.NoDigestCache) count nothing.
	Hashed int64
	Done   bool
	// Session is the session's ID; Restarts is how often the sender
	// was restarted during it and resumed it (Config.StateFile).
	Session  string
	Restarts int
}

// Failed returns the nodes that did not verify every file.
func (r *Report) Failed() []NodeReport {
	var out []NodeReport
	for _, n := range r.Nodes {
		if n.State != StateDone || !n.Verified {
			out = append(out, n)
		}
	}
	return out
}

// ErrNodesFailed is returned (wrapped) when the session ran but at least
// one node did not verify its data.
var ErrNodesFailed = errors.New("some nodes failed")

// SetupError is a problem found before any node was contacted (bad input,
// bad host list): nothing was sent or written.
type SetupError struct{ Err error }

func (e *SetupError) Error() string { return e.Err.Error() }
func (e *SetupError) Unwrap() error { return e.Err }

type session struct {
	cfg     Config
	id      string
	hosts   []hostlist.Resolved
	sources []*source.Source
	kinds   []*cook.Kind // non-nil for cooked files
	// cached are the digests found in the inputs' digest caches: what a
	// node must report for each file, "" where the sender hashes.
	cached []string

	mu    sync.Mutex
	rep   Report
	ctl   []*nodeConn
	moved time.Time // last time any byte moved, for -a
	lens  map[uint32]int64

	// Bypass (bypass.go): the live nodes in ring order, the window of
	// recent frames, the rescuer of the first nodes, the fetch port.
	live      []int
	win       *bypass.Window
	rescuer   *bypass.Rescuer
	fetchPort int
	// Per node: late join (join.go) and whether it was judged.
	track []nodeState

	// Restart (state.go): when the session started, how often the
	// sender was restarted during it, the inputs' fingerprints, and the
	// state file (its last content written, under stateMu).
	started  time.Time
	restarts int
	// transferStart is when the stream began, in the first run.
	transferStart time.Time
	inputs        []inputPrint
	stateFile     string
	stateMu       sync.Mutex
	saved         []byte
	stateGone     bool
	stateWarned   bool
}

// Send runs a session and returns its report. The error is a *SetupError
// when nothing was sent, wraps ErrNodesFailed when some nodes failed, and
// is nil only when every node verified every file.
func Send(ctx context.Context, cfg Config) (*Report, error) {
	cfg.setDefaults()
	s := &session{cfg: cfg, lens: map[uint32]int64{}}
	defer func() {
		for _, src := range s.sources {
			src.Close()
		}
	}()
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	st, err := s.prepareState()
	if err != nil {
		return nil, err
	}
	if st != nil {
		return s.resume(ctx, st)
	}
	return s.run(ctx)
}

// prepareState finds the session to resume in the state file, if any.
// With Fresh, the nodes of an unfinished session there are told to drop
// it, and this session starts anew.
func (s *session) prepareState() (*savedState, error) {
	if s.cfg.StateFile == "" || s.cfg.Dummy > 0 {
		return nil, nil
	}
	inputs, ok, err := s.printInputs()
	if err != nil {
		return nil, &SetupError{err}
	}
	if !ok {
		s.logf("an input is not a single file (standard input, a pipe, directory trees, split parts): the session cannot be resumed if the sender restarts")
		return nil, nil
	}
	s.inputs = inputs
	st, err := loadState(s.cfg.StateFile)
	if err != nil {
		return nil, &SetupError{err}
	}
	s.stateFile = s.cfg.StateFile
	if st == nil {
		return nil, nil
	}
	if s.cfg.Fresh {
		s.notef("--fresh: dropping unfinished session %s (state file %s, started %s)", st.Session, s.cfg.StateFile, st.Started.Local().Format(time.DateTime))
		s.drop(st)
		if err := os.Remove(s.cfg.StateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, &SetupError{fmt.Errorf("remove state file: %w", err)}
		}
		return nil, nil
	}
	if d := s.differs(st, inputs); d != "" {
		return nil, &SetupError{fmt.Errorf("state file %s holds unfinished session %s, started %s, which this command cannot resume: %s. Its nodes keep it while they wait for their sender (--sender-wait). Run the command of that session unchanged to resume it, or add --fresh to drop it and start a new one",
			s.cfg.StateFile, st.Session, st.Started.Local().Format(time.DateTime), d)}
	}
	return st, nil
}

// prepare checks everything that can be checked without a node.
func (s *session) prepare(ctx context.Context) error {
	p := &s.cfg.Plan
	if s.cfg.Dummy > 0 && len(p.Files) == 0 {
		p.Files = []plan.File{{Input: "dummy", Output: "dummy"}}
	}
	if err := p.Validate(); err != nil {
		return &SetupError{err}
	}
	if s.cfg.ChunkSize < 4096 || s.cfg.ChunkSize > wire.MaxData {
		return &SetupError{fmt.Errorf("block size %d: must be between 4096 and %d bytes", s.cfg.ChunkSize, wire.MaxData)}
	}
	if alg, err := digest.Parse(string(s.cfg.Digest)); err != nil {
		return &SetupError{fmt.Errorf("--digest: %w", err)}
	} else {
		s.cfg.Digest = alg
	}
	s.kinds = make([]*cook.Kind, len(p.Files))
	s.cached = make([]string, len(p.Files))
	for i, f := range p.Files {
		if s.cfg.Dummy > 0 {
			continue
		}
		if k, ok, err := cookKind(f); err != nil {
			return &SetupError{fmt.Errorf("file %d (%s): %w", i+1, f.Input, err)}
		} else if ok {
			s.kinds[i] = &k
		}
		src, err := source.Open(f)
		if err != nil {
			return &SetupError{err}
		}
		s.sources = append(s.sources, src)
		if !s.cfg.NoDigestCache {
			s.cached[i] = s.cachedDigest(i, src)
		}
	}
	hosts, err := hostlist.Resolve(ctx, s.cfg.Resolver, p.Hosts, s.cfg.Network)
	if err != nil {
		return &SetupError{err}
	}
	s.hosts = hosts
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	s.id = hex.EncodeToString(b)
	s.rep.Session = s.id
	s.started = time.Now()
	s.rep.Nodes = make([]NodeReport, len(hosts))
	for i, h := range hosts {
		s.rep.Nodes[i] = NodeReport{Index: i, Name: h.Name, Addr: h.Addr.String(), State: StateConnecting}
	}
	s.rep.Total = -1
	for _, f := range p.Files {
		s.rep.Outputs = append(s.rep.Outputs, f.Output)
	}
	return nil
}

// cachedDigest is the digest that file i's digest cache gives for what
// the nodes report: the file's own for a raw file, the decoded one for a
// compressed file sent cooked; "" when there is none that applies (then
// the sender hashes or decodes the file as it goes out).
//
// Using it is safe whatever the file holds now: the nodes hash what they
// receive and judge compares their digests with this one, so a cache that
// no longer describes the bytes sent fails every node; it cannot make a
// node pass.
func (s *session) cachedDigest(i int, src *source.Source) string {
	dc, err := src.DigestCache()
	switch {
	case errors.Is(err, source.ErrNoDigestCache):
		return ""
	case err != nil:
		s.logf("file %d (%s): digest cache ignored, hashing the file: %v", i+1, src.Name(), err)
		return ""
	}
	k, alg := s.kinds[i], s.cfg.Digest
	switch {
	case k == nil:
		if d := dc.Of(alg); d != "" {
			s.logf("file %d (%s): %s %s from %s%s (not hashed)", i+1, src.Name(), alg.Title(), short(d), src.Name(), source.DigestCacheSuffix)
			return d
		}
		s.logf("file %d (%s): the digest cache has no %s: hashing the file (herd image info IMAGE writes it)", i+1, src.Name(), alg.Title())
		return ""
	case k.Archive == "" && dc.Decoded != nil && dc.Decoded.Compression == k.Compression:
		if d := dc.Decoded.Of(alg); d != "" {
			s.logf("file %d (%s): decoded %s %s from %s%s (not decoded)", i+1, src.Name(), alg.Title(), short(d), src.Name(), source.DigestCacheSuffix)
			return d
		}
		s.logf("file %d (%s): the digest cache has no decoded %s: decoding it (herd image info IMAGE writes it)", i+1, src.Name(), alg.Title())
		return ""
	}
	s.logf("file %d (%s): the digest cache has no digest of the file decoded as %s: decoding it", i+1, src.Name(), k)
	return ""
}

// cookKind says how nodes decode file f, if at all: dolly+'s ">>" by the
// input's name, dolly's "compressed infile" as gzip (unless the output is
// compressed too, then the bytes are stored as they are).
func cookKind(f plan.File) (cook.Kind, bool, error) {
	switch {
	case f.Mode == plan.Cooked && len(f.Dirs) == 0:
		k, err := cook.KindOf(f.Input)
		return k, err == nil, err
	case len(f.Dirs) > 0 && f.CompressedOut:
		return cook.Kind{Archive: "tar", Compression: "gz"}, true, nil
	case len(f.Dirs) > 0:
		return cook.Kind{Archive: "tar"}, true, nil
	case f.CompressedIn && !f.CompressedOut:
		return cook.Kind{Compression: "gz"}, true, nil
	}
	return cook.Kind{}, false, nil
}

// logf logs set-up and per-node events (debug: shown with -v).
func (s *session) logf(format string, args ...any) { s.cfg.Log.Debug(fmt.Sprintf(format, args...)) }

// notef and warnf say what an operator must see.
func (s *session) notef(format string, args ...any) { s.cfg.Log.Info(fmt.Sprintf(format, args...)) }
func (s *session) warnf(format string, args ...any) { s.cfg.Log.Warn(fmt.Sprintf(format, args...)) }

func (s *session) dataAddr(i int) string {
	return net.JoinHostPort(s.hosts[i].Addr.String(), strconv.Itoa(s.cfg.DataPort))
}

func (s *session) setState(i int, st State, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := &s.rep.Nodes[i]
	if n.State == StateFailed || n.State == StateDone {
		return
	}
	n.State = st
	if reason != "" {
		n.Reason = reason
	}
}

// failed tells whether node i is failed.
func (s *session) failed(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rep.Nodes[i].State == StateFailed
}
