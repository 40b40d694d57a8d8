package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	qemutests "github.com/herdproject/herd/qemu-tests"
)

// Bounds of the demo under TCG on a busy 2-core host, as the clone
// scenario's (qemu-tests/clone_test.go, pxeboot_test.go).
const (
	imageTimeout = 5 * time.Minute // herd image golden, herd image capture
)

// step is one stop on a node's way from power-on to its own disk: a line
// its serial console shows.
type step struct {
	// name heads the step's column in the timeline.
	name string
	// pattern is the console line's regular expression for node n.
	pattern func(n qemutests.Node) string
	// within bounds the wait for it after the step before.
	within time.Duration
	// say is what the live line says, from the console line.
	say func(n qemutests.Node, line string) string
}

var (
	ringPlace = regexp.MustCompile(`node \d+ of \d+`)
	verified  = regexp.MustCompile(`done: (.*)`)
)

// steps are in the order a node passes them.
var steps = []step{
	{"DHCP", func(n qemutests.Node) string { return `net0: ` + regexp.QuoteMeta(n.IP) + `/` },
		2 * time.Minute, func(n qemutests.Node, _ string) string {
			return "DHCP lease " + n.IP + " from herd (the card's iPXE)"
		}},
	{"agent up", fixed(`== herd: `),
		4 * time.Minute, func(qemutests.Node, string) string { return "herd's kernel and initramfs booted: the agent runs" }},
	{"registered", func(n qemutests.Node) string { return `registered as ` + regexp.QuoteMeta(n.Name) + ` ` },
		3 * time.Minute, func(n qemutests.Node, _ string) string { return "registered with herd serve as " + n.Name }},
	{"transfer", fixed(`session \S+ from .*: I am `),
		6 * time.Minute, func(_ qemutests.Node, line string) string {
			return "transfer started: " + ringPlace.FindString(line) + " in the ring"
		}},
	{"verified", fixed(`session \S+ done: .*verified`),
		6 * time.Minute, func(_ qemutests.Node, line string) string {
			if m := verified.FindStringSubmatch(line); m != nil {
				return m[1]
			}
			return line
		}},
	{"reported", fixed(`== herd: report done done`),
		time.Minute, func(qemutests.Node, string) string { return "customized, reported done; rebooting" }},
	{"rebooted", func(n qemutests.Node) string { return n.Firmware.StartPattern() },
		time.Minute, func(qemutests.Node, string) string {
			return "reset: the firmware starts again; herd now sends it to its disk"
		}},
	{"disk boot", fixed(qemutests.BootedRE.String()),
		5 * time.Minute, func(_ qemutests.Node, line string) string {
			return "booted its own disk: " + qemutests.BootedRE.FindString(line)
		}},
}

func fixed(p string) func(qemutests.Node) string {
	return func(qemutests.Node) string { return p }
}

// nodeRun is what the demo saw of one node.
type nodeRun struct {
	node qemutests.Node
	// console is the node's console log.
	console string
	// at is when each step's line came, since power-on; reached counts
	// the steps seen.
	at      []time.Duration
	reached int
	// booted is the installed system's herd-booted line.
	booted string
	// bytes and verified are from herd serve's summary.
	bytes    int64
	verified bool
	// problem says what went wrong, "" when nothing did.
	problem string
}

// demo is one run.
type demo struct {
	cfg    config
	logDir string
	o      *screen
	start  time.Time

	interrupted atomic.Bool
	nodes       []*nodeRun
	serveLogs   string   // herd serve's log files, once it ran
	problems    []string // failures that are no one node's
}

// problem records a failure that is no one node's.
func (d *demo) problem(format string, args ...any) {
	d.problems = append(d.problems, fmt.Sprintf(format, args...))
}

