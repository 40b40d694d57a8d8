//go:build ringtest

package ringtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/herdproject/herd/internal/gobuild"
)

// The harness: one herd binary (with dolly, dollyS and dollyC links to
// it), a root work directory on tmpfs, and the hosts and resolv.conf files
// the sender's private mount namespace sees.
var (
	rootDir    string // removed after the run
	binDir     string // herd, dolly, dollyS, dollyC
	hostsFile  string // bind-mounted on /etc/hosts for every sender
	resolvFile string // bind-mounted on /etc/resolv.conf for every sender
)

// Bounds on every wait.
const (
	buildTimeout = 5 * time.Minute  // go build ./cmd/herd
	readyTimeout = 10 * time.Second // a node answers on its report port
	exitTimeout  = 10 * time.Second // a node exits after its session
	sendTimeout  = 2 * time.Minute  // a sender run, unless a test says less
)

// maxNode is the highest N for which the hosts file maps nodeN to
// 127.0.1.N.
const maxNode = 60

// addr is the loopback address of test node n: this package uses
// 127.0.1.0/24 only.
func addr(n int) string { return fmt.Sprintf("127.0.1.%d", n) }

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "ringtest: "+format+"\n", args...)
		return 1
	}
	if os.Geteuid() != 0 {
		return fail("the ring tests need root (mount namespaces for the sender, tmpfs mounts)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return fail("unshare (util-linux) not found: %v", err)
	}
	base := os.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm" // gigabytes of test files must not hit the disk
	}
	var err error
	if rootDir, err = os.MkdirTemp(base, "herd-ringtest-"); err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(rootDir)

	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	bins, err := gobuild.Build(ctx, "./cmd/herd")
	cancel()
	if err != nil {
		return fail("%v", err)
	}
	defer bins.Remove()
	binDir = bins.Dir
	for _, name := range []string{"dolly", "dollyS", "dollyC"} {
		if err := os.Symlink("herd", filepath.Join(binDir, name)); err != nil {
			return fail("%v", err)
		}
	}

	var hosts strings.Builder
	hosts.WriteString("127.0.0.1 localhost\n127.0.0.1 mgmt node0\n")
	for n := 1; n <= maxNode; n++ {
		fmt.Fprintf(&hosts, "%s node%d\n", addr(n), n)
	}
	hostsFile = filepath.Join(rootDir, "hosts")
	resolvFile = filepath.Join(rootDir, "resolv.conf")
	if err := os.WriteFile(hostsFile, []byte(hosts.String()), 0o644); err != nil {
		return fail("%v", err)
	}
	if err := os.WriteFile(resolvFile, []byte("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		return fail("%v", err)
	}
	return m.Run()
}

// workDir returns a fresh directory under rootDir for tb, removed when tb
// ends (after every process it started is gone: cleanups run last-in
// first-out).
func workDir(tb testing.TB) string {
	tb.Helper()
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, tb.Name())
	d, err := os.MkdirTemp(rootDir, name+"-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// proc is a process of the test: a node or a sender.
type proc struct {
	name             string
	cmd              *exec.Cmd
	outPath, errPath string
	done             chan struct{} // closed when Wait returned
}

// startProc starts binDir/prog in dir with stdout and stderr going to
// logDir/name.stdout and .stderr. It is killed (by its PID) when tb ends,
// if still running, and its output is logged if tb failed.
func startProc(tb testing.TB, logDir, name, dir, prog string, args ...string) *proc {
	tb.Helper()
	return startCmd(tb, logDir, name, dir, exec.Command(filepath.Join(binDir, prog), args...))
}

func startCmd(tb testing.TB, logDir, name, dir string, cmd *exec.Cmd) *proc {
	tb.Helper()
	p := &proc{name: name, cmd: cmd, outPath: filepath.Join(logDir, name+".stdout"), errPath: filepath.Join(logDir, name+".stderr"), done: make(chan struct{})}
	out, err := os.Create(p.outPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Close()
	errf, err := os.Create(p.errPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer errf.Close()
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, errf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.kill()
		if tb.Failed() {
			tb.Log(p.dump())
		}
	})
	return p
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to end and returns its exit status,
// or -1 and false when it is still running.
func (p *proc) wait(d time.Duration) (int, bool) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return -1, false
	}
}

// kill ends the process by its PID if it still runs (continuing it first
// in case a test stopped it) and waits for it.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
	}
}

