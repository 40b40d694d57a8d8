package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/herdproject/herd/agent"
	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/imagebuilder/diskimage"
	"github.com/herdproject/herd/pxe/dhcp"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/nodestate"
	"github.com/herdproject/herd/pxe/services"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/sender"
	"github.com/spf13/pflag"
)

// bootFlags are the boot-service options of herd pxe and herd serve.
type bootFlags struct {
	iface, inv, stateDir, bootDir, serverIP, kernelArgs, plan, planDir *string
	uefiFile                                                           *string
	httpPort, tftpPort                                                 *int
	proxy, noDHCP, noRA, pxelinux                                      *bool
}

func addBootFlags(fs *pflag.FlagSet) *bootFlags {
	return &bootFlags{
		iface:      fs.StringP("interface", "i", "", "boot network `INTERFACE` (required)"),
		inv:        fs.String("inventory", nodestate.DefaultInventory, "inventory `FILE`: network and nodes (MAC, name, IP)"),
		stateDir:   fs.String("state-dir", nodestate.DefaultStateDir, "`DIR` keeping every node's boot state"),
		bootDir:    fs.String("boot-dir", "/var/lib/herd/boot", "boot tree `DIR` (kernel, initramfs, iPXE and pxelinux binaries)"),
		serverIP:   fs.String("server-ip", "", "this host's `ADDRESS` on the boot network (default: the interface's, in the inventory's subnet)"),
		kernelArgs: fs.String("kernel-args", "", "extra kernel `ARGS` for the install boot"),
		plan:       fs.String("plan", "", "install plan `FILE` (kickstart, or ka-deploy .desc) for the nodes whose inventory line names none"),
		planDir:    fs.String("plan-dir", "", "`DIR` holding the plans the inventory names (plan=NAME; default: the inventory's directory)"),
		httpPort:   fs.Int("http-port", 8080, "HTTP `PORT`"),
		tftpPort:   fs.Int("tftp-port", 69, "TFTP `PORT`"),
		proxy:      fs.Bool("proxy", false, "proxyDHCP: another server gives addresses, herd only boot information"),
		noDHCP:     fs.Bool("no-dhcp", false, "no DHCP at all (TFTP and HTTP only)"),
		noRA:       fs.Bool("no-ra", false, "do not answer IPv6 router solicitations"),
		pxelinux:   fs.Bool("pxelinux", false, "give BIOS clients pxelinux.0 instead of iPXE"),
		uefiFile:   fs.String("uefi-file", dhcp.DefaultUEFIFile, "boot `FILE` (in the boot tree) for UEFI PXE clients: snponly.efi drives the NIC through the firmware, ipxe.efi with iPXE's own drivers"),
	}
}

// open reads the inventory and opens the state store.
func (b *bootFlags) open() (*inventory.Inventory, *nodestate.Store, error) {
	inv, err := inventory.ParseFile(*b.inv)
	if err != nil {
		var pe *inventory.ParseError
		if errors.As(err, &pe) {
			return nil, nil, usageError{err}
		}
		return nil, nil, usagef("inventory: %v", err)
	}
	st, err := nodestate.Open(*b.stateDir, inv)
	if err != nil {
		return nil, nil, err
	}
	return inv, st, nil
}

func (b *bootFlags) config(env Env, inv *inventory.Inventory, st inventory.Store, verbose bool) (services.Config, error) {
	c := services.Config{
		Interface: *b.iface, Inventory: inv, Store: st, BootDir: *b.bootDir,
		HTTPPort: *b.httpPort, TFTPPort: *b.tftpPort, Proxy: *b.proxy, NoDHCP: *b.noDHCP,
		NoRA: *b.noRA, UsePxelinux: *b.pxelinux, UEFIFile: *b.uefiFile, KernelArgs: *b.kernelArgs,
		Logf: func(format string, args ...any) { fmt.Fprintf(env.Stderr, format+"\n", args...) },
	}
	if !verbose {
		c.Logf = func(format string, args ...any) {
			if strings.HasPrefix(format, "warning") {
				fmt.Fprintf(env.Stderr, format+"\n", args...)
			}
		}
	}
	if *b.iface == "" {
		return c, usagef("no boot interface: give --interface")
	}
	plans, err := loadPlans(env, inv, *b.plan, *b.planDir)
	if err != nil {
		return c, err
	}
	c.Plans = plans
	if *b.serverIP != "" {
		ip, err := netip.ParseAddr(*b.serverIP)
		if err != nil {
			return c, usagef("--server-ip %q: %v", *b.serverIP, err)
		}
		c.ServerIP = ip
	}
	return c, nil
}

