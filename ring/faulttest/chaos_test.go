//go:build nettest

package faulttest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herdproject/herd/internal/netnstest"
)

// TestChaos is issue 16's "chaos, measured": a ring of N real herd recv
// nodes behind impaired 100 Mbit/s ports (tc netem: 1 % loss, 5 ms ± 1 ms
// delay, reordering; without netem in the kernel, what tc offers: see
// chaosShape) runs one clean session, then R seeded sessions with
// 2-4 concurrent faults each, drawn from: kill (sometimes restarted a few
// seconds later, to join late), freeze then thaw, freeze for good, link
// down then up, disk full, slow disk; at the first, last, adjacent and
// middle positions, each when the node's output reached a random fraction
// of the image. For every run it asserts that every healthy node ended
// done and verified with the image's bytes; every faulty node failed with
// a reason, or ended done and verified with the image's bytes (it joined
// late or recovered); no node is done with other bytes (a false success);
// the session ended within a bound computed from the faults (chaosBound).
//
// Environment: HERD_CHAOS_NODES (8), HERD_CHAOS_RUNS (3), HERD_CHAOS_SEED
// (1: run i uses seed SEED+i, so HERD_CHAOS_SEED=s HERD_CHAOS_RUNS=1
// replays the run of seed s), HERD_CHAOS_MIB (the image: 48 up to 8
// nodes, 96 beyond), HERD_CHAOS_TABLE (write the markdown report there),
// HERD_CHAOS_REV (the engine's version, for the report),
// HERD_CHAOS_LOGS (every run's logs go to a directory under it, seed-S;
// unset, only failing runs' logs are kept, under $TMPDIR, as the test's
// output says).
func TestChaos(t *testing.T) {
	cfg := chaosConfigFromEnv(t)
	r := newRing(t, cfg.nodes)
	cfg.impairment = chaosShape(r, cfg.rate)
	in := r.input(cfg.size)
	want := sum(t, in)
	t.Logf("chaos: %d nodes, %d MiB, %d runs from seed %d; ports: %s",
		cfg.nodes, cfg.size>>20, cfg.runs, cfg.seed, cfg.impairment.desc)

	clean := chaosRun(r, cfg, in, want, -1, nil)
	if len(clean.problems) > 0 {
		t.Fatalf("the clean session failed (seed none):\n%s", strings.Join(clean.problems, "\n"))
	}
	t.Logf("clean session: %.1fs", clean.elapsed.Seconds())
	cfg.clean = clean.elapsed

	var results []*chaosResult
	for i := range cfg.runs {
		seed := cfg.seed + int64(i)
		faults := chaosDraw(rand.New(rand.NewPCG(uint64(seed), 0x6865726463686173)), cfg.nodes)
		res := chaosRun(r, cfg, in, want, seed, faults)
		results = append(results, res)
		t.Logf("run %d (seed %d): %s; exit %d after %.1fs (clean %.1fs, bound %.1fs)", i+1, seed, chaosFaultList(res.faults),
			res.code, res.elapsed.Seconds(), cfg.clean.Seconds(), res.bound.Seconds())
		for _, p := range res.problems {
			t.Errorf("run %d (seed %d): %s", i+1, seed, p)
		}
		if len(res.problems) > 0 {
			t.Logf("run %d (seed %d): logs in %s", i+1, seed, res.logs)
		}
	}
	table := chaosTable(cfg, results)
	t.Logf("\n%s", table)
	if cfg.table != "" {
		if err := os.WriteFile(cfg.table, []byte(chaosReport(cfg, table)), 0o644); err != nil {
			t.Errorf("write %s: %v", cfg.table, err)
		}
	}
}

// chaosConfig is a TestChaos's parameters.
type chaosConfig struct {
	nodes, runs int
	seed        int64
	size        int64
	rate        int64 // bits per second of every port
	table, logs string
	keepLogs    bool          // every run's, not only the failing ones' (HERD_CHAOS_LOGS set)
	rev         string        // HERD_CHAOS_REV: the engine's version, for the report
	clean       time.Duration // the clean session's time, once measured
	impairment  chaosImpairment
}

// The fixed parameters of a chaos session.
const (
	chaosBypass    = 2 * time.Second // herd send --bypass-timeout
	chaosJoinEvery = 2 * time.Second // how often herd send tries failed nodes (sender.joinEvery)
	chaosSlack     = 1.5             // the clean time's factor in the bound
	chaosConst     = 15 * time.Second
	chaosRate      = 100_000_000
)