func (p *proc) stdout() string { b, _ := os.ReadFile(p.outPath); return string(b) }
func (p *proc) stderr() string { b, _ := os.ReadFile(p.errPath); return string(b) }

// dump renders the process's status and output for a failure log.
func (p *proc) dump() string {
	status := "still running"
	if p.exited() {
		status = p.cmd.ProcessState.String()
	}
	return fmt.Sprintf("=== %s: %s (%s)\n--- stdout:\n%s--- stderr:\n%s", p.name, strings.Join(p.cmd.Args, " "), status, printable(p.outPath), printable(p.errPath))
}

// printable returns the tail of a log file, or a note for binary data.
func printable(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error() + "\n"
	}
	if !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
		return fmt.Sprintf("(%d bytes of binary data)\n", len(b))
	}
	const max = 16 << 10
	if len(b) > max {
		b = append([]byte(fmt.Sprintf("(... %d bytes before)\n", len(b)-max)), b[len(b)-max:]...)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return string(b)
}

// node is a ring node process.
type node struct {
	*proc
	addr string
	// dir is the node's working directory: relative outputs land there,
	// and nothing else does (its logs are next to it).
	dir string
}

// nodeOpts say how to start nodes.
type nodeOpts struct {
	// prog is "herd" (herd recv, the default), "dolly" or "dollyC".
	prog string
	// args are added to the command line.
	args []string
	// reportPort is the port to probe for readiness; 0 = 9996.
	reportPort int
}

// startNodes starts one node per address, each in its own working
// directory under dir, and waits until every one answers on its report
// port. It never connects to a control port: a node treats any control
// connection as a session.
func startNodes(tb testing.TB, dir string, addrs []string, o nodeOpts) []*node {
	tb.Helper()
	var nodes []*node
	for _, a := range addrs {
		var args []string
		switch o.prog {
		case "", "herd":
			o.prog = "herd"
			args = []string{"recv", "--listen", a, "-v"}
		case "dolly", "dollyC":
			args = []string{"-v", "--listen", a}
		default:
			tb.Fatalf("unknown node program %q", o.prog)
		}
		args = append(args, o.args...)
		nd := filepath.Join(dir, "node-"+a)
		if err := os.MkdirAll(nd, 0o755); err != nil {
			tb.Fatal(err)
		}
		p := startProc(tb, dir, "node-"+a, nd, o.prog, args...)
		nodes = append(nodes, &node{proc: p, addr: a, dir: nd})
	}
	port := o.reportPort
	if port == 0 {
		port = 9996
	}
	for _, n := range nodes {
		waitReady(tb, n, port)
	}
	return nodes
}

// waitReady polls n's report port until it answers its one line.
func waitReady(tb testing.TB, n *node, port int) {
	tb.Helper()
	target := net.JoinHostPort(n.addr, strconv.Itoa(port))
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if n.exited() {
			tb.Fatalf("node %s exited before it was ready:\n%s", n.addr, n.dump())
		}
		line, err := reportLine(target)
		if err == nil && strings.HasPrefix(line, "herd ") {
			return
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("node %s: report port %s did not answer within %v (last error: %v):\n%s", n.addr, target, readyTimeout, last, n.dump())
}

// reportLine connects to a report port and reads its one line.
func reportLine(target string) (string, error) {
	c, err := net.DialTimeout("tcp", target, 500*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read %s: %w", target, err)
	}
	return strings.TrimSpace(line), nil
}

// waitExit asserts that every node ends within exitTimeout with status
// want.
func waitExit(tb testing.TB, nodes []*node, want int) {
	tb.Helper()
	for _, n := range nodes {
		code, ok := n.wait(exitTimeout)
		switch {
		case !ok:
			tb.Errorf("node %s still runs %v after the session", n.addr, exitTimeout)
		case code != want:
			tb.Errorf("node %s exited with status %d, want %d", n.addr, code, want)
		}
	}
}

// result is a finished sender run.
type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
	state          *os.ProcessState
}

// String renders the run for messages.
func (r *result) String() string {
	return fmt.Sprintf("exit %d after %v\n--- stdout:\n%s--- stderr:\n%s", r.code, r.elapsed.Round(time.Millisecond), r.stdout, r.stderr)
}

var sendCount atomic.Int64