const pxeUsage = `Usage: herd pxe --interface IF [OPTIONS]

Run the boot services on the boot network until interrupted: DHCP (or
proxyDHCP with --proxy) with the inventory's reservations, TFTP for the
iPXE and pxelinux binaries, HTTP for per-node iPXE scripts, pxelinux
configurations, kernel, initramfs and images, the agents' API, a status
page (/) and Prometheus metrics (/metrics).

A node whose install reported done boots from its disk at the next reset;
'herd nodes reinstall NAME|all' switches it back.

Options:
`

func herdPXE(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("herd pxe", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	b := addBootFlags(fs)
	ports := addPortFlags(fs)
	verbose := fs.BoolP("verbose", "v", false, "log every request")
	if err := parseFlags(fs, env, pxeUsage, args, " (see herd pxe --help)"); err != nil {
		return err
	}
	// Registering agents are told these ports: give herd send the same.
	var ring contract.Ring
	if err := ports.apply(&ring.DataPort, &ring.ControlPort, &ring.ReportPort); err != nil {
		return err
	}
	inv, st, err := b.open()
	if err != nil {
		return err
	}
	cfg, err := b.config(env, inv, st, *verbose)
	if err != nil {
		return err
	}
	cfg.Ring = ring
	fmt.Fprintf(env.Stderr, "herd pxe: serving %d node(s) on %s\n", len(inv.Nodes), *b.iface)
	return services.Run(ctx, cfg)
}

const serveUsage = `Usage: herd serve --interface IF (--input IMAGE --output DEVICE | --file 'IN > OUT'... | --config FILE) [OPTIONS]

The one command to run before pressing reset on the rack. It runs the
boot services (see herd pxe), waits until the inventory's nodes have
booted the herd agent and registered (all of them, or --min N, for at most
--wait-timeout), then sends the files through a ring of the registered
nodes in inventory order, with live progress. Nodes that verified their
data are switched to boot from disk; failed ones keep the install entry so
that their next reset retries. Nodes that never came are listed.

A node that stops during the session is bypassed; if it comes back while
the session runs (reset, agent registered again) it joins late and is fed
from the start. After the session herd serve keeps serving (the nodes
reboot through it) until interrupted, or exits with --once; meanwhile,
failed nodes that register again (reset them) get a session of their own
("AGAIN:"), as many times as needed. Interrupted, it exits 0 once every
inventory node is done.

Install plans: a node whose inventory line says plan=NAME (a file in
--plan-dir, default the inventory's directory), or every other node when
--plan FILE is given, gets that kickstart plan (or ka-deploy .desc). Its
agent partitions the disks, makes and mounts the filesystems, then takes
the session: a file the plan's image command names goes where it says,
other cooked files ('>>') unpack inside the new system at their output
path (--file 'root.tar.zst >> /'). Then fstab by UUID, the bootloader and
%post. Every plan is checked before anything is served.

Exit status: 0 every expected node installed and verified; 1 otherwise;
2 bad usage, a bad inventory or a bad plan.

Options:
`

func herdServe(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("herd serve", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	b := addBootFlags(fs)
	minNodes := fs.Int("min", 0, "start when `N` nodes registered (default: every inventory node)")
	waitTimeout := secondsFlag(fs, "wait-timeout", "", "wait at most this `DURATION` for the nodes to register (default 30m)")
	once := fs.Bool("once", false, "exit after the session (and the agents' reports) instead of serving on")
	reportWait := secondsFlag(fs, "report-wait", "", "with --once, wait at most this `DURATION` for the agents' final reports (default 2m)")
	stage2 := fs.String("stage2", "", "first send this filesystem `IMAGE` (squashfs, ext4, ISO 9660) into every node's RAM; the agents mount it and use its tools")
	stage2Out := fs.String("stage2-output", "/dev/ram0", "where the nodes keep the stage2: a brd ramdisk /dev/ramN or a `PATH` on tmpfs")
	stage2Mount := fs.String("stage2-mount", agent.DefaultStage2Mount, "where the agents mount the stage2 (`DIR`)")
	stage2Wait := secondsFlag(fs, "stage2-wait", "", "wait at most this `DURATION` for the agents to mount the stage2 and run its hook (default 35m)")
	f := addSendFlags(fs)
	if err := parseFlags(fs, env, serveUsage, args, " (see herd serve --help)"); err != nil {
		return err
	}
	if !fs.Changed("wait-timeout") {
		*waitTimeout = 30 * time.Minute
	}
	if !fs.Changed("report-wait") {
		*reportWait = 2 * time.Minute
	}
	if !fs.Changed("stage2-wait") {
		*stage2Wait = 35 * time.Minute
	}
	var stage2File *plan.File
	if *stage2 != "" {
		stage2File = &plan.File{Input: *stage2, Output: *stage2Out, Mount: *stage2Mount}
		p := plan.Plan{Files: []plan.File{*stage2File}, Hosts: []string{"placeholder"}}
		if err := p.Validate(); err != nil {
			return usagef("--stage2: %v", err)
		}
		if _, err := os.Stat(*stage2); err != nil {
			return usagef("--stage2: %v", err)
		}
	}
	inv, st, err := b.open()
	if err != nil {
		return err
	}
	if len(inv.Nodes) == 0 {
		return usagef("inventory %s lists no node", *b.inv)
	}
	if *minNodes < 0 || *minNodes > len(inv.Nodes) {
		return usagef("--min %d: the inventory has %d node(s)", *minNodes, len(inv.Nodes))
	}
	want := len(inv.Nodes)
	if *minNodes > 0 {
		want = *minNodes
	}
	// Validate the session's options now (with a placeholder host) so that
	// a bad flag fails before anything is served.
	o0, err := f.options(env, fs, "herd serve", inv.Nodes[0].IP.String())
	if err != nil {
		return err
	}
	cfg, err := b.config(env, inv, st, *f.verbose)
	if err != nil {
		return err
	}
	// The agents listen where the sender dials.
	cfg.Ring = contract.Ring{DataPort: o0.cfg.DataPort, ControlPort: o0.cfg.ControlPort, ReportPort: o0.cfg.ReportPort}
	if o0.cfg.Key.Set() {
		// The agents need the key too; the boot entries carry it.
		cfg.KernelArgs = strings.TrimSpace(cfg.KernelArgs + " " + contract.KeyArg(string(o0.cfg.Key)))
		fmt.Fprintf(env.Stderr, "herd serve: the agents get the ring key in their boot entries (herd.key=): whoever can read the boot network can read it\n")
	}

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	svcErr := make(chan error, 1)
	go func() { svcErr <- services.Run(sctx, cfg) }()

	// Why UEFI nodes without a plan could not boot the session's
	// images ("" = they can), read once from the images' heads.
	unbootable := ""
	if *b.plan == "" {
		unbootable = sessionNoESP(ctx, env, f, fs)
	}
	c := &campaign{f: f, fs: fs, st: st, stage2File: stage2File, stage2Wait: *stage2Wait}
	if *f.state != "none" {
		c.sessions = filepath.Join(*b.stateDir, "sessions")
	}
	// A session in progress when herd serve was killed is taken back
	// first: its nodes wait in it, not registered again.
	regd, from, err := c.pending(env, inv)
	if err != nil {
		return err
	}
	if regd == nil {
		if regd, err = waitRegistered(ctx, env, st, inv, want, *waitTimeout, svcErr); err != nil {
			return err
		}
	}
	nodes := refuseUnbootable(env, st, regd, unbootable)
	sessionStart := time.Now()
	refused := len(regd) - len(nodes)
	rep, nodes, failed, serr := c.run(ctx, env, nodes, from)
	failed += refused
	missing := missingNodes(inv, regd)
	if len(missing) > 0 {
		fmt.Fprintf(env.Stdout, "NEVER CAME: %d node(s): %s\n", len(missing), strings.Join(missing, ","))
	}
	result := serr
	if result == nil && (len(missing) > 0 || failed > 0) {
		result = fmt.Errorf("%d node(s) never came, %d failed", len(missing), failed)
	}
	if *once {
		// The agents customize their systems after the ring's verdict and
		// report then: keep serving until they have (or the wait ends).
		if rep != nil {
			waitReports(ctx, st, nodes, sessionStart, *reportWait)
			if bad := printReports(env, st, nodes, sessionStart); bad > 0 && result == nil {
				result = fmt.Errorf("%d node(s) failed after the ring (see REPORT lines)", bad)
			}
		}
		stop()
		<-svcErr
		return result
	}
	if rep != nil {
		go func() {
			waitReports(sctx, st, nodes, sessionStart, *reportWait)
			printReports(env, st, nodes, sessionStart)
		}()
	}
	fmt.Fprintf(env.Stderr, "herd serve: session over; still serving boot files (installed nodes boot from disk, failed ones install again when reset). Interrupt to stop.\n")
	// Second chances: a node that registers again (a failed node reset,
	// a late one) gets a session of its own.
	for {
		again, err := waitAgain(ctx, st, inv, svcErr)
		if err != nil {
			if ctx.Err() != nil {
				stop()
				<-svcErr
				return finalResult(st, inv, result)
			}
			return err
		}
		if again = refuseUnbootable(env, st, again, unbootable); len(again) == 0 {
			continue
		}
		var names []string
		for _, n := range again {
			names = append(names, n.Name)
		}
		fmt.Fprintf(env.Stdout, "AGAIN: %d node(s) registered: %s\n", len(again), strings.Join(names, ","))
		_, _, f2, err := c.run(ctx, env, again, "")
		if err == nil && f2 == 0 {
			fmt.Fprintf(env.Stdout, "AGAIN: %s installed and verified\n", strings.Join(names, ","))
		}
	}
}

// finalResult is herd serve's outcome when interrupted: success once every
// inventory node is done (second chances included), else the first
// session's error or the count of nodes not done.
func finalResult(st inventory.Store, inv *inventory.Inventory, first error) error {
	var left []string
	for _, n := range inv.Nodes {
		if s, err := st.Get(n.Name); err != nil || s.State != contract.StateDone {
			left = append(left, n.Name)
		}
	}
	switch {
	case len(left) == 0:
		return nil
	case first != nil:
		return first
	}
	return fmt.Errorf("%d node(s) not installed: %s", len(left), strings.Join(left, ","))
}

// campaign is what herd serve's sessions share.
type campaign struct {
	f          *sendFlags
	fs         *pflag.FlagSet
	st         inventory.Store
	stage2File *plan.File
	stage2Wait time.Duration
	// sessions is the directory of the sessions' state files (a
	// restarted herd serve resumes the one in progress); "" keeps none.
	sessions string
}

// Session kinds, and their state files' names in campaign.sessions.
const (
	sessionStage2  = "stage2"
	sessionInstall = "install"
)

// stateFile is the state file of a session of kind.
func (c *campaign) stateFile(kind string) string {
	if c.sessions == "" {
		return ""
	}
	return filepath.Join(c.sessions, kind+".json")
}

// pending finds a session that was in progress when herd serve stopped:
// its nodes (in the session's order) and its kind, or nil. With --fresh
// there is none: the session that comes drops it.
func (c *campaign) pending(env Env, inv *inventory.Inventory) ([]inventory.Node, string, error) {
	if c.sessions == "" || *c.f.fresh {
		return nil, "", nil
	}
	for _, kind := range []string{sessionStage2, sessionInstall} {
		if kind == sessionStage2 && c.stage2File == nil {
			continue
		}
		path := c.stateFile(kind)
		hosts, err := sender.StateHosts(path)
		if err != nil {
			return nil, "", fmt.Errorf("%w (or start with --fresh)", err)
		}
		if hosts == nil {
			continue
		}
		var nodes []inventory.Node
		for _, h := range hosts {
			n, ok := inv.ByIP(h)
			if !ok {
				return nil, "", usagef("state file %s names node %s, which the inventory no longer has: start with --fresh", path, h)
			}
			nodes = append(nodes, n)
		}
		fmt.Fprintf(env.Stderr, "herd serve: the %s session was in progress when herd serve stopped (state file %s): resuming it with its %d node(s)\n", kind, path, len(nodes))
		return nodes, kind, nil
	}
	return nil, "", nil
}

// run sends the stage2 (when set) and then the install session to nodes,
// and returns the install session's report, the nodes it went to, and how
// many nodes failed on the way. from, when set, is the session to begin
// with (one being resumed).
func (c *campaign) run(ctx context.Context, env Env, nodes []inventory.Node, from string) (*sender.Report, []inventory.Node, int, error) {
	failed := 0
	if c.stage2File != nil && from != sessionInstall {
		// Stage 1 → 2: the stage2 goes to every node's RAM first; the
		// install session goes to those that mounted it.
		stage2File := c.stage2File
		fmt.Fprintf(env.Stdout, "STAGE2: %s > %s, mounted at %s\n", stage2File.Input, stage2File.Output, stage2File.Mount)
		since := time.Now()
		rep, err := c.session(ctx, env, nodes, []plan.File{*stage2File}, false, sessionStage2)
		if rep == nil {
			return nil, nil, len(nodes), err
		}
		var ok []inventory.Node
		for _, n := range nodes {
			if slices.ContainsFunc(rep.Nodes, func(r sender.NodeReport) bool { return r.Name == n.Name && r.State == sender.StateDone && r.Verified }) {
				ok = append(ok, n)
			} else {
				failed++
			}
		}
		ready := waitStage2(ctx, env, c.st, ok, since, c.stage2Wait)
		failed += len(ok) - len(ready)
		nodes = ready
	}
	if len(nodes) == 0 {
		return nil, nil, failed, errors.New("no node left for the install session")
	}
	if c.stage2File != nil {
		fmt.Fprintf(env.Stdout, "INSTALL: %d node(s)\n", len(nodes))
	}
	rep, serr := c.session(ctx, env, nodes, nil, true, sessionInstall)
	if rep != nil {
		failed += len(rep.Failed())
	}
	return rep, nodes, failed, serr
}

// againSettle is how long herd serve waits for more nodes after one
// registered again, to send them one session.
const againSettle = 5 * time.Second

// waitAgain waits until nodes registered again after a session (a failed
// node reset, a node that came late) and returns them in inventory order,
// once no other one came for againSettle.
func waitAgain(ctx context.Context, st inventory.Store, inv *inventory.Inventory, svcErr <-chan error) ([]inventory.Node, error) {
	var first time.Time
	last := 0
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		list, err := st.List()
		if err != nil {
			return nil, err
		}
		var regd []inventory.Node
		for _, s := range list {
			if n, ok := inv.ByName(s.Name); ok && s.State == contract.StateRegistered {
				regd = append(regd, n)
			}
		}
		switch {
		case len(regd) == 0:
			first = time.Time{}
		case len(regd) != last:
			first = time.Now()
		case time.Since(first) >= againSettle || len(regd) == len(inv.Nodes):
			return regd, nil
		}
		last = len(regd)
		if err := nextTick(ctx, svcErr, tick); err != nil {
			return nil, err
		}
	}
}

// session runs one ring session (of kind: its state file) to nodes (in inventory order) and
// records each node's outcome: failed, or -- when final -- done (which
// switches it to local boot); a verified node of a stage2 session stays
// installing. files, when set, replace the session's files.
func (c *campaign) session(ctx context.Context, env Env, nodes []inventory.Node, files []plan.File, final bool, kind string) (*sender.Report, error) {
	f, fs, st := c.f, c.fs, c.st
	var hosts []string
	byIP := map[string]string{}
	for _, n := range nodes {
		hosts = append(hosts, n.IP.String())
		byIP[n.IP.String()] = n.Name
		// herd serve's own updates leave LastReport to the nodes' reports.
		_ = st.Update(n.Name, func(s *inventory.Status) error {
			return nodestate.Transition(s, contract.StateInstalling, "", time.Time{})
		})
	}
	o, err := f.options(env, fs, "herd serve", strings.Join(hosts, ","))
	if err != nil {
		return nil, err
	}
	if files != nil {
		o.cfg.Plan.Files = files
		o.cfg.Plan.Server = ""
	}
	if o.state == "" {
		o.cfg.StateFile = c.stateFile(kind)
	}
	o.rename = byIP
	o.cfg.Watch = func(r *sender.Report) {
		for _, n := range r.Nodes {
			name := byIP[n.Name]
			_ = st.Update(name, func(s *inventory.Status) error {
				s.Bytes, s.Rate = n.Received, n.Rate
				return nil
			})
		}
	}
	rep, serr := runSendReport(ctx, env, o)
	if rep != nil {
		for _, n := range rep.Nodes { // the summary already shows inventory names
			to, reason := contract.StateDone, ""
			if n.State != sender.StateDone || !n.Verified {
				to, reason = contract.StateFailed, n.Reason
			} else if !final {
				continue
			}
			_ = st.Update(n.Name, func(s *inventory.Status) error {
				return nodestate.Transition(s, to, reason, time.Time{})
			})
		}
	}
	return rep, serr
}

// waitStage2 waits until every node reported that it mounted the stage2
// (an "installing" report since the stage2 session began) and returns
// those that did; the others are marked failed.
func waitStage2(ctx context.Context, env Env, st inventory.Store, nodes []inventory.Node, since time.Time, d time.Duration) []inventory.Node {
	deadline := time.Now().Add(d)
	ready := func(n inventory.Node) (bool, bool) { // reported, ok
		s, err := st.Get(n.Name)
		if err != nil || !s.LastReport.After(since) {
			return false, false
		}
		return true, s.State == contract.StateInstalling
	}
	for {
		all := true
		for _, n := range nodes {
			if rep, _ := ready(n); !rep {
				all = false
				break
			}
		}
		if all || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	var out []inventory.Node
	for _, n := range nodes {
		switch rep, ok := ready(n); {
		case ok:
			out = append(out, n)
		case rep:
			fmt.Fprintf(env.Stderr, "herd serve: %s failed after the stage2 (see herd nodes show %s)\n", n.Name, n.Name)
		default:
			fmt.Fprintf(env.Stderr, "herd serve: %s did not report the stage2 mounted within %v\n", n.Name, d)
			_ = st.Update(n.Name, func(s *inventory.Status) error {
				return nodestate.Transition(s, contract.StateFailed, fmt.Sprintf("no report after the stage2 within %v", d), time.Time{})
			})
		}
	}
	return out
}

// waitRegistered waits until want nodes registered (or the timeout), and
// returns the registered ones in inventory order.
func waitRegistered(ctx context.Context, env Env, st inventory.Store, inv *inventory.Inventory, want int, timeout time.Duration, svcErr <-chan error) ([]inventory.Node, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var lastSay time.Time
	for {
		list, err := st.List()
		if err != nil {
			return nil, err
		}
		var regd []inventory.Node
		for _, s := range list {
			if s.State == contract.StateRegistered {
				if n, ok := inv.ByName(s.Name); ok {
					regd = append(regd, n)
				}
			}
		}
		switch {
		case len(regd) >= want:
			return regd, nil
		case time.Now().After(deadline):
			if len(regd) == 0 || len(regd) < want && want < len(inv.Nodes) {
				return nil, fmt.Errorf("only %d of %d node(s) registered within %v: never came: %s", len(regd), want, timeout, strings.Join(missingNodes(inv, regd), ","))
			}
			fmt.Fprintf(env.Stderr, "herd serve: %d of %d node(s) registered within %v; going on without %s\n", len(regd), len(inv.Nodes), timeout, strings.Join(missingNodes(inv, regd), ","))
			return regd, nil
		}
		if time.Since(lastSay) >= 5*time.Second {
			lastSay = time.Now()
			fmt.Fprintf(env.Stderr, "herd serve: %d of %d node(s) registered; waiting for %s\n", len(regd), want, strings.Join(missingNodes(inv, regd), ","))
		}
		if err := nextTick(ctx, svcErr, tick); err != nil {
			return nil, err
		}
	}
}

// nextTick waits for tick, and fails when the boot services stop or ctx
// ends first.
func nextTick(ctx context.Context, svcErr <-chan error, tick *time.Ticker) error {
	select {
	case err := <-svcErr:
		if err == nil {
			err = errors.New("boot services stopped")
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-tick.C:
		return nil
	}
}

func missingNodes(inv *inventory.Inventory, regd []inventory.Node) []string {
	var out []string
	for _, n := range inv.Nodes {
		if !slices.ContainsFunc(regd, func(r inventory.Node) bool { return r.Name == n.Name }) {
			out = append(out, n.Name)
		}
	}
	return out
}

// sessionNoESP is noESP of the session's files ("" when the options do
// not parse: the session reports that).
func sessionNoESP(ctx context.Context, env Env, f *sendFlags, fs *pflag.FlagSet) string {
	o, err := f.options(env, fs, "herd serve", "placeholder")
	if err != nil {
		return ""
	}
	return noESP(ctx, o.cfg.Plan.Files)
}

// refuseUnbootable fails, before the session, the nodes that would
// receive an image they cannot boot, and returns the others: a node whose
// agent registered as booted by UEFI, without an install plan, when why
// (noESP of the session's files) says no whole-disk image has an EFI
// System Partition (the demo's MBR image with syslinux, say). Nothing is
// written to those nodes; they keep their install boot entry.
func refuseUnbootable(env Env, st inventory.Store, nodes []inventory.Node, why string) []inventory.Node {
	if why == "" {
		return nodes
	}
	var keep []inventory.Node
	for _, n := range nodes {
		s, err := st.Get(n.Name)
		if n.Plan != "" || err != nil || s.Firmware != contract.FirmwareUEFI {
			keep = append(keep, n)
			continue
		}
		reason := "this node booted by UEFI, and " + why + ": it could not boot it, so nothing was written to it; send an image with a GPT and an EFI System Partition (herd image build makes one), or switch the node's firmware to legacy BIOS boot"
		fmt.Fprintf(env.Stdout, "REFUSED: %s: %s\n", n.Name, reason)
		_ = st.Update(n.Name, func(s *inventory.Status) error {
			return nodestate.Transition(s, contract.StateFailed, reason, time.Time{})
		})
	}
	return keep
}

// noESP says which whole-disk images of files have no EFI System
// Partition, when none of them has one ("" otherwise, or when the
// session writes no whole-disk image). A file counts as a whole-disk
// image when it goes to a device and its first MiB holds a partition
// table (a filesystem image for a partition has none).
func noESP(ctx context.Context, files []plan.File) string {
	var disks []string
	for _, pf := range files {
		if pf.Mount != "" || pf.Input == "" || len(pf.Dirs) > 0 || !strings.HasPrefix(pf.Output, "/dev/") {
			continue
		}
		info, err := diskimage.InspectHead(ctx, pf.Input)
		if err != nil || info.Table == nil {
			continue
		}
		if info.HasESP() {
			return ""
		}
		label := info.Table.Label
		if info.NoGPT != "" {
			label += ", GPT not read: " + info.NoGPT
		}
		disks = append(disks, fmt.Sprintf("the image %s (%s partition table) has no EFI System Partition", pf.Input, label))
	}
	return strings.Join(disks, "; ")
}

// printReports prints a REPORT line per node with its agent's final
// report since the session started (the ring verified the data; the
// agent then customizes, installs the boot loader or boot entry, and may
// still fail), and returns how many reported failed.
func printReports(env Env, st inventory.Store, nodes []inventory.Node, since time.Time) int {
	bad := 0
	for _, n := range nodes {
		s, err := st.Get(n.Name)
		switch {
		case err != nil:
			fmt.Fprintf(env.Stdout, "REPORT: %s: %v\n", n.Name, err)
		case !s.LastReport.After(since):
			fmt.Fprintf(env.Stdout, "REPORT: %s: no report from its agent yet (state %s)\n", n.Name, s.State)
		case s.State == contract.StateFailed:
			bad++
			fmt.Fprintf(env.Stdout, "REPORT: %s: failed: %s\n", n.Name, s.Reason)
		default:
			fmt.Fprintf(env.Stdout, "REPORT: %s: %s\n", n.Name, s.State)
		}
	}
	return bad
}

// waitReports waits until every node has reported (its agent's final
// report) since the session started, for at most d.
func waitReports(ctx context.Context, st inventory.Store, nodes []inventory.Node, since time.Time, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		all := true
		for _, n := range nodes {
			s, err := st.Get(n.Name)
			final := s.State == contract.StateDone || s.State == contract.StateFailed
			if err != nil || !final || !s.LastReport.After(since) {
				all = false
				break
			}
		}
		if all {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