func chaosConfigFromEnv(t *testing.T) chaosConfig {
	t.Helper()
	num := func(name string, def int64) int64 {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			t.Fatalf("%s=%q: want a number", name, v)
		}
		return n
	}
	c := chaosConfig{rate: chaosRate, table: os.Getenv("HERD_CHAOS_TABLE"), logs: os.Getenv("HERD_CHAOS_LOGS"), rev: os.Getenv("HERD_CHAOS_REV")}
	c.nodes = int(num("HERD_CHAOS_NODES", 8))
	c.runs = int(num("HERD_CHAOS_RUNS", 3))
	c.seed = num("HERD_CHAOS_SEED", 1)
	mib := int64(48)
	if c.nodes > 8 {
		mib = 96
	}
	c.size = num("HERD_CHAOS_MIB", mib) << 20
	if c.nodes < 4 || c.nodes > 200 {
		t.Fatalf("HERD_CHAOS_NODES=%d: want 4 to 200 (the faults need first, last, a middle and an adjacent pair)", c.nodes)
	}
	if c.size < 4<<20 {
		t.Fatalf("HERD_CHAOS_MIB: want at least 4")
	}
	c.keepLogs = c.logs != ""
	if c.logs == "" {
		c.logs = filepath.Join(os.TempDir(), fmt.Sprintf("herd-chaos-%d", os.Getpid()))
	}
	return c
}

// The ports. A hop from node i to node i+1 leaves node i's eth0 (its
// NIC: a token bucket at the port's rate, as setRate's) and enters node
// i+1 through the switch's port to it (the veth's peer on the hub's
// bridge), where the impairments are: every packet, data or
// acknowledgement, is impaired once per hop.
//
// With sch_netem, the switch port is one netem: rate (serialisation at
// the port's rate, before the delay, so the jitter does not reorder by
// itself), delay 5 ms ± 1 ms, loss 1 %, and reorder 1 % (those packets
// skip the delay). Kernels without netem (CONFIG_NET_SCH_NETEM unset, as
// the 6.18 kernel of the machine that made docs/chaos.md) get what their
// tc offers: the switch port a token bucket at the port's rate, and on
// the node's eth0 ingress two classic-BPF filters that draw a random
// number per packet (ld rand): 1 % dropped (direct action: shot), and 1 %
// redirected through an IFB device, which re-injects them from a tasklet
// after the rest of their receive batch (reordered by up to a few dozen
// packets). No delay: that takes netem.
type chaosImpairment struct {
	netem bool
	desc  string
}

func chaosNodeQdisc(bps int64) []string {
	return strings.Fields(fmt.Sprintf("tbf rate %dbit burst 32kb latency 200ms", bps))
}

func chaosNetem(bps int64) []string {
	if s := os.Getenv("HERD_CHAOS_NETEM"); s != "" {
		return strings.Fields(s)
	}
	return strings.Fields(fmt.Sprintf("netem rate %dbit delay 5ms 1ms loss 1%% reorder 1%% 25%% limit 10000", bps))
}

// chaosRandomBPF is a classic BPF program (tc's bytecode syntax) that
// returns hit for a fraction p of the packets and miss for the others.
func chaosRandomBPF(p float64, hit, miss uint32) string {
	const ldRand = 0xfffff000 + 56 // SKF_AD_OFF + SKF_AD_RANDOM
	k := uint64((1 - p) * (1 << 32))
	return fmt.Sprintf("4,32 0 0 %d,37 0 1 %d,6 0 0 %d,6 0 0 %d,", uint32(ldRand), k, hit, miss)
}

