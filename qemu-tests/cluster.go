package qemutests

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/internal/netnstest"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/nodestate"
	"golang.org/x/sys/unix"
)

// The boot network inside every cluster's namespace. Each cluster has a
// namespace of its own, so clusters never see each other's traffic even
// though they use the same addresses.
const (
	Subnet   = "10.251.20.0/24"
	ServerIP = "10.251.20.1"
	// URL is herd's HTTP service: the harness runs herd with its default
	// ports (DHCP 67, TFTP 69, HTTP 8080) inside the namespace; do not
	// pass port flags to Serve or PXE.
	URL = "http://" + ServerIP + ":8080"
	// Bridge is the boot network's bridge in the namespace; herd serves
	// on it and every VM's tap is a port of it.
	Bridge = "br0"
	// MaxNodes is the most nodes a cluster can have (IPs .21 to .99).
	MaxNodes = 79
)

// Bounds on the harness's own waits.
const (
	serverReadyTimeout = 30 * time.Second
	serverStopTimeout  = 20 * time.Second
	herdCmdTimeout     = time.Minute
	pollInterval       = 500 * time.Millisecond
)

// Options describe a cluster. Zero values are defaults.
type Options struct {
	// Nodes is the number of inventory nodes, each with a tap device and
	// a disk, whether or not its VM is started; 0 means 1.
	Nodes int
	// DiskSize is each node's blank raw virtio disk in bytes; 0 means
	// 64 MiB. The files are sparse.
	DiskSize int64
	// MemoryMiB is each VM's memory; 0 means 1024.
	MemoryMiB int
	// KernelArgs are added to the install boot's kernel command line
	// after "console=ttyS0" (the harness passes them as --kernel-args;
	// do not pass that flag to Serve or PXE), e.g. "herd.timeout=30".
	KernelArgs string
	// NodeAttrs are added to every node line of the inventory, e.g.
	// "plan=/path/compute.ks profile=compute".
	NodeAttrs string
	// InventoryLines are added to the inventory after its network lines,
	// e.g. "lease 10m".
	InventoryLines []string
	// NoReboot makes QEMU exit when a VM resets instead of booting again
	// (-no-reboot); VM.WaitExit then sees each reset.
	NoReboot bool
	// Firmware gives node i's (0-based) firmware; nil means BIOS for
	// every node. A mixed rack is e.g.
	//
	//	func(i int) Firmware { return []Firmware{BIOS, UEFIPXE}[i%2] }
	Firmware func(i int) Firmware
	// LogDir is where the cluster's logs, inventory and node states go
	// (created when missing; an earlier cluster's node states there are
	// removed). "" means $HERD_QEMU_LOGDIR/<test> or a temporary
	// directory (see the package comment).
	LogDir string
	// Echo, when set, also gets every herd server's standard output and
	// standard error as herd writes them (make demo shows herd serve's
	// progress and summary live). It must be safe for concurrent use.
	Echo io.Writer
	// BMC gives every node a real BMC (bmc.go): OpenIPMI's ipmi_sim
	// answering IPMI over LAN on the boot network, named in the
	// inventory as bmc=ipmi://..., whose chassis is the node's VM: a
	// power-on starts it, a power-off kills it, a reset resets it. The
	// nodes then start powered off; herd serve --power (or herd power)
	// starts them, not the test.
	BMC bool
}

// Node is one inventory node and its VM's parts.
type Node struct {
	// Name (n1, n2, ...), MAC (52:54:00:25:20:21, ...) and IP
	// (10.251.20.21, ...) as the inventory has them.
	Name, MAC, IP string
	// Tap is the node's tap device on the bridge (tap1, tap2, ...).
	Tap string
	// Disk is the node's raw disk image; a test may write to it before
	// the VM starts.
	Disk string
	// Firmware is the node's boot firmware (Options.Firmware).
	Firmware Firmware
	// Vars is a UEFI node's own copy of OVMF's variable store (boot
	// entries, BootOrder, BootNext): made when the cluster is, kept across
	// the VM's resets and restarts; "" for a BIOS node.
	Vars string
}