// startSend starts prog (herd, dolly, dollyS) with args in dir as the
// sender, inside a private mount namespace whose /etc/hosts and
// /etc/resolv.conf are the test's: no name lookup leaves the machine.
func startSend(tb testing.TB, dir, prog string, args ...string) *proc {
	tb.Helper()
	script := `h=$1 r=$2; shift 2; mount --bind "$h" /etc/hosts && mount --bind "$r" /etc/resolv.conf && exec "$@"`
	argv := append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", hostsFile, resolvFile, filepath.Join(binDir, prog)}, args...)
	name := fmt.Sprintf("sender-%d", sendCount.Add(1))
	return startCmd(tb, dir, name, dir, exec.Command("unshare", argv...))
}

// finish waits for a sender started at start; it fails tb if the sender
// runs longer than timeout (0 = sendTimeout).
func finish(tb testing.TB, p *proc, start time.Time, timeout time.Duration) *result {
	tb.Helper()
	if timeout == 0 {
		timeout = sendTimeout
	}
	if _, ok := p.wait(timeout - time.Since(start)); !ok {
		p.kill()
		tb.Fatalf("sender did not finish within %v:\n%s", timeout, p.dump())
	}
	return &result{code: p.cmd.ProcessState.ExitCode(), stdout: p.stdout(), stderr: p.stderr(), elapsed: time.Since(start), state: p.cmd.ProcessState}
}

// send runs a sender (see startSend) and returns when it exits; it fails
// tb if the sender runs longer than timeout (0 = sendTimeout).
func send(tb testing.TB, dir string, timeout time.Duration, prog string, args ...string) *result {
	tb.Helper()
	start := time.Now()
	return finish(tb, startSend(tb, dir, prog, args...), start, timeout)
}

// summaryLine is one node's line of the sender's summary.
type summaryLine struct {
	name, state, verified, reason string
	bytes                         int64
}

// parseSummary reads the per-node lines of a sender's summary (between the
// NODE header and the Time: line).
func parseSummary(tb testing.TB, r *result) []summaryLine {
	tb.Helper()
	var out []summaryLine
	in := false
	for _, l := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 6 && f[0] == "NODE" && f[1] == "STATE":
			in = true
		case strings.HasPrefix(l, "Time:"):
			in = false
		case in && len(f) >= 6:
			b, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				tb.Fatalf("summary line %q: bytes %q: %v\n%v", l, f[2], err, r)
			}
			out = append(out, summaryLine{name: f[0], state: f[1], bytes: b, verified: f[5], reason: strings.Join(f[6:], " ")})
		}
	}
	if len(out) == 0 {
		tb.Fatalf("no summary on the sender's standard output:\n%v", r)
	}
	return out
}

var totalsRE = []*regexp.Regexp{
	regexp.MustCompile(`(?m)^Time: [0-9]+(\.[0-9]+)?$`),
	regexp.MustCompile(`(?m)^MBytes/s: [0-9]+(\.[0-9]+)?$`),
	regexp.MustCompile(`(?m)^Aggregate MBytes/s: [0-9]+(\.[0-9]+)?$`),
}

// checkSummary asserts a summary with exactly the given nodes in order,
// each in state want[name] ("done" nodes must say VERIFIED yes, others no),
// and dolly's totals lines.
func checkSummary(tb testing.TB, r *result, names []string, want map[string]string) []summaryLine {
	tb.Helper()
	lines := parseSummary(tb, r)
	var got []string
	for _, l := range lines {
		got = append(got, l.name)
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		tb.Errorf("summary lists nodes %v, want %v\n%v", got, names, r)
	}
	for _, l := range lines {
		st := want[l.name]
		if st == "" {
			st = "done"
		}
		wantV := "no"
		if st == "done" {
			wantV = "yes"
		}
		if l.state != "done" {
			tb.Logf("summary: node %s %s: %s", l.name, l.state, l.reason)
		}
		if l.state != st || l.verified != wantV {
			tb.Errorf("summary: node %s is %s, VERIFIED %s (reason %q); want %s, VERIFIED %s", l.name, l.state, l.verified, l.reason, st, wantV)
		}
	}
	for _, re := range totalsRE {
		if !re.MatchString(r.stdout) {
			tb.Errorf("summary has no line matching %s:\n%s", re, r.stdout)
		}
	}
	return lines
}