// chaosShape gives every node's port its qdiscs and filters, netem's when
// the kernel has it.
func chaosShape(r *ring, bps int64) chaosImpairment {
	r.t.Helper()
	tc := func(ns string, args ...string) { netnstest.Run(r.t, "tc", append([]string{"-n", ns}, args...)...) }
	imp := chaosImpairment{netem: true}
	for i, nd := range r.nodes {
		tc(nd.ns.Name, append([]string{"qdisc", "replace", "dev", "eth0", "root"}, chaosNodeQdisc(bps)...)...)
		if imp.netem {
			args := append([]string{"-n", r.hub.Name, "qdisc", "replace", "dev", nd.peer, "root"}, chaosNetem(bps)...)
			out, err := exec.Command("tc", args...).CombinedOutput()
			switch {
			case err == nil:
				imp.desc = "NIC " + strings.Join(chaosNodeQdisc(bps), " ") + "; switch port " + strings.Join(chaosNetem(bps), " ")
				continue
			case i == 0 && strings.Contains(string(out), "qdisc kind is unknown"):
				imp.netem = false
			default:
				r.t.Fatalf("tc %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		tc(r.hub.Name, append([]string{"qdisc", "replace", "dev", nd.peer, "root"}, chaosNodeQdisc(bps)...)...)
		nd.ns.IP("link", "add", "ifb0", "type", "ifb")
		nd.ns.IP("link", "set", "ifb0", "up")
		tc(nd.ns.Name, "qdisc", "add", "dev", "eth0", "ingress")
		tc(nd.ns.Name, "filter", "add", "dev", "eth0", "parent", "ffff:", "pref", "1", "bpf", "da", "bytecode",
			chaosRandomBPF(0.01, 2 /* TC_ACT_SHOT */, 0xffffffff /* TC_ACT_UNSPEC: next filter */))
		tc(nd.ns.Name, "filter", "add", "dev", "eth0", "parent", "ffff:", "pref", "2", "bpf", "bytecode",
			chaosRandomBPF(0.01, 0xffffffff /* match */, 0), "action", "mirred", "egress", "redirect", "dev", "ifb0")
	}
	if !imp.netem {
		imp.desc = fmt.Sprintf("no sch_netem in this kernel: NIC and switch port %s; loss 1%% and reordering 1%% (through an IFB) at the node's ingress; no delay",
			strings.Join(chaosNodeQdisc(bps), " "))
	}
	return imp
}

// chaosKind is what goes wrong with a node.
type chaosKind int

const (
	chaosKill        chaosKind = iota // SIGKILL, for good
	chaosKillRestart                  // SIGKILL, a new herd recv in its place after hold
	chaosFreezeThaw                   // SIGSTOP, SIGCONT after hold
	chaosFreeze                       // SIGSTOP for good
	chaosLinkDown                     // eth0 down, up after hold
	chaosDiskFull                     // its file system (a tmpfs of its own) filled up
	chaosSlowDisk                     // its output a FIFO read at chaosSlowRate from then on
	chaosKinds
)

var chaosKindNames = [chaosKinds]string{"kill", "kill+restart", "freeze+thaw", "freeze", "link down+up", "disk full", "slow disk"}

func (k chaosKind) String() string { return chaosKindNames[k] }

// chaosSlowRate is a slow disk's pace: a third of the link's.
const chaosSlowRate = 4 << 20

// chaosFault is one fault of a run.
type chaosFault struct {
	kind chaosKind
	node int    // 1-based ring position
	pos  string // first, last, adjacent, middle
	frac float64
	hold time.Duration // thaw, link up or restart after this

	// After the run.
	fired   bool
	at      time.Duration // since the sender started
	undone  time.Duration // thawed, link up, restarted (since the sender started)
	note    string
	outcome string // how the node ended: failed (the reason's first words), recovered, joined late
	fifo    *chaosFIFO
	tmpfs   string // the node's own file system, mounted for the run
	restart string // the restarted process's log
}

func (f *chaosFault) String() string {
	s := fmt.Sprintf("%s@%d(%s,%.0f%%", f.kind, f.node, f.pos, 100*f.frac)
	if f.hold > 0 {
		s += fmt.Sprintf(",%.1fs", f.hold.Seconds())
	}
	s += ")"
	switch {
	case !f.fired && f.outcome == "":
		s += ": not fired"
	case f.outcome != "":
		s += ": " + f.outcome
	}
	if f.kind == chaosKillRestart && f.fired && f.restart == "" {
		s += " (not restarted: the session had ended)"
	}
	return s
}

func chaosFaultList(fs []*chaosFault) string {
	if len(fs) == 0 {
		return "none"
	}
	var s []string
	for _, f := range fs {
		s = append(s, f.String())
	}
	return strings.Join(s, " ")
}

// chaosDraw draws 2-4 faults on distinct nodes of a ring of n: each at
// the first, the last, a middle node or an adjacent pair (two faults),
// of a random kind, at a random fraction of the image (10-80 %), held
// (thaw, link up) 1-5 s, or restarted after 1-3 s.
func chaosDraw(rng *rand.Rand, n int) []*chaosFault {
	want := 2 + rng.IntN(3)
	used := map[int]bool{}
	var nodes []int
	var pos []string
	for try := 0; len(nodes) < want && try < 100; try++ {
		switch p := []string{"first", "last", "adjacent", "middle"}[rng.IntN(4)]; p {
		case "first", "last":
			i := 1
			if p == "last" {
				i = n
			}
			if !used[i] {
				used[i] = true
				nodes, pos = append(nodes, i), append(pos, p)
			}
		case "middle":
			// The middle half of the ring, away from both ends.
			i := n/4 + 1 + rng.IntN(max(n/2, 1))
			if i > 1 && i < n && !used[i] {
				used[i] = true
				nodes, pos = append(nodes, i), append(pos, p)
			}
		case "adjacent":
			if want-len(nodes) < 2 {
				continue
			}
			i := 1 + rng.IntN(n-1)
			if !used[i] && !used[i+1] {
				used[i], used[i+1] = true, true
				nodes, pos = append(nodes, i, i+1), append(pos, p, p)
			}
		}
	}
	var fs []*chaosFault
	for j, i := range nodes {
		f := &chaosFault{kind: chaosKind(rng.IntN(int(chaosKinds))), node: i, pos: pos[j], frac: 0.1 + 0.7*rng.Float64()}
		switch f.kind {
		case chaosFreezeThaw, chaosLinkDown:
			f.hold = time.Duration(1000+rng.IntN(4000)) * time.Millisecond
		case chaosKillRestart:
			// Back soon enough to join a short session late.
			f.hold = time.Duration(1000+rng.IntN(2000)) * time.Millisecond
		}
		fs = append(fs, f)
	}
	sort.Slice(fs, func(a, b int) bool { return fs[a].node < fs[b].node })
	return fs
}

// chaosResult is one session's outcome.
type chaosResult struct {
	seed          int64 // -1: the clean session
	faults        []*chaosFault
	code          int
	elapsed       time.Duration
	bound         time.Duration
	healthyFailed int
	falseSuccess  int
	recovered     int  // faulty nodes that ended done and verified
	failed        int  // faulty nodes that failed with a reason
	hung, over    bool // stopped at its deadline; past its bound
	problems      []string
	logs          string // where the run's logs were kept
}

// chaosRun prepares the nodes for the faults, runs one session and judges
// it. faults nil is the clean session.
func chaosRun(r *ring, cfg chaosConfig, in, want string, seed int64, faults []*chaosFault) *chaosResult {
	t := r.t
	t.Helper()
	res := &chaosResult{seed: seed, faults: faults}
	byNode := map[int]*chaosFault{}
	for _, f := range faults {
		byNode[f.node] = f
	}
	defer chaosTeardown(r, faults)
	for i, nd := range r.nodes {
		os.Remove(chaosRestartLog(r, nd))
		if err := os.RemoveAll(nd.dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(nd.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		f := byNode[i+1]
		if f == nil {
			continue
		}
		switch f.kind {
		case chaosDiskFull:
			// Room for the image at set-up (the node checks), filled
			// when the fault fires.
			netnstest.Run(t, "mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", cfg.size+8<<20), "herd-chaos", nd.dir)
			f.tmpfs = nd.dir
		case chaosSlowDisk:
			f.fifo = chaosStartFIFO(t, filepath.Join(nd.dir, "out.img"), int64(f.frac*float64(cfg.size)), chaosSlowRate)
		}
	}
	r.start()
	s := chaosSend(r, cfg, in, faults)
	res.code, res.elapsed = s.code, s.elapsed
	res.bound = chaosBound(cfg, faults, false)
	chaosJudge(r, cfg, s, want, res)
	res.hung = s.hung
	if s.hung {
		res.problems = append(res.problems, fmt.Sprintf("HANG: herd send did not end within %v; stopped (SIGTERM)", s.deadline.Round(time.Second)))
	}
	if len(res.problems) > 0 || cfg.keepLogs {
		res.logs = chaosKeepLogs(r, cfg, s, res)
	}
	return res
}

// chaosSession is a finished sender run: its summary (standard output)
// and log (standard error) apart.
type chaosSession struct {
	code      int
	stdout    string
	stderrLog string // path
	elapsed   time.Duration
	deadline  time.Duration
	hung      bool
}

// chaosSend runs herd send from the hub while the faults fire, each from
// a goroutine of its own once its node's output holds its fraction of the
// image; faults still waiting when the sender ends never fire, and those
// held (frozen, link down) are undone at once then.
func chaosSend(r *ring, cfg chaosConfig, in string, faults []*chaosFault) *chaosSession {
	t := r.t
	t.Helper()
	stamp := time.Now().UnixNano()
	outPath := filepath.Join(r.dir, fmt.Sprintf("send-%d.out", stamp))
	errPath := filepath.Join(r.dir, fmt.Sprintf("send-%d.log", stamp))
	stdout, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(errPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd := r.hub.Command(herdBin, "send", "-v", "-H", r.addrs(), "-I", in, "-O", "out.img", "--bypass-timeout", chaosBypass.String())
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// The bound of the wait: past the run's own bound (with every fault
	// counted) the run has failed already; the summary after SIGTERM still
	// says how each node was then.
	deadline := chaosBound(cfg, faults, true) + 30*time.Second
	if cfg.clean == 0 {
		deadline = sendTimeout
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	var wg sync.WaitGroup
	for _, f := range faults {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chaosFire(r, cfg, f, start, exited)
		}()
	}
	s := &chaosSession{stderrLog: errPath, deadline: deadline}
	select {
	case <-exited:
	case <-time.After(deadline):
		s.hung = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	s.elapsed = time.Since(start)
	wg.Wait()
	s.code = cmd.ProcessState.ExitCode()
	b, _ := os.ReadFile(outPath)
	s.stdout = string(b)
	return s
}

// chaosFire waits until f's node reached f.frac of the image, does the
// fault and, for the held ones, undoes it after f.hold (at once when the
// sender exits first).
func chaosFire(r *ring, cfg chaosConfig, f *chaosFault, start time.Time, exited <-chan struct{}) {
	nd := r.nodes[f.node-1]
	target := int64(f.frac * float64(cfg.size))
	progress := func() int64 {
		if f.fifo != nil {
			return f.fifo.read.Load()
		}
		fi, err := os.Stat(filepath.Join(nd.dir, "out.img"))
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for progress() < target {
		select {
		case <-exited:
			f.note = fmt.Sprintf("not fired: the session ended at %d of %d bytes", progress(), target)
			return
		case <-tick.C:
		}
	}
	f.fired, f.at = true, time.Since(start)
	// hold waits f.hold, or less when the sender exits.
	hold := func() {
		select {
		case <-time.After(f.hold):
		case <-exited:
		}
		f.undone = time.Since(start)
	}
	var err error
	switch f.kind {
	case chaosKill, chaosKillRestart:
		err = nd.cmd.Process.Signal(syscall.SIGKILL)
		if err == nil && f.kind == chaosKillRestart {
			select {
			case <-nd.done:
			case <-time.After(10 * time.Second):
				err = errors.New("the killed node did not end within 10s")
			}
			if err == nil {
				hold()
				select {
				case <-exited:
					f.note = "not restarted: the session had ended"
				default:
					f.restart = chaosRestart(r, nd)
				}
			}
		}
	case chaosFreeze:
		err = nd.cmd.Process.Signal(syscall.SIGSTOP)
	case chaosFreezeThaw:
		if err = nd.cmd.Process.Signal(syscall.SIGSTOP); err == nil {
			hold()
			err = nd.cmd.Process.Signal(syscall.SIGCONT)
		}
	case chaosLinkDown:
		if err = chaosLink(nd, "down"); err == nil {
			hold()
			err = chaosLink(nd, "up")
		}
	case chaosDiskFull:
		err = chaosFill(filepath.Join(nd.dir, "filler"), cfg.size+8<<20)
	case chaosSlowDisk:
		// The reader slows down by itself at the fraction.
	}
	if err != nil {
		f.note = "fault: " + err.Error()
	}
}

// chaosLink sets node nd's eth0 up or down (a cable pulled), bounded by
// netnstest.CommandTimeout.
func chaosLink(nd *node, state string) error {
	out, err := exec.Command("timeout", fmt.Sprint(int(netnstest.CommandTimeout.Seconds())), "ip", "-n", nd.ns.Name, "link", "set", "eth0", state).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip link set eth0 %s: %v: %s", state, err, out)
	}
	return nil
}

// chaosFill writes filler until its file system is full (ENOSPC), at
// most limit bytes.
func chaosFill(path string, limit int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{0xa5}, 1<<20)
	for n := int64(0); n < limit; n += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
	return fmt.Errorf("%s: the file system took %d bytes of filler and is not full", path, limit)
}

// chaosRestart starts a new herd recv for nd (its old one killed) in the
// same namespace and directory, its log apart, and returns the log's path.
// It does not wait for it to answer: herd send finds it when it does.
func chaosRestart(r *ring, nd *node) string {
	log := chaosRestartLog(r, nd)
	f, err := os.Create(log)
	if err != nil {
		return ""
	}
	defer f.Close()
	cmd := nd.ns.Command(herdBin, "recv", "--listen", nd.addr, "-v")
	cmd.Dir, cmd.Stdout, cmd.Stderr = nd.dir, f, f
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(f, "chaos: restart: %v\n", err)
		return log
	}
	nd.cmd, nd.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(nd.done)
	return log
}

func chaosRestartLog(r *ring, nd *node) string {
	return filepath.Join(r.dir, filepath.Base(nd.dir)+"-restart.log")
}

// chaosTeardown ends every node's process (thawing it first) and undoes
// the faults' preparations: links up, FIFO readers ended, file systems
// unmounted.
func chaosTeardown(r *ring, faults []*chaosFault) {
	t := r.t
	for _, nd := range r.nodes {
		nd.stop()
	}
	for _, f := range faults {
		nd := r.nodes[f.node-1]
		if f.kind == chaosLinkDown {
			if err := chaosLink(nd, "up"); err != nil {
				t.Errorf("node %d: %v", f.node, err)
			}
		}
		if f.fifo != nil {
			f.fifo.end()
		}
		if f.tmpfs != "" {
			if out, err := exec.Command("umount", f.tmpfs).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", f.tmpfs, err, out)
				_ = exec.Command("umount", "-l", f.tmpfs).Run()
			}
			f.tmpfs = ""
		}
	}
}

// chaosFIFO is a slow disk: the node's output is a FIFO this reads, at
// full speed up to slowAt bytes, then at rate; it hashes what it reads.
type chaosFIFO struct {
	path   string
	slowAt int64
	rate   int64
	read   atomic.Int64
	stop   chan struct{}
	done   chan struct{}
	sum    string // set before done closes, at the end of the stream
	err    error
}

func chaosStartFIFO(t testing.TB, path string, slowAt, rate int64) *chaosFIFO {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatalf("mkfifo %s: %v", path, err)
	}
	c := &chaosFIFO{path: path, slowAt: slowAt, rate: rate, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

func (c *chaosFIFO) run() {
	defer close(c.done)
	f, err := os.OpenFile(c.path, os.O_RDONLY, 0) // until the node opens it
	if err != nil {
		c.err = err
		return
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var slowSince time.Time
	var slowBytes int64
	for {
		n, err := f.Read(buf)
		h.Write(buf[:n])
		total := c.read.Add(int64(n))
		if total >= c.slowAt && n > 0 {
			if slowSince.IsZero() {
				slowSince = time.Now()
			}
			slowBytes += int64(n)
			pace := time.Until(slowSince.Add(time.Duration(float64(slowBytes) / float64(c.rate) * float64(time.Second))))
			select {
			case <-time.After(pace):
			case <-c.stop:
				c.err = errors.New("stopped")
				return
			}
		}
		if err == io.EOF {
			c.sum = fmt.Sprintf("%x", h.Sum(nil))
			return
		}
		if err != nil {
			c.err = err
			return
		}
	}
}

// end stops the reader, also when it still waits for a writer, and waits
// (bounded) until it has.
func (c *chaosFIFO) end() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-c.done:
			return
		default:
		}
		if w, err := os.OpenFile(c.path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	}
}

// chaosBound is how long a run with these faults may take: the clean
// session's time × chaosSlack, plus for every fault that fired:
//   - kill, freeze, disk full: 3 × the bypass timeout (a node that makes
//     no progress is bypassed within 2-3 bypass timeouts; one that resets
//     at once);
//   - freeze then thaw, link down then up: that, plus 2 × how long it was
//     held (the hold itself, and TCP's retransmission backoff after it
//     when the node was not bypassed);
//   - slow disk: what is left of the image at the slow disk's rate;
//   - kill then restart: the bypass as for a kill, and the late joiner's
//     own session: the restart, the sender's next try (every 2 s), and a
//     whole clean session's time × chaosSlack to feed it from the start --
//     the run's end is bounded by the later of that and the clean session;
//
// plus chaosConst (15 s) for set-up, the summary and the machine's load.
// Faults that never fired cost nothing; before the run (before true) all
// are counted.
func chaosBound(cfg chaosConfig, faults []*chaosFault, before bool) time.Duration {
	base := time.Duration(chaosSlack * float64(cfg.clean))
	end := base
	var extra time.Duration
	for _, f := range faults {
		if !before && !f.fired {
			continue
		}
		switch f.kind {
		case chaosKill, chaosFreeze, chaosDiskFull:
			extra += 3 * chaosBypass
		case chaosFreezeThaw, chaosLinkDown:
			extra += 3*chaosBypass + 2*f.hold
		case chaosSlowDisk:
			extra += time.Duration((1 - f.frac) * float64(cfg.size) / chaosSlowRate * float64(time.Second))
		case chaosKillRestart:
			extra += 3 * chaosBypass
			at := f.at
			if !f.fired {
				at = time.Duration(f.frac * float64(cfg.clean)) // not run yet: where it will be
			}
			end = max(end, at+f.hold+chaosJoinEvery+base)
		}
	}
	return end + extra + chaosConst
}

// chaosJudge checks the run's summary and outputs against the rules.
func chaosJudge(r *ring, cfg chaosConfig, s *chaosSession, want string, res *chaosResult) {
	faulty := map[int]*chaosFault{}
	fifos := map[int]*chaosFIFO{}
	for _, f := range res.faults {
		if f.fired {
			faulty[f.node] = f
		}
		if f.fifo != nil {
			fifos[f.node] = f.fifo
		}
		if strings.HasPrefix(f.note, "fault:") {
			res.problems = append(res.problems, fmt.Sprintf("node %d: could not inject %s: %s", f.node, f.kind, f.note))
		}
	}
	type line struct{ state, verified, reason string }
	lines := map[string]line{}
	for _, m := range summaryRE.FindAllStringSubmatch(s.stdout, -1) {
		lines[m[1]] = line{m[2], m[3], strings.TrimSpace(m[4])}
	}
	allDone := true
	for i, nd := range r.nodes {
		l, ok := lines[nd.addr]
		f := faulty[i+1]
		who := fmt.Sprintf("healthy node %d (%s)", i+1, nd.addr)
		if f != nil {
			who = fmt.Sprintf("node %d (%s, %s at %.1fs)", i+1, nd.addr, f.kind, f.at.Seconds())
		}
		if !ok {
			res.problems = append(res.problems, fmt.Sprintf("%s: no line in the summary", who))
			allDone = false
			if f == nil {
				res.healthyFailed++
			}
			continue
		}
		done := l.state == "done" && l.verified == "yes"
		if !done {
			allDone = false
		}
		// The bytes the node ended with.
		var got string
		var gotErr error
		if fifo := fifos[i+1]; fifo != nil {
			select {
			case <-fifo.done:
				got, gotErr = fifo.sum, fifo.err
			case <-time.After(10 * time.Second):
				gotErr = errors.New("the FIFO's reader has not reached the end of the stream")
			}
		} else {
			got, gotErr = chaosSum(filepath.Join(nd.dir, "out.img"))
		}
		correct := gotErr == nil && got == want
		if l.state == "done" && !correct {
			res.falseSuccess++
			res.problems = append(res.problems, fmt.Sprintf("FALSE SUCCESS: %s: the summary says done (verified %s), its output %s", who, l.verified, chaosWhat(got, gotErr)))
		}
		switch {
		case f == nil && !(done && correct):
			res.healthyFailed++
			res.problems = append(res.problems, fmt.Sprintf("%s: %s, verified %s, %q; output %s", who, l.state, l.verified, l.reason, chaosWhat(got, gotErr)))
		case f == nil:
		case done && correct:
			res.recovered++
			f.outcome = "recovered"
			if strings.HasPrefix(l.reason, "joined late") {
				f.outcome = "joined late"
			}
		case l.state == "failed" && l.reason != "":
			res.failed++
			f.outcome = "failed, " + chaosShort(l.reason)
		case l.state != "done":
			res.problems = append(res.problems, fmt.Sprintf("%s: %s, verified %s, reason %q: want failed with a reason, or done and verified", who, l.state, l.verified, l.reason))
		}
	}
	switch {
	case allDone && s.code != 0:
		res.problems = append(res.problems, fmt.Sprintf("herd send exited %d with every node done and verified", s.code))
	case !allDone && s.code == 0:
		res.problems = append(res.problems, "herd send exited 0 with a node not done")
	case s.code != 0 && s.code != 1 && !s.hung:
		res.problems = append(res.problems, fmt.Sprintf("herd send exited %d", s.code))
	}
	if cfg.clean > 0 && s.elapsed > res.bound {
		res.over = true
		res.problems = append(res.problems, fmt.Sprintf("the session took %.1fs, over its bound %.1fs", s.elapsed.Seconds(), res.bound.Seconds()))
	}
}

// chaosShort is a reason's first words, for the table.
func chaosShort(reason string) string {
	w := strings.Fields(reason)
	if len(w) > 3 {
		w = w[:3]
	}
	return strings.TrimRight(strings.Join(w, " "), ":,")
}

func chaosWhat(got string, err error) string {
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return "sha256 " + got[:16] + "..."
}

// chaosSum is sum's, returning the error instead of failing the test (an
// output may be missing).
func chaosSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// chaosKeepLogs copies a run's logs (the sender's summary and
// log, every node's log) to cfg.logs/seed-S and returns that directory.
func chaosKeepLogs(r *ring, cfg chaosConfig, s *chaosSession, res *chaosResult) string {
	dir := filepath.Join(cfg.logs, fmt.Sprintf("seed-%d", res.seed))
	if res.seed < 0 {
		dir = filepath.Join(cfg.logs, "clean")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "(not kept: " + err.Error() + ")"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "faults: %s\nexit %d after %.1fs (bound %.1fs)\n", chaosFaultList(res.faults), s.code, s.elapsed.Seconds(), res.bound.Seconds())
	for _, f := range res.faults {
		fmt.Fprintf(&b, "node %d %s: fired %v at %.2fs, undone at %.2fs %s\n", f.node, f.kind, f.fired, f.at.Seconds(), f.undone.Seconds(), f.note)
	}
	b.WriteString(strings.Join(res.problems, "\n") + "\n")
	_ = os.WriteFile(filepath.Join(dir, "faults.txt"), []byte(b.String()), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "send.out"), []byte(s.stdout), 0o644)
	chaosCopy(s.stderrLog, filepath.Join(dir, "send.log"))
	for _, nd := range r.nodes {
		chaosCopy(nd.log, filepath.Join(dir, filepath.Base(nd.log)))
		restart := chaosRestartLog(r, nd)
		chaosCopy(restart, filepath.Join(dir, filepath.Base(restart)))
	}
	return dir
}

func chaosCopy(from, to string) {
	if b, err := os.ReadFile(from); err == nil {
		_ = os.WriteFile(to, b, 0o644)
	}
}

// chaosTable is the markdown report of the runs.
func chaosTable(cfg chaosConfig, results []*chaosResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| run | seed | faults (kind@node(position, at %% of the image, held)) | healthy failed | false successes | faulty: failed / recovered | time (s) | over clean (s) | bound (s) | verdict |\n")
	fmt.Fprintf(&b, "| ---: | ---: | --- | ---: | ---: | :---: | ---: | ---: | ---: | --- |\n")
	var kinds [chaosKinds]int
	var fired, healthyFailed, falseSuccess, ok int
	for i, res := range results {
		var fs []string
		for _, f := range res.faults {
			if f.fired {
				kinds[f.kind]++
				fired++
			}
			fs = append(fs, f.String())
		}
		var why []string
		for _, c := range []struct {
			is   bool
			what string
		}{{res.healthyFailed > 0, "healthy failed"}, {res.falseSuccess > 0, "false success"}, {res.hung, "hang"}, {res.over, "over bound"}} {
			if c.is {
				why = append(why, c.what)
			}
		}
		verdict := "ok"
		switch {
		case len(res.problems) == 0:
			ok++
		case len(why) == 0:
			verdict = "FAIL"
		default:
			verdict = "FAIL: " + strings.Join(why, ", ")
		}
		healthyFailed += res.healthyFailed
		falseSuccess += res.falseSuccess
		fmt.Fprintf(&b, "| %d | %d | %s | %d | %d | %d / %d | %.1f | %+.1f | %.1f | %s |\n", i+1, res.seed, strings.Join(fs, " "),
			res.healthyFailed, res.falseSuccess, res.failed, res.recovered, res.elapsed.Seconds(), (res.elapsed - cfg.clean).Seconds(), res.bound.Seconds(), verdict)
	}
	fmt.Fprintf(&b, "\n%d runs, %d passed; %d faults injected:", len(results), ok, fired)
	for k := range chaosKinds {
		fmt.Fprintf(&b, " %s %d;", chaosKind(k), kinds[k])
	}
	fmt.Fprintf(&b, " healthy nodes failed: %d; false successes: %d. Clean session: %.1fs.\n", healthyFailed, falseSuccess, cfg.clean.Seconds())
	if ok == len(results) {
		return b.String()
	}
	// What went wrong, for whoever reads the table without the test's log.
	const most, width = 6, 240
	b.WriteString("\nFailures (a hang's nodes still waiting when herd send was stopped say \"interrupted\"):\n\n")
	for i, res := range results {
		if len(res.problems) == 0 {
			continue
		}
		fmt.Fprintf(&b, "- run %d (seed %d):\n", i+1, res.seed)
		// The run's verdicts first, then the nodes'.
		ps := slices.Clone(res.problems)
		nodeLine := func(p string) bool { return strings.Contains(p, "node ") && !strings.HasPrefix(p, "FALSE") }
		sort.SliceStable(ps, func(a, b int) bool { return !nodeLine(ps[a]) && nodeLine(ps[b]) })
		for j, p := range ps {
			if j == most {
				fmt.Fprintf(&b, "  - (%d more)\n", len(res.problems)-most)
				break
			}
			if len(p) > width {
				p = p[:width] + "..."
			}
			fmt.Fprintf(&b, "  - %s\n", strings.ReplaceAll(p, "|", "\\|"))
		}
	}
	return b.String()
}

// chaosReport is docs/chaos.md: how the runs were made, and their table.
func chaosReport(cfg chaosConfig, table string) string {
	var b strings.Builder
	b.WriteString(`# Chaos, measured

Written by ` + "`make chaos`" + ` (ring/faulttest/chaos_test.go, TestChaos; issue 16, item 5).
A ring of real ` + "`herd recv`" + ` processes, each in a network namespace of its own
behind a veth on a bridge, ` + "`herd send`" + ` in the hub's namespace with
` + "`--bypass-timeout 2s`" + ` (late join on, its default). One clean session, then
seeded sessions with 2-4 concurrent faults each, drawn from: kill (SIGKILL;
kill+restart: a new ` + "`herd recv`" + ` 1-3 s later, which herd send, trying failed nodes
every 2 s, takes back late), freeze then thaw (SIGSTOP, SIGCONT 1-5 s later),
freeze for good, link down then up (the node's eth0, 1-5 s), disk full (the
node's output on a tmpfs of its own, with room for the image at set-up, filled
by another file), slow disk (the output a FIFO that the test reads at 4 MiB/s
from then on, a third of the port's rate); at the first, last, adjacent
(two faults on neighbours) and middle positions, each when the node's output
held a random 10-80 % of the image.

Every run asserts: every healthy node done, verified, and its output the
image's bytes; every faulty node failed with a reason, or done, verified and
with the image's bytes (it joined late or recovered); no node done with other
bytes (a false success); herd send's exit status 0 exactly when every node
is done; the session ended within its bound:

    bound = max(1.5 x clean, max over restarted kills of (t_kill + restart + 2 s + 1.5 x clean))
            + sum over faults that fired of: kill, freeze, disk full 3 x 2 s (bypass timeout);
              freeze+thaw, link down+up 3 x 2 s + 2 x held; slow disk (rest of the image) / 4 MiB/s
            + 15 s

(a node that makes no progress is bypassed within 2-3 bypass timeouts, one
that resets at once; a thawed node or a link back up can cost its hold again
in TCP's retransmission backoff; a late joiner is fed the whole image anew).

`)
	fmt.Fprintf(&b, "Ring: %d nodes, image %d MiB (random bytes), ports %d Mbit/s. Impairment: %s.\n", cfg.nodes, cfg.size>>20, cfg.rate/1_000_000, cfg.impairment.desc)
	if cfg.rev != "" {
		fmt.Fprintf(&b, "Engine: %s.\n", cfg.rev)
	}
	fmt.Fprintf(&b, "Runs: seeds %d to %d (replay one: `HERD_CHAOS_NODES=%d HERD_CHAOS_SEED=S HERD_CHAOS_RUNS=1 go test -tags nettest -run TestChaos -v ./ring/faulttest/`).\n\n",
		cfg.seed, cfg.seed+int64(cfg.runs)-1, cfg.nodes)
	b.WriteString("A fault's outcome follows it: how its node ended in herd send's summary (the reason's first words); \"not fired\": the session ended before the node reached the fault's fraction.\n\n")
	b.WriteString(table)
	return b.String()
}
