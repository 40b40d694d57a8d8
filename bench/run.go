package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/herdproject/herd/bench/bare"
)

// Spec is one benchmark run.
type Spec struct {
	// Suite names the set of runs it belongs to ("ring-400M").
	Suite string
	// Mode is "ring" (herd send through a chain of herd recv), "bare"
	// (the same chain of bench/bare's relay: the floor) or "star" (herd's
	// HTTP server, N curl clients at once).
	Mode string
	// N is the number of nodes.
	N int
	// Rate is every port's rate in bits per second; 0 unlimited.
	Rate  int64
	Image *Image
	// Rep numbers the repetition, from 1.
	Rep int
	// SendArgs are extra herd send options (levers: -b, --chunks, -u).
	SendArgs []string
}

func (s Spec) String() string {
	return fmt.Sprintf("%s N=%d %s %s #%d", s.Mode, s.N, RateName(s.Rate), s.Image.Name, s.Rep)
}

// RateName is "400M", "100M" or "unlimited".
func RateName(bps int64) string {
	if bps == 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%dM", bps/1e6)
}

// Verdict is one node's outcome.
type Verdict struct {
	Node string
	// OK: the node's program succeeded and the file it wrote has the
	// image's SHA-256 (hashed by the harness's wrapper on the node's own
	// tmpfs after the run).
	OK bool
	// Herd is the node's line in herd send's summary (ring only).
	Herd   string
	SHA256 string
	Reason string
	// MaxRSSKiB is the node program's peak resident set.
	MaxRSSKiB int64
}

// Result is what one run measured.
type Result struct {
	Spec Spec
	// Wall is the run's time: from starting the sender (ring) or every
	// client at once (star) until the last node was done.
	Wall                time.Duration
	SenderCPU, NodesCPU CPU
	SenderMaxRSSKiB     int64
	Nodes               []Verdict
	// Err is why the run failed as a whole, "" when it ran.
	Err string
}

// Verified tells whether every node got the image intact.
func (r *Result) Verified() bool {
	if r.Err != "" || len(r.Nodes) != r.Spec.N {
		return false
	}
	for _, v := range r.Nodes {
		if !v.OK {
			return false
		}
	}
	return true
}

// Runner runs benchmark runs in a lab.
type Runner struct {
	Lab *Lab
	// Herd is the herd binary; Self is the harness binary, which wraps
	// every measured program (its "wrap" command).
	Herd, Self string
	// Work is a directory on the host for logs, the star's web root and
	// its inventory; it must be on the images' file system.
	Work string
	// Mnt is an empty directory on the host where every node mounts a
	// tmpfs of its own, invisible to the others.
	Mnt string
	// CG is the cgroup the runs' role groups are made under.
	CG  *Cgroup
	seq int
}

// quietIdle is the share of idle CPU time a run waits for before it
// starts (quiesce).
const quietIdle = 0.85

// httpPort is the star server's port.
const httpPort = 8080

