package sender

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herdproject/herd/internal/atomicfile"
	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/wire"
)

// A sender restart: while a session runs, the sender keeps on disk what it
// needs to take the session back if it is killed (Config.StateFile): the
// session's ID, a fingerprint of every input, the hosts, the ring's order
// and shape, and each node's state once it is final. The nodes keep the
// session meanwhile (wire.Setup.SenderWaitMilli): those behind the first
// go on receiving from their upstreams, the first ones wait for a new
// upstream. The same command started again finds the file, checks that
// the inputs did not change, greets every node that was still in the
// session (wire.Hello.Resume), and feeds the first ones from where they
// are, re-reading the inputs: it hashes them whole again for its digests
// (unless their digest caches give them).
// A node's verdict sent while the sender was away comes again on the new
// connection. The file is removed when the session ends.

// stateVersion is the state file's format.
const stateVersion = 1

// DefaultSenderWait is how long nodes keep a session whose sender went
// away, waiting for it to come back.
const DefaultSenderWait = 5 * time.Minute

// savedState is the state file's content.
type savedState struct {
	Version int       `json:"version"`
	Session string    `json:"session"`
	Sender  string    `json:"sender"`
	Started time.Time `json:"started"`
	// Transfer is when the stream began.
	Transfer  time.Time    `json:"transfer"`
	Restarts  int          `json:"restarts"`
	Inputs    []inputPrint `json:"inputs"`
	Outputs   []string     `json:"outputs"`
	Hosts     []string     `json:"hosts"`
	Addrs     []string     `json:"addrs"`
	Live      []int        `json:"live"`
	Fanout    int          `json:"fanout"`
	ChunkSize int          `json:"chunk_size"`
	// Digest is the session's digest algorithm ("" in files older than
	// it: SHA-256).
	Digest    string      `json:"digest,omitempty"`
	FetchPort int         `json:"fetch_port"`
	Nodes     []savedNode `json:"nodes"`
}

// savedNode is one node's final state, or "receiving" while it has none.
type savedNode struct {
	State       State             `json:"state"`
	Reason      string            `json:"reason,omitempty"`
	Verified    bool              `json:"verified,omitempty"`
	Seconds     float64           `json:"seconds,omitempty"`
	Joins       int               `json:"joins,omitempty"`
	JoinedAfter string            `json:"joined_after,omitempty"`
	Joinable    bool              `json:"joinable,omitempty"`
	Files       []wire.FileResult `json:"files,omitempty"`
}

// inputPrint identifies an input as it was when the session started.
type inputPrint struct {
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	// Ends is the SHA-256 of the first and the last MiB.
	Ends string `json:"ends"`
}

// DefaultStateFile is the state file of a session in dir: one per
// command, named by what the command sends where, so that the same
// command finds it again.
func DefaultStateFile(dir string, cfg Config) string {
	h := sha256.New()
	for _, f := range cfg.Plan.Files {
		in := f.Input
		if abs, err := filepath.Abs(in); err == nil && in != "-" {
			in = abs
		}
		fmt.Fprintf(h, "in %q out %q\n", in, f.Output)
	}
	for _, host := range cfg.Plan.Hosts {
		fmt.Fprintf(h, "host %q\n", host)
	}
	fmt.Fprintf(h, "ports %d %d\n", cfg.DataPort, cfg.ControlPort)
	return filepath.Join(dir, "session-"+hex.EncodeToString(h.Sum(nil))[:16]+".json")
}

// printInputs fingerprints the plan's inputs; ok is false when one cannot
// be read again from any offset (standard input, a pipe, a directory tree
// or split parts): such a session cannot resume.
func (s *session) printInputs() ([]inputPrint, bool, error) {
	var out []inputPrint
	for i, f := range s.cfg.Plan.Files {
		// Only a single file can be re-read from where a node is.
		if f.SplitIn || len(f.Dirs) > 0 || i < len(s.sources) && s.sources[i].ReaderAt() == nil {
			return nil, false, nil
		}
		p, ok, err := printInput(f.Input)
		if err != nil || !ok {
			return nil, ok, err
		}
		out = append(out, p)
	}
	return out, true, nil
}

func printInput(path string) (inputPrint, bool, error) {
	if path == "-" {
		return inputPrint{}, false, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return inputPrint{}, false, err
	}
	f, err := os.Open(abs)
	if err != nil {
		return inputPrint{}, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return inputPrint{}, false, err
	}
	if !fi.Mode().IsRegular() {
		return inputPrint{}, false, nil
	}
	const end = 1 << 20
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, min(end, fi.Size()))); err != nil {
		return inputPrint{}, false, fmt.Errorf("read %s: %w", abs, err)
	}
	if fi.Size() > end {
		if _, err := io.Copy(h, io.NewSectionReader(f, max(end, fi.Size()-end), end)); err != nil {
			return inputPrint{}, false, fmt.Errorf("read %s: %w", abs, err)
		}
	}
	return inputPrint{Path: abs, Size: fi.Size(), ModTime: fi.ModTime().UTC(), Ends: hex.EncodeToString(h.Sum(nil))}, true, nil
}

// loadState reads a state file: nil when there is none.
func loadState(path string) (*savedState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s: %w: remove it, or start with --fresh", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("state file %s: format version %d, this herd reads %d: remove it, or start with --fresh", path, st.Version, stateVersion)
	}
	return &st, nil
}