// FirstNonZero returns the offset of the first byte of the node's disk
// file that is not zero, or -1 when every byte is zero: the disk is as
// blank as NewCluster made it. It reads the file's data extents
// (SEEK_DATA, SEEK_HOLE; holes read as zeros), at most the whole file;
// stop the node's VM first.
func (n Node) FirstNonZero() (int64, error) {
	f, err := os.Open(n.Disk)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		data, err := f.Seek(off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, syscall.ENXIO): // no data after off
			return -1, nil
		case err != nil: // no SEEK_DATA here: read everything
			data = off
		}
		hole, err := f.Seek(data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		for data < hole {
			k := int(min(int64(len(buf)), hole-data))
			if _, err := f.ReadAt(buf[:k], data); err != nil {
				return 0, fmt.Errorf("%s at %d: %w", n.Disk, data, err)
			}
			for i, b := range buf[:k] {
				if b != 0 {
					return data + int64(i), nil
				}
			}
			data += int64(k)
		}
		off = hole
	}
	return -1, nil
}

// Cluster is a boot network in a namespace of the test's: a bridge with
// herd's address, one tap per node, an inventory, a state directory, the
// shared boot tree, and the herd servers and VMs the test starts on it.
// Everything is torn down at the test's cleanup, also when it fails.
type Cluster struct {
	// NS is the cluster's namespace; NS.Do and NS.Command reach the boot
	// network from the test.
	NS *netnstest.NS
	// Nodes are the inventory's nodes in inventory (ring) order.
	Nodes []Node
	// Inventory, StateDir and BootDir are what herd serve, herd pxe and
	// herd nodes are given.
	Inventory, StateDir, BootDir string
	// Herd is the herd binary the boot tree embeds.
	Herd string
	// LogDir holds every log: <node>.console.log (<node>-2.console.log
	// for a node's second start, ...), <server>.out/.err.
	LogDir string
	// Start is when the cluster was made (after the shared build).
	Start time.Time
	// BMCPasswordFile holds the BMCs' password (Options.BMC), for herd
	// serve --bmc-password-file and herd power.
	BMCPasswordFile string

	t       T
	opts    Options
	servers int
	vmMu    sync.Mutex // vms: the BMCs start VMs from their own goroutine
	vms     []*VM
	bmc     *bmcs // Options.BMC
	srvs    []*Server
	sockDir string // QEMU monitor sockets (short paths)
}