// Run carries out one run. A run whose nodes failed is a Result with
// their verdicts, not an error; errors are failures of the harness.
func (r *Runner) Run(ctx context.Context, s Spec) (*Result, error) {
	// What the last run left behind (exits, freeing its nodes' tmpfs, the
	// verification) must not be charged to this one. A machine that never
	// gets that quiet is measured anyway.
	quiesce(ctx, quietIdle, 250*time.Millisecond, 15*time.Second)
	if r.Lab.Rate() != s.Rate {
		if err := r.Lab.SetRate(ctx, s.Rate); err != nil {
			return nil, err
		}
	}
	if s.N < 1 || s.N >= r.Lab.Hosts() {
		return nil, fmt.Errorf("%v: the lab has %d nodes", s, r.Lab.Hosts()-1)
	}
	r.seq++
	run, err := r.CG.Child(fmt.Sprintf("run%d", r.seq))
	if err != nil {
		return nil, err
	}
	defer run.Remove()
	roles := map[string]*Cgroup{}
	for _, name := range []string{"sender", "nodes"} {
		if roles[name], err = run.Child(name); err != nil {
			return nil, err
		}
	}
	logDir := filepath.Join(r.Work, "logs", fmt.Sprintf("%03d-%s-n%d-%s-%s", r.seq, s.Mode, s.N, RateName(s.Rate), s.Image.Name))
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, runTimeout(s))
	defer cancel()
	rr := &run1{r: r, s: s, roles: roles, logDir: logDir, res: &Result{Spec: s}}
	defer rr.stopAll()
	switch s.Mode {
	case "ring":
		err = rr.ring(ctx)
	case "bare":
		err = rr.bare(ctx)
	case "star":
		err = rr.star(ctx)
	default:
		err = fmt.Errorf("unknown mode %q", s.Mode)
	}
	if err != nil {
		rr.res.Err = err.Error()
		if ctx.Err() != nil {
			rr.res.Err = fmt.Sprintf("%v (run bounded at %v); logs in %s", err, runTimeout(s), logDir)
		}
	}
	return rr.res, nil
}

// runTimeout bounds a run: three times what the links allow, plus a
// minute.
func runTimeout(s Spec) time.Duration {
	rate := 50e6 // bytes/s assumed when unlimited: slower than any run
	if s.Rate > 0 {
		rate = Ceiling(s.Rate)
	}
	bytes := float64(s.Image.Wire)
	if s.Mode == "star" {
		bytes *= float64(s.N)
	}
	return time.Duration(3*bytes/rate*float64(time.Second)) + time.Minute
}

// Ceiling is the TCP payload a port of bps carries per second: the
// shaper counts Ethernet frames (14-byte header; no preamble, FCS or
// gap), each with 20 bytes of IP header, 20 of TCP and 12 of
// timestamps around a 1448-byte segment.
func Ceiling(bps int64) float64 {
	return float64(bps) / 8 * 1448 / (1448 + 66)
}

// run1 is one run in progress.
type run1 struct {
	r      *Runner
	s      Spec
	roles  map[string]*Cgroup
	logDir string
	res    *Result
	procs  []*proc
}

// outPath is where every node writes the image (on its own tmpfs).
func (rr *run1) outPath() string { return filepath.Join(rr.r.Mnt, "out.img") }

func (rr *run1) tmpfsSize() string {
	return fmt.Sprintf("%dm", rr.s.Image.Size>>20+64)
}

// startNodes starts a wrapper of wrap(k) in each node's host k (name1,
// name2, ...): each on a tmpfs of its own, holding after its program to
// hash what it wrote to outPath.
func (rr *run1) startNodes(ctx context.Context, name string, wrap func(k int) Wrap) ([]*proc, error) {
	var nodes []*proc
	for k := 1; k <= rr.s.N; k++ {
		w := wrap(k)
		w.Tmpfs, w.TmpfsSize, w.Hash, w.Hold = rr.r.Mnt, rr.tmpfsSize(), rr.outPath(), true
		p, err := rr.start(ctx, k, "nodes", fmt.Sprintf("%s%d", name, k), w)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, p)
	}
	return nodes, nil
}

// same is a wrap func that gives every node w.
func same(w Wrap) func(int) Wrap { return func(int) Wrap { return w } }

// nodeAddrs are the lab addresses of nodes 1..N.
func (rr *run1) nodeAddrs() []string {
	var addrs []string
	for k := 1; k <= rr.s.N; k++ {
		addrs = append(addrs, rr.r.Lab.Addr(k))
	}
	return addrs
}