// scenario is TestCloneWholeDisk told to an administrator; it runs as
// RunProgram's function (Fatalf ends it).
func (d *demo) scenario(ctx context.Context, t qemutests.T) {
	o := d.o
	o.printf("\n== building herd and its boot tree (kernel, u-root initramfs with the agent, iPXE)\n")
	built := time.Now()
	c := qemutests.NewCluster(t, qemutests.Options{Nodes: d.cfg.Nodes, DiskSize: 256 << 20, LogDir: d.logDir, Echo: o})
	o.printf("   ready in %v; boot network %s on bridge %s (herd at %s) in network namespace %s\n",
		time.Since(built).Round(time.Second), qemutests.Subnet, qemutests.Bridge, qemutests.ServerIP, c.NS.Name)
	o.printf("   inventory %s:\n", c.Inventory)
	inv, _ := os.ReadFile(c.Inventory)
	o.indent("   " + strings.ReplaceAll(strings.TrimSpace(string(inv)), "\n", "\n   "))
	for _, n := range c.Nodes {
		d.nodes = append(d.nodes, &nodeRun{node: n, at: make([]time.Duration, len(steps))})
	}

	dir := t.TempDir()
	golden := filepath.Join(dir, "golden.img")
	o.printf("\n== herd image golden -o golden.img\n")
	o.indent(c.RunHerd(imageTimeout, "image", "golden", "-o", golden))
	zst := golden + ".zst"
	o.printf("\n== herd image capture golden.img -o golden.img.zst\n")
	o.indent(c.RunHerd(imageTimeout, "image", "capture", golden, "-o", zst))

	o.printf("\n== herd serve --file 'golden.img.zst >> /dev/vda'   (its output follows as herd prints it)\n")
	srv := c.Serve("--file", zst+" >> /dev/vda")
	d.serveLogs = srv.Stdout + ", " + srv.Stderr

	var names []string
	for _, n := range c.Nodes {
		names = append(names, n.Name)
	}
	o.printf("\n== power on %s: each boots from the network, installs, reboots and boots its own disk\n", strings.Join(names, ", "))
	o.printf("   (node, seconds since its power-on, what its serial console shows)\n")
	vms := c.StartAll()
	var wg sync.WaitGroup
	for i, vm := range vms {
		r := d.nodes[i]
		r.console = vm.Log
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.follow(vm, r)
		}()
	}
	watched := make(chan struct{})
	go func() {
		wg.Wait()
		close(watched)
	}()
	select {
	case <-watched:
	case <-ctx.Done():
		d.interrupted.Store(true)
		o.printf("\n== interrupted: powering the nodes off, stopping herd serve\n")
		for _, vm := range vms {
			vm.Kill()
		}
		<-watched // each wait ends with its console
		t.Fatalf("interrupted")
	}

	// herd's own view: serve's summary, herd nodes' states.
	out := srv.Output()
	ids := map[string]string{}
	for _, r := range d.nodes {
		n := r.node
		state, bytes, ok, reason, found := qemutests.LastSummaryRow(out, n.Name)
		r.bytes, r.verified = bytes, ok
		switch {
		case !found:
			r.fail("herd serve's summary has no line for it")
		case state != "done" || !ok:
			why := "herd serve says " + state
			if reason != "" {
				why += ": " + reason
			}
			if r.problem != "" {
				why = r.problem + "; " + why
			}
			r.problem = why
		}
		if st := c.Show(n.Name); r.problem == "" && (string(st.State) != "done" || !st.LocalBoot) {
			r.fail("herd nodes show %s: state %s, local boot %v (want done, local)", n.Name, st.State, st.LocalBoot)
		}
		if m := qemutests.BootedRE.FindStringSubmatch(r.booted); m != nil {
			if m[1] != n.Name || m[2] != n.IP {
				r.fail("booted as host=%s ip=%s, not its reservation %s %s", m[1], m[2], n.Name, n.IP)
			}
			if other, dup := ids[m[3]]; dup {
				r.fail("machine-id %s is %s's too", m[3], other)
			}
			ids[m[3]] = n.Name
		}
	}
	o.printf("\n== stopping herd serve (SIGTERM)\n")
	if code := srv.Stop(); code != 0 {
		d.problem("herd serve exited %d after the session (logs: %s)", code, d.serveLogs)
	}
}

// follow waits for each step of r's node on its console, in order, and
// prints it as it comes; it stops at the first step that does not come.
func (d *demo) follow(vm *qemutests.VM, r *nodeRun) {
	for i, s := range steps {
		line, err := vm.Wait(s.pattern(r.node), s.within)
		if err != nil {
			// The harness's message has the console's tail: the
			// transcript keeps it, the terminal gets the gist.
			d.o.transcript().Write([]byte(err.Error() + "\n"))
			after := "power-on"
			if i > 0 {
				after = steps[i-1].name
			}
			for end := time.Now().Add(2 * time.Second); !vm.Exited() && time.Now().Before(end); {
				time.Sleep(100 * time.Millisecond) // the console ends just before QEMU's exit is seen
			}
			if d.interrupted.Load() {
				r.fail("interrupted before %q", s.name)
			} else if vm.Exited() {
				r.fail("its QEMU exited (powered off, or killed) before %q", s.name)
			} else {
				r.fail("no %q within %v after %s", s.name, s.within, after)
			}
			d.o.printf("  %-4s %6.1fs  STOPPED: %s; console %s\n", r.node.Name, time.Since(vm.Started).Seconds(), r.problem, r.console)
			return
		}
		at := time.Since(vm.Started)
		r.at[i], r.reached = at, i+1
		if i == len(steps)-1 {
			r.booted = qemutests.BootedRE.FindString(line)
		}
		d.o.printf("  %-4s %6.1fs  %s\n", r.node.Name, at.Seconds(), s.say(r.node, line))
	}
}