// differs says how the session in st differs from this command's, or "".
func (s *session) differs(st *savedState, inputs []inputPrint) string {
	var names []string
	for _, h := range s.hosts {
		names = append(names, h.Name)
	}
	switch {
	case !slices.Equal(st.Hosts, names):
		return fmt.Sprintf("its hosts were %s, now %s", strings.Join(st.Hosts, ","), strings.Join(names, ","))
	case !slices.Equal(st.Outputs, s.rep.Outputs):
		return fmt.Sprintf("its outputs were %s, now %s", strings.Join(st.Outputs, ","), strings.Join(s.rep.Outputs, ","))
	case len(st.Inputs) != len(inputs):
		return fmt.Sprintf("it had %d inputs, now %d", len(st.Inputs), len(inputs))
	case len(st.Nodes) != len(s.hosts):
		return fmt.Sprintf("it had %d nodes, now %d", len(st.Nodes), len(s.hosts))
	}
	if was, _ := digest.Parse(st.Digest); was != s.cfg.Digest {
		return fmt.Sprintf("it verifies with --digest %s, this command with %s", was, s.cfg.Digest)
	}
	for i, was := range st.Inputs {
		now := inputs[i]
		switch {
		case was.Path != now.Path:
			return fmt.Sprintf("input %d was %s, now %s", i+1, was.Path, now.Path)
		case was.Size != now.Size:
			return fmt.Sprintf("%s was %d bytes, now %d: the image changed", now.Path, was.Size, now.Size)
		case !was.ModTime.Equal(now.ModTime):
			return fmt.Sprintf("%s was modified at %s, now at %s: the image changed", now.Path, was.ModTime.Format(time.RFC3339Nano), now.ModTime.Format(time.RFC3339Nano))
		case was.Ends != now.Ends:
			return fmt.Sprintf("%s has other bytes at its start or end: the image changed", now.Path)
		}
	}
	for _, j := range st.Live {
		if j < 0 || j >= len(s.hosts) {
			return fmt.Sprintf("its ring names node %d of %d", j+1, len(s.hosts))
		}
	}
	return ""
}

// state is the session as the state file keeps it.
func (s *session) state() *savedState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &savedState{
		Version: stateVersion, Session: s.id, Sender: s.cfg.Name, Started: s.started, Transfer: s.transferStart, Restarts: s.restarts,
		Inputs: s.inputs, Outputs: s.rep.Outputs, Live: s.live, Fanout: max(s.cfg.Plan.Fanout, 1),
		ChunkSize: s.cfg.ChunkSize, FetchPort: s.fetchPort, Digest: string(s.cfg.Digest),
	}
	for i, h := range s.hosts {
		st.Hosts = append(st.Hosts, h.Name)
		st.Addrs = append(st.Addrs, h.Addr.String())
		n := s.rep.Nodes[i]
		sn := savedNode{State: n.State, Reason: n.Reason, Joins: n.Joins, JoinedAfter: n.JoinedAfter}
		switch n.State {
		case StateDone, StateFailed:
			sn.Verified, sn.Seconds, sn.Files = n.Verified, n.Seconds, n.Files
			sn.Joinable = i < len(s.track) && s.track[i].joinable
		default:
			sn.State, sn.Reason = StateReceiving, ""
		}
		st.Nodes = append(st.Nodes, sn)
	}
	return st
}

// saveState writes the state file when it changed since the last write.
func (s *session) saveState() {
	if s.stateFile == "" {
		return
	}
	b, err := json.MarshalIndent(s.state(), "", "\t")
	if err != nil {
		return
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.stateGone || string(b) == string(s.saved) {
		return
	}
	if err := atomicfile.Write(s.stateFile, append(b, '\n'), 0o600); err != nil {
		if !s.stateWarned {
			s.stateWarned = true
			s.warnf("cannot keep the session's state (%v): a restarted sender could not resume it", err)
		}
		return
	}
	s.saved = b
}

// keepState writes the state file now and whenever it changes until ctx
// ends or the returned function is called, which removes the file: the
// session ended, there is nothing to resume.
func (s *session) keepState(ctx context.Context) (finish func()) {
	if s.stateFile == "" {
		return func() {}
	}
	if err := os.MkdirAll(filepath.Dir(s.stateFile), 0o700); err != nil {
		s.warnf("cannot keep the session's state: %v: a restarted sender could not resume it", err)
		s.stateFile = ""
		return func() {}
	}
	s.saveState()
	stop := every(ctx, 250*time.Millisecond, s.saveState)
	return func() {
		stop()
		s.stateMu.Lock()
		s.stateGone = true
		s.stateMu.Unlock()
		if err := os.Remove(s.stateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.warnf("remove the session's state file: %v", err)
		}
	}
}

// restore makes this session the one in st.
func (s *session) restore(st *savedState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.id, s.started, s.restarts = st.Session, st.Started, st.Restarts+1
	s.transferStart = st.Transfer
	s.rep.Session, s.rep.Restarts = s.id, s.restarts
	s.cfg.Plan.Fanout = st.Fanout
	s.cfg.ChunkSize = st.ChunkSize
	s.live = st.Live
	for i, sn := range st.Nodes {
		n := &s.rep.Nodes[i]
		n.State, n.Reason, n.Verified, n.Seconds, n.Files = sn.State, sn.Reason, sn.Verified, sn.Seconds, sn.Files
		n.Joins, n.JoinedAfter = sn.Joins, sn.JoinedAfter
		if n.State != StateDone && n.State != StateFailed {
			n.State = StateConnecting
		}
	}
}

// fetchAddr is where the nodes fetch ranges from: the port of the
// session's first run when resuming (the nodes know that one).
func fetchAddr(port int) string {
	return ":" + strconv.Itoa(port)
}

// StateHosts returns the hosts of the unfinished session in a state
// file, in ring order, as the session named them; nil when there is no
// such file.
func StateHosts(path string) ([]string, error) {
	st, err := loadState(path)
	if err != nil || st == nil {
		return nil, err
	}
	return st.Hosts, nil
}