func (rr *run1) ring(ctx context.Context) error {
	s := rr.s
	nodes, err := rr.startNodes(ctx, "node", same(Wrap{Ready: "127.0.0.1:9996", Argv: []string{rr.r.Herd, "recv"}}))
	if err != nil {
		return err
	}
	addrs := rr.nodeAddrs()
	file := fmt.Sprintf("%s > %s", s.Image.Path, rr.outPath())
	if s.Image.Cooked() {
		file = fmt.Sprintf("%s >> %s", s.Image.Path, rr.outPath())
	}
	args := append([]string{rr.r.Herd, "send", "-q", "-H", strings.Join(addrs, ","), "--file", file}, s.SendArgs...)
	return rr.chain(ctx, nodes, args, func(v *Verdict, summary map[string]string) {
		v.Herd = summary[v.Node]
		if v.OK && !strings.Contains(v.Herd, " done ") {
			v.OK, v.Reason = false, "herd send did not report it done: "+v.Herd
		}
	})
}

// bare runs bench/bare's relay (herd-bench bare) through the same chain
// as the ring: the floor herd is compared with. Its copies are verified
// by the wrappers as the ring's are; nothing else checks them.
func (rr *run1) bare(ctx context.Context) error {
	s := rr.s
	if s.Image.Cooked() {
		return errors.New("the bare relay carries raw images only")
	}
	addrs := rr.nodeAddrs()
	port := fmt.Sprint(bare.Port)
	nodes, err := rr.startNodes(ctx, "bare", func(k int) Wrap {
		argv := []string{rr.r.Self, "bare", "node", "--listen", ":" + port}
		if k < s.N {
			argv = append(argv, "--next", net.JoinHostPort(addrs[k], port))
		}
		return Wrap{Ready: "127.0.0.1:" + port, Argv: append(argv, rr.outPath())}
	})
	if err != nil {
		return err
	}
	return rr.chain(ctx, nodes, []string{rr.r.Self, "bare", "send", s.Image.Path, net.JoinHostPort(addrs[0], port)}, nil)
}

// chain measures a sender (argv, in host 0) that sends through the
// started nodes: from the sender's start to its end, which comes after
// the last node has stored the image. check, when set, looks at each
// node's verdict with the per-node lines of the sender's log
// (herdSummary).
func (rr *run1) chain(ctx context.Context, nodes []*proc, argv []string, check func(v *Verdict, summary map[string]string)) error {
	sender, err := rr.start(ctx, 0, "sender", "sender", Wrap{Gate: true, Argv: argv})
	if err != nil {
		return err
	}
	for _, p := range append(nodes, sender) {
		if err := p.ready(ctx); err != nil {
			return err
		}
	}
	base, err := rr.usage()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := sender.go_(); err != nil {
		return err
	}
	sev, err := sender.done(ctx)
	rr.res.Wall = time.Since(start)
	if err != nil {
		return err
	}
	rr.res.SenderMaxRSSKiB = sev.MaxRSSKiB
	if err := rr.settle(ctx, nodes, base); err != nil {
		return err
	}
	addrs := rr.nodeAddrs()
	summary := herdSummary(sender.logPath, addrs)
	for i, p := range nodes {
		v := rr.verdict(ctx, p, addrs[i])
		if check != nil {
			check(&v, summary)
		}
		rr.res.Nodes = append(rr.res.Nodes, v)
	}
	if sev.Exit != 0 {
		return fmt.Errorf("%s exited %d (log %s)", strings.Join(argv[:min(len(argv), 2)], " "), sev.Exit, sender.logPath)
	}
	return nil
}