// NewCluster makes the cluster's network, inventory and disks (and each
// UEFI node's variable store); nothing runs on it yet. It skips the test
// when the host lacks root, QEMU, the iPXE ROMs, OVMF for UEFI nodes or a
// kernel (see Packages).
func NewCluster(t T, o Options) *Cluster {
	t.Helper()
	b := build(t)
	if o.Nodes == 0 {
		o.Nodes = 1
	}
	if o.Nodes < 0 || o.Nodes > MaxNodes {
		t.Fatalf("qemutests: %d nodes: want 1 to %d", o.Nodes, MaxNodes)
	}
	if o.Firmware != nil {
		for i := range o.Nodes {
			if why := missingFirmware(o.Firmware(i)); why != "" {
				t.Skip(why)
			}
		}
	}
	if o.DiskSize == 0 {
		o.DiskSize = 64 << 20
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 1024
	}
	c := &Cluster{t: t, opts: o, Herd: b.herd, BootDir: b.bootDir}
	c.LogDir = logDir(t, o.LogDir)
	t.Cleanup(c.dumpOnFailure) // after the processes and the namespace are gone
	disks := t.TempDir()
	var err error
	if c.sockDir, err = os.MkdirTemp("", "hq"); err != nil {
		t.Fatalf("qemutests: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(c.sockDir) })

	c.NS = netnstest.New(asTB(t), "qemu")
	c.NS.AddBridge(Bridge, ServerIP+"/24")
	inv := []string{
		"# herd qemu-tests: " + t.Name(),
		"subnet " + Subnet,
		"router " + ServerIP,
	}
	inv = append(inv, o.InventoryLines...)
	for i := range o.Nodes {
		k := i + 1
		n := Node{
			Name: fmt.Sprintf("n%d", k),
			MAC:  fmt.Sprintf("52:54:00:25:20:%02d", 20+k), // decimal digits read as hex: .21 ends in 21
			IP:   fmt.Sprintf("10.251.20.%d", 20+k),
			Tap:  fmt.Sprintf("tap%d", k),
			Disk: filepath.Join(disks, fmt.Sprintf("n%d.raw", k)),
		}
		if o.Firmware != nil {
			n.Firmware = o.Firmware(i)
		}
		if n.Firmware.UEFI() {
			n.Vars = filepath.Join(disks, fmt.Sprintf("n%d.vars.fd", k))
			if err := copyVars(n.Vars); err != nil {
				t.Fatalf("qemutests: node %s: %v", n.Name, err)
			}
		}
		c.NS.AddTap(n.Tap, Bridge)
		if err := os.WriteFile(n.Disk, nil, 0o644); err != nil {
			t.Fatalf("qemutests: disk: %v", err)
		}
		if err := os.Truncate(n.Disk, o.DiskSize); err != nil {
			t.Fatalf("qemutests: disk: %v", err)
		}
		attrs := o.NodeAttrs
		if o.BMC {
			attrs += " bmc=" + bmcTarget(k).String()
		}
		line := strings.TrimSpace(fmt.Sprintf("node %s %s %s %s", n.MAC, n.Name, n.IP, attrs))
		inv = append(inv, line)
		c.Nodes = append(c.Nodes, n)
	}
	c.Inventory = filepath.Join(c.LogDir, "inventory")
	c.StateDir = filepath.Join(c.LogDir, "state")
	if err := os.WriteFile(c.Inventory, []byte(strings.Join(inv, "\n")+"\n"), 0o644); err != nil {
		t.Fatalf("qemutests: inventory: %v", err)
	}
	if o.BMC {
		c.startBMCs()
	}
	c.Start = time.Now()
	t.Logf("cluster: %d node(s) on %s (%s) in namespace %s; logs in %s", o.Nodes, Bridge, Subnet, c.NS.Name, c.LogDir)
	return c
}

// logDir is dir when given (its node states removed), else
// $HERD_QEMU_LOGDIR/<test> when set (emptied first), else a temporary
// directory removed when the test passes (and kept when it fails). A log
// directory also holds the cluster's inventory and node states, and a
// state left by an earlier run would switch the nodes to local boot.
func logDir(t T, dir string) string {
	t.Helper()
	if dir != "" {
		if err := os.RemoveAll(filepath.Join(dir, "state")); err != nil {
			t.Fatalf("qemutests: log directory: %v", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("qemutests: log directory: %v", err)
		}
		return dir
	}
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	if d := os.Getenv("HERD_QEMU_LOGDIR"); d != "" {
		dir := filepath.Join(d, name)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatalf("qemutests: HERD_QEMU_LOGDIR: %v", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("qemutests: HERD_QEMU_LOGDIR: %v", err)
		}
		return dir
	}
	dir, err := os.MkdirTemp("", "herd-qemu-"+name+"-")
	if err != nil {
		t.Fatalf("qemutests: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// dumpOnFailure shows the end of every log when the test failed.
func (c *Cluster) dumpOnFailure() {
	if !c.t.Failed() {
		return
	}
	for _, s := range c.srvs {
		if out := readFile(s.Stderr); out != "" {
			c.t.Logf("=== herd %s (%s), stderr (last 40 lines):\n%s", s.Name, s.Stderr, lastLines(out, 40))
		}
		if out := readFile(s.Stdout); out != "" {
			c.t.Logf("=== herd %s (%s), stdout (last 20 lines):\n%s", s.Name, s.Stdout, lastLines(out, 20))
		}
	}
	for _, v := range c.allVMs() {
		c.t.Logf("=== %s console (%s), last 30 lines:\n%s", v.Node.Name, v.Log, v.Tail(30))
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func (c *Cluster) kernelArgs() string {
	return strings.TrimSpace("console=ttyS0 " + c.opts.KernelArgs)
}

// Serve starts `herd serve` in the namespace on the bridge, with the
// cluster's inventory, state and boot tree and these extra arguments
// (e.g. "--input", img, "--output", "/dev/vda", "--once"), and waits until
// its HTTP service answers.
func (c *Cluster) Serve(args ...string) *Server {
	c.t.Helper()
	return c.startServer("serve", args)
}

// PXE starts `herd pxe` (the boot services alone) as Serve does.
func (c *Cluster) PXE(args ...string) *Server {
	c.t.Helper()
	return c.startServer("pxe", args)
}

// Server is a herd serve or herd pxe process in the cluster's namespace.
type Server struct {
	// Name is "serve-1", "pxe-2", ...: the command and its start order.
	Name string
	// Cmd is the process; its PID is herd's own.
	Cmd *exec.Cmd
	// Stdout and Stderr are the log files of its output.
	Stdout, Stderr string

	t    T
	done chan struct{}
}

func (c *Cluster) startServer(sub string, args []string) *Server {
	t := c.t
	t.Helper()
	c.servers++
	s := &Server{Name: fmt.Sprintf("%s-%d", sub, c.servers), t: t, done: make(chan struct{})}
	full := append([]string{sub, "--interface", Bridge, "--inventory", c.Inventory, "--state-dir", c.StateDir,
		"--boot-dir", c.BootDir, "--kernel-args", c.kernelArgs()}, args...)
	s.Stdout = filepath.Join(c.LogDir, s.Name+".out")
	s.Stderr = filepath.Join(c.LogDir, s.Name+".err")
	out, err := os.Create(s.Stdout)
	if err != nil {
		t.Fatalf("qemutests: %v", err)
	}
	errf, err := os.Create(s.Stderr)
	if err != nil {
		out.Close()
		t.Fatalf("qemutests: %v", err)
	}
	s.Cmd = c.NS.Command(c.Herd, full...)
	// The cluster's flags only: never a herd.conf of the host's.
	s.Cmd.Env = append(os.Environ(), "HERD_CONFIG=none")
	s.Cmd.Stdout, s.Cmd.Stderr = out, errf
	if c.opts.Echo != nil {
		s.Cmd.Stdout, s.Cmd.Stderr = io.MultiWriter(out, c.opts.Echo), io.MultiWriter(errf, c.opts.Echo)
	}
	if err := s.Cmd.Start(); err != nil {
		out.Close()
		errf.Close()
		t.Fatalf("qemutests: start herd %s: %v", sub, err)
	}
	go func() {
		s.Cmd.Wait()
		out.Close()
		errf.Close()
		close(s.done)
	}()
	c.srvs = append(c.srvs, s)
	t.Cleanup(func() { s.stop(false) })
	t.Logf("%s: started (pid %d): herd %s; output in %s, %s", s.Name, s.Cmd.Process.Pid, strings.Join(full, " "), s.Stdout, s.Stderr)

	deadline := time.Now().Add(serverReadyTimeout)
	for {
		select {
		case <-s.done:
			t.Fatalf("%s: herd %s exited (%v) before serving:\n%s", s.Name, sub, s.Cmd.ProcessState, lastLines(readFile(s.Stderr), 20))
		default:
		}
		err := c.NS.Do(func() error {
			conn, err := net.DialTimeout("tcp", ServerIP+":8080", 200*time.Millisecond)
			if err == nil {
				conn.Close()
			}
			return err
		})
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: herd %s not serving HTTP on %s:8080 after %v: %v\n%s", s.Name, sub, ServerIP, serverReadyTimeout, err, lastLines(readFile(s.Stderr), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the server if it still runs: SIGTERM, then after 20 s
// SIGKILL; both by PID and bounded. Needing SIGKILL is a test error when
// strict, else (at cleanup) a logged warning.
func (s *Server) stop(strict bool) int {
	select {
	case <-s.done:
		return s.Cmd.ProcessState.ExitCode()
	default:
	}
	_ = s.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return s.Cmd.ProcessState.ExitCode()
	case <-time.After(serverStopTimeout):
	}
	report := s.t.Logf
	if strict {
		report = s.t.Errorf
	}
	report("%s: herd did not exit within %v of SIGTERM; killing pid %d", s.Name, serverStopTimeout, s.Cmd.Process.Pid)
	_ = s.Cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(serverStopTimeout):
		s.t.Errorf("%s: pid %d did not exit after SIGKILL", s.Name, s.Cmd.Process.Pid)
	}
	return -1
}

// Stop sends SIGTERM and returns the exit status; it fails the test when
// herd does not exit within 20 s (and then kills it).
func (s *Server) Stop() int {
	s.t.Helper()
	return s.stop(true)
}

// Wait waits at most d for the server to exit (herd serve --once ends by
// itself) and returns its exit status; it fails the test on timeout.
func (s *Server) Wait(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
		return s.Cmd.ProcessState.ExitCode()
	case <-time.After(d):
		s.t.Fatalf("%s: herd did not exit within %v; stderr (last 20 lines):\n%s", s.Name, d, lastLines(readFile(s.Stderr), 20))
		return -1
	}
}

// WaitOutput waits at most d for a line of the server's standard output
// matching the regular expression pattern (anywhere in what it wrote so
// far; ^ and $ match at line boundaries) and returns that line. It fails the test on timeout, or when herd
// exited without writing it.
func (s *Server) WaitOutput(pattern string, d time.Duration) string {
	s.t.Helper()
	return s.waitLog("standard output", s.Stdout, pattern, d)
}

// WaitErrors is WaitOutput for the server's standard error.
func (s *Server) WaitErrors(pattern string, d time.Duration) string {
	s.t.Helper()
	return s.waitLog("standard error", s.Stderr, pattern, d)
}

func (s *Server) waitLog(what, path, pattern string, d time.Duration) string {
	s.t.Helper()
	re, err := regexp.Compile("(?m)" + pattern)
	if err != nil {
		s.t.Fatalf("%s: pattern %q: %v", s.Name, pattern, err)
	}
	deadline := time.Now().Add(d)
	for {
		exited := false
		select {
		case <-s.done:
			exited = true
		default:
		}
		text := readFile(path)
		// Whole lines only, unless herd has exited: a line still being
		// written could match with half its text.
		if !exited {
			text = text[:strings.LastIndexByte(text, '\n')+1]
		}
		if loc := re.FindStringIndex(text); loc != nil {
			start := strings.LastIndexByte(text[:loc[0]], '\n') + 1
			end := len(text)
			if i := strings.IndexByte(text[loc[1]:], '\n'); i >= 0 {
				end = loc[1] + i
			}
			if loc[1] > loc[0] && text[loc[1]-1] == '\n' {
				end = loc[1] - 1
			}
			return text[start:end]
		}
		if exited {
			s.t.Fatalf("%s: herd exited (%v) without writing /%s/ on its %s (%s); last 20 lines:\n%s", s.Name, s.Cmd.ProcessState, pattern, what, path, lastLines(text, 20))
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: waited %v for /%s/ on herd's %s (%s); last 20 lines:\n%s", s.Name, d, pattern, what, path, lastLines(text, 20))
		}
		time.Sleep(pollInterval)
	}
}

// Done is closed when the server has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

// Output returns what it wrote to standard output so far.
func (s *Server) Output() string { return readFile(s.Stdout) }

// Errors returns what it wrote to standard error so far.
func (s *Server) Errors() string { return readFile(s.Stderr) }

// RunHerd runs the cluster's herd (on the host, not in the namespace)
// with these arguments, for at most d, and returns its combined output;
// it fails the caller when herd fails.
func (c *Cluster) RunHerd(d time.Duration, args ...string) string {
	c.t.Helper()
	out, err := runBounded(d, "", nil, c.Herd, args...)
	if err != nil {
		c.t.Fatalf("herd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// SummaryRow finds node's line in a herd send/serve summary (NODE STATE
// BYTES SECONDS MB/s VERIFIED REASON) and returns its state, bytes,
// verified and reason; ok is false when out has no line for node. When
// out holds several summaries (herd serve's second chances), the first
// line wins.
func SummaryRow(out, node string) (state string, bytes int64, verified bool, reason string, ok bool) {
	m := summaryRowRE(node).FindStringSubmatch(out)
	if m == nil {
		return "", 0, false, "", false
	}
	bytes, _ = strconv.ParseInt(m[2], 10, 64)
	return m[1], bytes, m[3] == "yes", strings.TrimSpace(m[4]), true
}

// LastSummaryRow is SummaryRow where the last line wins: node's latest
// verdict.
func LastSummaryRow(out, node string) (state string, bytes int64, verified bool, reason string, ok bool) {
	all := summaryRowRE(node).FindAllStringIndex(out, -1)
	if all == nil {
		return "", 0, false, "", false
	}
	return SummaryRow(out[all[len(all)-1][0]:], node)
}

// summaryRowRE matches node's summary line; [ \t], not \s: a row never
// runs on into the next line (an empty REASON is trailing blanks).
func summaryRowRE(node string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(node) + `[ \t]+(\S+)[ \t]+(\d+)[ \t]+\S+[ \t]+\S+[ \t]+(yes|no)[ \t]*(.*)$`)
}

// BootedRE matches the line the golden image's system prints on the
// serial console when it has booted (herd image golden): the host name,
// address and machine-id it came up with.
var BootedRE = regexp.MustCompile(`herd-booted host=(\S+) ip=(\S+) machine-id=(\S+)`)

// HerdNodes runs `herd nodes --inventory ... --state-dir ... ARGS` in the
// test's namespace and returns its standard output; it fails the test when
// herd fails.
func (c *Cluster) HerdNodes(args ...string) string {
	c.t.Helper()
	out, err := runBounded(herdCmdTimeout, "", nil, c.Herd,
		append([]string{"nodes", "--inventory", c.Inventory, "--state-dir", c.StateDir}, args...)...)
	if err != nil {
		c.t.Fatalf("qemutests: %v", err)
	}
	return out
}

// NodeRow is one line of `herd nodes` (list), as printed.
type NodeRow struct {
	Name, MAC, IP, State, Boot, Bytes, Rate, LastReport, Reason string
}

// List returns `herd nodes` parsed, one row per inventory node.
func (c *Cluster) List() []NodeRow {
	c.t.Helper()
	out, err := runBounded(herdCmdTimeout, "", nil, c.Herd,
		"nodes", "--inventory", c.Inventory, "--state-dir", c.StateDir, "list")
	if err != nil {
		c.t.Fatalf("qemutests: %v", err)
	}
	rows, err := parseList(out)
	if err != nil {
		c.t.Fatalf("qemutests: herd nodes: %v\n%s", err, out)
	}
	return rows
}

// parseList reads herd nodes' table: a header, then NAME MAC IP STATE
// BOOT BYTES RATE LAST-REPORT and REASON (the rest of the line).
func parseList(out string) ([]NodeRow, error) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "NAME") {
		return nil, fmt.Errorf("no NAME header")
	}
	var rows []NodeRow
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 9 {
			return nil, fmt.Errorf("short line %q", l)
		}
		rows = append(rows, NodeRow{Name: f[0], MAC: f[1], IP: f[2], State: f[3], Boot: f[4],
			Bytes: f[5], Rate: f[6], LastReport: f[7], Reason: strings.Join(f[8:], " ")})
	}
	return rows, nil
}

// Show returns a node's state from `herd nodes show NAME` (its JSON).
func (c *Cluster) Show(name string) inventory.Status {
	c.t.Helper()
	out := c.HerdNodes("show", name)
	var st inventory.Status
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&st); err != nil {
		c.t.Fatalf("qemutests: herd nodes show %s: %v\n%s", name, err, out)
	}
	return st
}

// WaitState polls herd's node states until node name is in state, for at
// most d, and returns it; it fails the test on timeout.
func (c *Cluster) WaitState(name string, state contract.State, d time.Duration) inventory.Status {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := c.Show(name)
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("qemutests: node %s is %s after %v, want %s\n%s", name, st.State, d, state, c.HerdNodes("list"))
		}
		time.Sleep(pollInterval)
	}
}

// UpdateState changes a node's recorded state directly in the state
// directory (as herd would), e.g. to mark a node installed so that its
// next boot is local. Safe while herd runs.
func (c *Cluster) UpdateState(name string, fn func(*inventory.Status) error) {
	c.t.Helper()
	inv, err := inventory.ParseFile(c.Inventory)
	if err != nil {
		c.t.Fatalf("qemutests: %v", err)
	}
	st, err := nodestate.Open(c.StateDir, inv)
	if err != nil {
		c.t.Fatalf("qemutests: %v", err)
	}
	if err := st.Update(name, fn); err != nil {
		c.t.Fatalf("qemutests: state of %s: %v", name, err)
	}
}

// StartAll starts a VM for every node, in inventory order.
func (c *Cluster) StartAll() []*VM {
	c.t.Helper()
	vms := make([]*VM, len(c.Nodes))
	for i := range c.Nodes {
		vms[i] = c.StartVM(i)
	}
	return vms
}