// fail records the node's first problem.
func (r *nodeRun) fail(format string, args ...any) {
	if r.problem == "" {
		r.problem = fmt.Sprintf(format, args...)
	}
}

// report prints the timeline and a line per node, and returns what failed
// (err is RunProgram's: the harness's own failures), naming the logs.
func (d *demo) report(err error) error {
	o := d.o
	if len(d.nodes) > 0 {
		o.printf("\n== timeline: seconds from power-on\n")
		head := fmt.Sprintf("   %-5s", "node")
		for _, s := range steps {
			head += fmt.Sprintf(" %10s", s.name)
		}
		o.printf("%s\n", head)
		for _, r := range d.nodes {
			row := fmt.Sprintf("   %-5s", r.node.Name)
			for i := range steps {
				cell := "-"
				if i < r.reached {
					cell = fmt.Sprintf("%.1f", r.at[i].Seconds())
				}
				row += fmt.Sprintf(" %10s", cell)
			}
			o.printf("%s\n", row)
		}
		o.printf("\n== result (BOOTED: seconds from power-on to the installed system's line)\n")
	}
	var failed []string
	tw := tabwriter.NewWriter(o, 0, 0, 2, ' ', 0)
	if len(d.nodes) > 0 {
		fmt.Fprintf(tw, "   NODE\tMAC\tIP\tBYTES\tVERIFIED\tBOOTED\tTHE INSTALLED SYSTEM SAID\n")
	}
	for _, r := range d.nodes {
		n := r.node
		if r.problem != "" {
			failed = append(failed, fmt.Sprintf("%s (%s): %s; console %s", n.Name, n.MAC, r.problem, r.console))
			fmt.Fprintf(tw, "   %s\t%s\t%s\t%d\t%s\t-\tFAILED: %s\n", n.Name, n.MAC, n.IP, r.bytes, yesNo(r.verified), r.problem)
			continue
		}
		fmt.Fprintf(tw, "   %s\t%s\t%s\t%d\t%s\t%.1fs\t%s\n", n.Name, n.MAC, n.IP, r.bytes, yesNo(r.verified), r.at[len(steps)-1].Seconds(), r.booted)
	}
	tw.Flush()
	failed = append(failed, d.problems...)
	if err != nil {
		failed = append(failed, err.Error())
	}
	took := time.Since(d.start).Round(time.Second)
	if len(failed) > 0 {
		o.printf("\nherd demo FAILED after %v:\n", took)
		for _, f := range failed {
			o.indent(firstLines(f, 12))
		}
		serve := ""
		if d.serveLogs != "" {
			serve = "; herd serve: " + d.serveLogs
		}
		o.printf("logs: %s (demo.log: this output and the harness's log with the consoles' last lines%s)\n", d.logDir, serve)
		var names []string
		for _, r := range d.nodes {
			if r.problem != "" {
				names = append(names, r.node.Name)
			}
		}
		msg := firstLine(failed[0])
		if d.interrupted.Load() {
			msg = "interrupted"
		} else if len(names) > 0 {
			msg = fmt.Sprintf("%d of %d node(s) failed: %s", len(names), len(d.nodes), strings.Join(names, ", "))
		}
		return fmt.Errorf("%s (see above; logs in %s)", msg, d.logDir)
	}
	o.printf("\nherd demo: %d of %d nodes installed, verified and booted their own disks as themselves in %v\n", len(d.nodes), len(d.nodes), took)
	o.printf("logs: %s (demo.log: this output and the harness's log; n1.console.log ...: the consoles; serve-1.out, serve-1.err: herd serve)\n", d.logDir)
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// firstLines is s's first n lines, and " ..." when there are more.
func firstLines(s string, n int) string {
	lines := strings.SplitAfter(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "")
	}
	return strings.Join(lines[:n], "") + "   ..."
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