func (rr *run1) star(ctx context.Context) error {
	s := rr.s
	if s.Image.Cooked() {
		return errors.New("the star serves raw images only")
	}
	www := filepath.Join(rr.r.Work, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return err
	}
	name := filepath.Base(s.Image.Path)
	if err := os.Link(s.Image.Path, filepath.Join(www, name)); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("star web root: %w", err)
	}
	inv := filepath.Join(rr.r.Work, "inventory")
	if err := os.WriteFile(inv, []byte("# herd-bench: the lab's subnet, no nodes (no DHCP)\nsubnet 10.252.0.0/24\n"), 0o644); err != nil {
		return err
	}
	srvAddr := fmt.Sprintf("%s:%d", rr.r.Lab.Addr(0), httpPort)
	srv, err := rr.start(ctx, 0, "sender", "server", Wrap{
		Ready: srvAddr,
		Argv: []string{rr.r.Herd, "pxe", "-i", "eth0", "--inventory", inv, "--state-dir", filepath.Join(rr.r.Work, "state"),
			"--boot-dir", www, "--no-dhcp", "--no-ra", "--http-port", fmt.Sprint(httpPort)},
	})
	if err != nil {
		return err
	}
	if err := srv.ready(ctx); err != nil {
		return err
	}
	url := fmt.Sprintf("http://%s/files/%s", srvAddr, name)
	clients, err := rr.startNodes(ctx, "client", same(Wrap{Gate: true, Argv: []string{"curl", "-sS", "--fail", "-o", rr.outPath(), url}}))
	if err != nil {
		return err
	}
	for _, p := range clients {
		if err := p.ready(ctx); err != nil {
			return err
		}
	}
	base, err := rr.usage()
	if err != nil {
		return err
	}
	start := time.Now()
	for _, p := range clients {
		if err := p.go_(); err != nil {
			return err
		}
	}
	for _, p := range clients {
		if err := p.ended(ctx); err != nil {
			return err
		}
	}
	rr.res.Wall = time.Since(start)
	if err := rr.settle(ctx, clients, base); err != nil {
		return err
	}
	for i, p := range clients {
		v := rr.verdict(ctx, p, rr.r.Lab.Addr(i+1))
		rr.res.Nodes = append(rr.res.Nodes, v)
	}
	if err := srv.stop(); err != nil {
		return err
	}
	sev, err := srv.done(ctx)
	if err != nil {
		return err
	}
	rr.res.SenderMaxRSSKiB = sev.MaxRSSKiB
	return nil
}

// settle waits until every node's program ended, reads the CPU time
// used since base, and lets the nodes' wrappers go on to verify.
func (rr *run1) settle(ctx context.Context, nodes []*proc, base [2]CPU) error {
	for _, p := range nodes {
		if err := p.ended(ctx); err != nil {
			return err
		}
	}
	if err := rr.account(base); err != nil {
		return err
	}
	for _, p := range nodes {
		if !p.failed {
			if err := p.go_(); err != nil {
				return err
			}
		}
	}
	return nil
}

// verdict waits for a node's result and checks what it wrote.
func (rr *run1) verdict(ctx context.Context, p *proc, node string) Verdict {
	v := Verdict{Node: node}
	ev, err := p.done(ctx)
	if err != nil {
		v.Reason = err.Error()
		return v
	}
	v.MaxRSSKiB, v.SHA256 = ev.MaxRSSKiB, ev.SHA256
	switch {
	case ev.Error != "":
		v.Reason = ev.Error + " (log " + p.logPath + ")"
	case ev.SHA256 != rr.s.Image.SHA256:
		v.Reason = fmt.Sprintf("wrote %d bytes with SHA-256 %s, want %d bytes with %s", ev.Bytes, ev.SHA256, rr.s.Image.Size, rr.s.Image.SHA256)
	default:
		v.OK = true
	}
	return v
}

// usage reads both roles' CPU time.
func (rr *run1) usage() ([2]CPU, error) {
	var u [2]CPU
	var err error
	if u[0], err = rr.roles["sender"].Usage(); err != nil {
		return u, err
	}
	u[1], err = rr.roles["nodes"].Usage()
	return u, err
}

// account sets the run's CPU time: the roles' usage since base.
func (rr *run1) account(base [2]CPU) error {
	u, err := rr.usage()
	if err != nil {
		return err
	}
	rr.res.SenderCPU, rr.res.NodesCPU = u[0].Sub(base[0]), u[1].Sub(base[1])
	return nil
}