// totals returns the sender's MBytes/s and Aggregate MBytes/s lines.
func totals(tb testing.TB, r *result) (rate, agg float64) {
	tb.Helper()
	get := func(re string) float64 {
		m := regexp.MustCompile(`(?m)^` + re + `: ([0-9.]+)$`).FindStringSubmatch(r.stdout)
		if m == nil {
			tb.Fatalf("no %q line in the summary:\n%v", re, r)
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
	return get("MBytes/s"), get("Aggregate MBytes/s")
}

// allDone asserts a summary where every node is done and verified.
func allDone(tb testing.TB, r *result, names []string) {
	tb.Helper()
	checkSummary(tb, r, names, nil)
}

// wantExit asserts the sender's exit status.
func wantExit(tb testing.TB, r *result, code int) {
	tb.Helper()
	if r.code != code {
		tb.Fatalf("sender exit status %d, want %d\n%v", r.code, code, r)
	}
}

// addrs returns addr(n) for each n.
func addrs(ns ...int) []string {
	var out []string
	for _, n := range ns {
		out = append(out, addr(n))
	}
	return out
}

// seq returns lo..hi.
func seq(lo, hi int) []int {
	var out []int
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}

// nodeAddrs returns the nodes' addresses.
func nodeAddrs(nodes []*node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.addr)
	}
	return out
}

// Input files are made once per run, under rootDir.
var (
	inputsMu sync.Mutex
	inputs   = map[string]string{} // key -> path
	digests  sync.Map              // path -> hex SHA-256
)

// randomFile returns the path of a file of size random bytes (ChaCha8
// seeded by seed), made once per run.
func randomFile(tb testing.TB, size int64, seed byte) string {
	tb.Helper()
	inputsMu.Lock()
	defer inputsMu.Unlock()
	key := fmt.Sprintf("random-%d-%d", size, seed)
	if p, ok := inputs[key]; ok {
		return p
	}
	p := filepath.Join(rootDir, key+".bin")
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	if err := writeRandom(f, size, seed); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	inputs[key] = p
	return p
}

// writeRandom writes size random bytes at f's current offset.
func writeRandom(w io.Writer, size int64, seed byte) error {
	var s [32]byte
	s[0], s[31] = seed, 0x5a
	r := rand.NewChaCha8(s)
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := min(size, int64(len(buf)))
		_, _ = r.Read(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

// sha256File returns the hex SHA-256 of a file ("" if it cannot be read).
func sha256File(tb testing.TB, path string) string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Errorf("%v", err)
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		tb.Errorf("read %s: %v", path, err)
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// inputSHA is sha256File, cached for inputs that do not change.
func inputSHA(tb testing.TB, path string) string {
	tb.Helper()
	if s, ok := digests.Load(path); ok {
		return s.(string)
	}
	s := sha256File(tb, path)
	digests.Store(path, s)
	return s
}

// sameFile asserts that got has the contents of want (an input).
func sameFile(tb testing.TB, want, got string) {
	tb.Helper()
	wfi, err := os.Stat(want)
	if err != nil {
		tb.Fatal(err)
	}
	gfi, err := os.Stat(got)
	if err != nil {
		tb.Errorf("output: %v", err)
		return
	}
	if gfi.Size() != wfi.Size() {
		tb.Errorf("%s is %d bytes, the input %d", got, gfi.Size(), wfi.Size())
		return
	}
	if g, w := sha256File(tb, got), inputSHA(tb, want); g != w {
		tb.Errorf("%s: SHA-256 %s, the input has %s", got, g, w)
	}
}

// emptyDir asserts that a node wrote nothing: its working directory holds
// no entry (but the ones listed in keep, which the test made).
func emptyDir(tb testing.TB, dir string, keep ...string) {
	tb.Helper()
	var extra []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		for _, k := range keep {
			if rel == k {
				return nil
			}
		}
		extra = append(extra, fmt.Sprintf("%s (%d bytes)", rel, fi.Size()))
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Errorf("walk %s: %v", dir, err)
	}
	if len(extra) > 0 {
		tb.Errorf("node directory %s should hold nothing new, holds %v", dir, extra)
	}
}

// containsAll asserts that s contains every one of subs.
func containsAll(tb testing.TB, what, s string, subs ...string) {
	tb.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			tb.Errorf("%s does not mention %q:\n%s", what, sub, s)
		}
	}
}