// herdSummary reads herd send's per-node lines ("NODE STATE BYTES
// SECONDS MB/s VERIFIED REASON") from its log.
func herdSummary(log string, nodes []string) map[string]string {
	out := map[string]string{}
	data, err := os.ReadFile(log)
	if err != nil {
		return out
	}
	want := map[string]bool{}
	for _, n := range nodes {
		want[n] = true
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && want[f[0]] {
			out[f[0]] = strings.Join(f, " ") + " "
		}
	}
	return out
}

// proc is a wrapper process started by the run.
type proc struct {
	name    string
	cmd     *exec.Cmd
	in      io.WriteCloser
	events  chan WrapEvent
	logPath string
	exited  chan struct{}
	// hasEnded: ended returned; failed: the wrapper gave its result (or
	// none) without an Ended event, early is that result.
	hasEnded, failed bool
	early            *WrapEvent
}

// start starts a wrapper in host k, inside role's cgroup.
func (rr *run1) start(ctx context.Context, k int, role, name string, w Wrap) (*proc, error) {
	p := &proc{name: name, events: make(chan WrapEvent, 4), exited: make(chan struct{}), logPath: filepath.Join(rr.logDir, name+".log")}
	log, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	p.cmd = rr.r.Lab.Command(ctx, k, rr.r.Self, append([]string{"wrap"}, w.Args()...)...)
	p.cmd.Stderr = log
	// The wrapper passes SIGTERM on to its program (herd pxe).
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGTERM) }
	p.cmd.WaitDelay = 10 * time.Second
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	closeFD, err := rr.roles[role].Place(p.cmd)
	if err != nil {
		return nil, err
	}
	err = p.cmd.Start()
	closeFD()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	rr.procs = append(rr.procs, p)
	go func() {
		dec := json.NewDecoder(bufio.NewReader(out))
		for {
			var ev WrapEvent
			if err := dec.Decode(&ev); err != nil {
				break
			}
			p.events <- ev
		}
		_ = p.cmd.Wait()
		close(p.events)
		close(p.exited)
	}()
	return p, nil
}

// ready waits for the wrapper's ready event.
func (p *proc) ready(ctx context.Context) error {
	select {
	case ev, ok := <-p.events:
		switch {
		case !ok:
			return fmt.Errorf("%s ended before it was ready (log %s)", p.name, p.logPath)
		case ev.Ready:
			return nil
		default:
			return fmt.Errorf("%s did not get ready: %s (log %s)", p.name, ev.Error, p.logPath)
		}
	case <-ctx.Done():
		return fmt.Errorf("%s: not ready: %w", p.name, context.Cause(ctx))
	}
}

// go_ releases a gated wrapper.
func (p *proc) go_() error {
	if _, err := io.WriteString(p.in, "go\n"); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	return nil
}

// ended waits until the wrapper's program ended (its Ended event, or a
// result that came first because the wrapper failed; done then returns
// that result).
func (p *proc) ended(ctx context.Context) error {
	if p.hasEnded {
		return nil
	}
	select {
	case ev, ok := <-p.events:
		p.hasEnded = true
		switch {
		case !ok:
			p.failed = true
		case ev.Done:
			p.failed, p.early = true, &ev
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: did not end: %w", p.name, context.Cause(ctx))
	}
}

// done waits for the wrapper's result.
func (p *proc) done(ctx context.Context) (WrapEvent, error) {
	if p.early != nil {
		return *p.early, nil
	}
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				return WrapEvent{}, fmt.Errorf("%s ended without a result (log %s)", p.name, p.logPath)
			}
			if ev.Done {
				return ev, nil
			}
		case <-ctx.Done():
			return WrapEvent{}, fmt.Errorf("%s: no result: %w", p.name, context.Cause(ctx))
		}
	}
}

// stop asks the wrapper (and so its program) to end.
func (p *proc) stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	return nil
}

// stopAll ends every wrapper still running (a failed run), by PID, and
// waits for them, bounded.
func (rr *run1) stopAll() {
	for _, p := range rr.procs {
		select {
		case <-p.exited:
			continue
		default:
		}
		_ = p.in.Close()
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
}
