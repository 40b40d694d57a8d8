package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/herdproject/herd/agent"
	"github.com/herdproject/herd/bmc"
	"github.com/herdproject/herd/campaign"
	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/imagebuilder/diskimage"
	"github.com/herdproject/herd/internal/logging"
	"github.com/herdproject/herd/pxe/bootlayout"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/metrics"
	"github.com/herdproject/herd/pxe/nodestate"
	"github.com/herdproject/herd/pxe/services"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/sender"
	"github.com/spf13/pflag"
)

// bootFlags are the boot-service options of herd pxe and herd serve.
type bootFlags struct {
	iface, inv, stateDir, bootDir, serverIP, kernelArgs, plan, planDir *string
	uefiFile, logFormat                                                *string
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
		logFormat:  fs.String("log-format", "plain", "`FORMAT` of the messages on standard error: plain (one line each) or json (one object per line, with level, time and fields, for log collectors)"),
		uefiFile:   fs.String("uefi-file", bootlayout.UEFISNP, "boot `FILE` (in the boot tree) for UEFI PXE clients: snponly.efi drives the NIC through the firmware, ipxe.efi with iPXE's own drivers"),
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
	}
	if _, ok := logging.ParseFormat(*b.logFormat); !ok {
		return c, usagef("--log-format %q: want plain or json", *b.logFormat)
	}
	c.Log = b.logger(env, "", verbose)
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

// logger is the commands' logger for prog's messages ("" for the boot
// services', whose messages name their service), in --log-format.
func (b *bootFlags) logger(env Env, prog string, verbose bool) *slog.Logger {
	format, _ := logging.ParseFormat(*b.logFormat) // checked by config
	return logging.New(env.Stderr, prog, logging.Level(verbose), format)
}

const pxeUsage = `Usage: herd pxe --interface IF [OPTIONS]

Run the boot services on the boot network until interrupted: DHCP (or
proxyDHCP with --proxy) with the inventory's reservations, TFTP for the
iPXE and pxelinux binaries, HTTP for per-node iPXE scripts, pxelinux
configurations, kernel, initramfs and images, the agents' API, a status
page (/) and Prometheus metrics (/metrics).

A node whose install reported done boots from its disk at the next reset;
'herd nodes reinstall NAME|all' switches it back.

Configuration file: the options can be kept in herd.conf, TOML with the
options' long names as keys (interface = "br0", power = true,
register-timeout = "10m", file = ["disk.img.zst >> /dev/sda"]): the file
--config names, else /etc/herd/herd.conf when it exists ($HERD_CONFIG
names another; --config none reads none). The command line wins over the
file; herd serve and herd pxe share it (herd pxe skips herd serve's keys).
--print-config prints the merged options as a herd.conf and exits.

Options:
`

func herdPXE(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("herd pxe", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	conf := addConfFlags(fs)
	b := addBootFlags(fs)
	ports := addPortFlags(fs)
	verbose := fs.BoolP("verbose", "v", false, "log every request")
	if err := parseFlags(fs, env, pxeUsage, args, " (see herd pxe --help)"); err != nil {
		return err
	}
	if printed, err := conf.apply(env, fs, "herd pxe", serveFlagSet()); err != nil || printed {
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
	b.logger(env, "herd pxe", *verbose).Info(fmt.Sprintf("serving %d node(s) on %s", len(inv.Nodes), *b.iface), "nodes", len(inv.Nodes), "interface", *b.iface)
	return services.Run(ctx, cfg)
}

const serveUsage = `Usage: herd serve --interface IF (--input IMAGE --output DEVICE | --file 'IN > OUT'... | -f DOLLY-CONFIG) [OPTIONS]

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

The files to send can also come from a dolly, openSUSE dolly or dolly+
configuration file: -f FILE (--session-config FILE; herd send's --config),
whose hosts are ignored (the nodes are the inventory's).

Configuration file: the options can be kept in herd.conf, TOML with the
options' long names as keys (interface = "br0", power = true,
register-timeout = "10m", file = ["disk.img.zst >> /dev/sda"]): the file
--config names, else /etc/herd/herd.conf when it exists ($HERD_CONFIG
names another; --config none reads none). The command line wins over the
file; herd serve and herd pxe share it, each taking its own keys.
--print-config prints the merged options as a herd.conf and exits.

Exit status: 0 every expected node installed and verified; 1 otherwise;
2 bad usage, a bad herd.conf, a bad inventory or a bad plan.

Options:
`

// serveFlags are herd serve's options.
type serveFlags struct {
	boot                                              *bootFlags
	send                                              *sendFlags
	conf                                              *confFlags
	minNodes, powerCycles                             *int
	waitTimeout, reportWait, stage2Wait, registerWait *time.Duration
	once, power                                       *bool
	stage2, stage2Out, stage2Mount, pwFile, bmcCA     *string
}

func addServeFlags(fs *pflag.FlagSet) *serveFlags {
	s := &serveFlags{conf: addConfFlags(fs), boot: addBootFlags(fs)}
	s.minNodes = fs.Int("min", 0, "start when `N` nodes registered (default: every inventory node)")
	s.waitTimeout = secondsFlag(fs, "wait-timeout", "", "wait at most this `DURATION` for the nodes to register (default 30m)")
	s.once = fs.Bool("once", false, "exit after the session (and the agents' reports) instead of serving on")
	s.reportWait = secondsFlag(fs, "report-wait", "", "with --once, wait at most this `DURATION` for the agents' final reports (default 2m)")
	s.stage2 = fs.String("stage2", "", "first send this filesystem `IMAGE` (squashfs, ext4, ISO 9660) into every node's RAM; the agents mount it and use its tools")
	s.stage2Out = fs.String("stage2-output", "/dev/ram0", "where the nodes keep the stage2: a brd ramdisk /dev/ramN or a `PATH` on tmpfs")
	s.stage2Mount = fs.String("stage2-mount", agent.DefaultStage2Mount, "where the agents mount the stage2 (`DIR`)")
	s.stage2Wait = secondsFlag(fs, "stage2-wait", "", "wait at most this `DURATION` for the agents to mount the stage2 and run its hook (default 35m)")
	s.power = fs.Bool("power", false, "drive the nodes' BMCs (the inventory's bmc=): set them to boot from the network and power them on at the start, power-cycle a node that has not registered within --register-timeout, set verified nodes to boot from disk")
	s.pwFile = fs.String("bmc-password-file", "", "with --power: `FILE` holding the BMCs' password (else $HERD_BMC_PASSWORD)")
	s.registerWait = secondsFlag(fs, "register-timeout", "", "with --power: power-cycle a node that has not registered within this `DURATION` (default 10m)")
	s.powerCycles = fs.Int("power-cycles", 2, "with --power: power cycles before giving up on a node that does not register")
	s.bmcCA = fs.String("bmc-ca-file", "", "with --power: verify Redfish BMCs' certificates against the authorities in this PEM `FILE` (without it, any certificate is taken)")
	s.send = addSessionFlags(fs)
	return s
}

// addSessionFlags is addSendFlags with the dolly session file's --config
// named --session-config (-f still): herd serve's --config is herd.conf.
func addSessionFlags(fs *pflag.FlagSet) *sendFlags {
	tmp := pflag.NewFlagSet(fs.Name(), pflag.ContinueOnError)
	tmp.SortFlags = false
	f := addSendFlags(tmp)
	tmp.VisitAll(func(fl *pflag.Flag) {
		if fl.Name == "config" {
			fl.Name = "session-config"
			fl.Usage = "dolly/dolly+ configuration `FILE`: the files to send (its hosts are not used: the nodes are the inventory's)"
		}
		fs.AddFlag(fl)
	})
	return f
}

// serveFlagSet is a flag set of herd serve's options, parsing nothing:
// herd pxe checks herd serve's keys of herd.conf in it.
func serveFlagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("herd serve", pflag.ContinueOnError)
	fs.SortFlags = false
	addServeFlags(fs)
	return fs
}

func herdServe(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("herd serve", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	sf := addServeFlags(fs)
	b, f := sf.boot, sf.send
	if err := refusePasswordArgs(args, false); err != nil {
		return err
	}
	if err := parseFlags(fs, env, serveUsage, args, " (see herd serve --help)"); err != nil {
		return err
	}
	if printed, err := sf.conf.apply(env, fs, "herd serve", nil); err != nil || printed {
		return err
	}
	if *f.config != "" && (*f.input != "" || len(*f.files) > 0 || *f.dirs != "") {
		return usagef("--session-config cannot be combined with --input, --file or --dirs")
	}
	if *sf.powerCycles < 1 {
		return usagef("--power-cycles %d: want at least 1", *sf.powerCycles)
	}
	var bmcPw string
	var bmcOpts bmc.Options
	if *sf.power {
		var err error
		if bmcPw, err = bmcPassword(env, *sf.pwFile); err != nil {
			return err
		}
		if bmcOpts.TLSRoots, err = bmcRoots(*sf.bmcCA); err != nil {
			return err
		}
	}
	// Unset durations are 0: the campaign's defaults.
	var stage2File *plan.File
	if *sf.stage2 != "" {
		stage2File = &plan.File{Input: *sf.stage2, Output: *sf.stage2Out, Mount: *sf.stage2Mount}
		p := plan.Session{Files: []plan.File{*stage2File}, Hosts: []string{"placeholder"}}
		if err := p.Validate(); err != nil {
			return usagef("--stage2: %v", err)
		}
		if _, err := os.Stat(*sf.stage2); err != nil {
			return usagef("--stage2: %v", err)
		}
	}
	inv, fileStore, err := b.open()
	if err != nil {
		return err
	}
	if len(inv.Nodes) == 0 {
		return usagef("inventory %s lists no node", *b.inv)
	}
	// Every change of a node's state goes through the timed store: the
	// install and step durations of /metrics.
	m := metrics.New(fileStore, nil)
	st := m.Store()
	if *sf.minNodes < 0 || *sf.minNodes > len(inv.Nodes) {
		return usagef("--min %d: the inventory has %d node(s)", *sf.minNodes, len(inv.Nodes))
	}
	// The session's options, parsed once: each session gets a copy with
	// its nodes as the hosts.
	o0, err := f.options(env, fs, "herd serve", "")
	if err != nil {
		return err
	}
	cfg, err := b.config(env, inv, st, *f.verbose)
	if err != nil {
		return err
	}
	o0.log = b.logger(env, "herd serve", *f.verbose)
	cfg.Metrics = m.Handler()
	// The agents listen where the sender dials.
	cfg.Ring = contract.Ring{DataPort: o0.cfg.DataPort, ControlPort: o0.cfg.ControlPort, ReportPort: o0.cfg.ReportPort,
		Window: o0.cfg.Window, Chunks: o0.cfg.PoolChunks}
	if o0.cfg.Key.Set() {
		// The agents need the key too; the boot entries carry it.
		cfg.KernelArgs = strings.TrimSpace(cfg.KernelArgs + " " + contract.KeyArg(string(o0.cfg.Key)))
		o0.log.Warn("the agents get the ring key in their boot entries (herd.key=): whoever can read the boot network can read it")
	}

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	svcDone := make(chan struct{})
	var svcErr error
	go func() { svcErr = services.Run(sctx, cfg); close(svcDone) }()
	stopped := func() error {
		select {
		case <-svcDone:
			if svcErr == nil {
				return errors.New("boot services stopped")
			}
			return svcErr
		default:
			return nil
		}
	}

	cc := campaign.Config{
		Inventory: inv, Store: st, Want: *sf.minNodes, WaitTimeout: *sf.waitTimeout,
		Stage2: stage2File, Stage2Wait: *sf.stage2Wait, Once: *sf.once, ReportWait: *sf.reportWait,
		Fresh: *f.fresh, Stopped: stopped, Out: env.Stdout,
		Log: o0.log,
		Send: func(ctx context.Context, s campaign.Session) (*sender.Report, error) {
			rep, err := serveSession(ctx, env, o0, s)
			m.Session(s.Kind, rep, err)
			return rep, err
		},
	}
	if *f.state != "none" {
		cc.SessionsDir = filepath.Join(*b.stateDir, "sessions")
	}
	if *sf.power {
		cc.Power = &bmcPower{password: bmcPw, opts: bmcOpts, store: st}
		cc.RegisterTimeout, cc.PowerCycles = *sf.registerWait, *sf.powerCycles
	}
	if *b.plan == "" {
		// Why UEFI nodes without a plan could not boot the session's
		// images ("" = they can), read once from the images' heads.
		cc.Unbootable = noESP(ctx, o0.cfg.Plan.Files)
	}
	err = campaign.Run(ctx, cc)
	stop()
	<-svcDone
	return err
}

// serveSession runs one of herd serve's ring sessions: the options parsed
// once, with the session's nodes as hosts (their inventory addresses) and
// inventory names in the summary and the watch.
func serveSession(ctx context.Context, env Env, o0 *sendOpts, s campaign.Session) (*sender.Report, error) {
	return runSendReport(ctx, env, sessionOpts(o0, s))
}

// sessionOpts is a copy of o0 for session s.
func sessionOpts(o0 *sendOpts, s campaign.Session) *sendOpts {
	o := *o0
	o.cfg.Plan.Hosts = s.Hosts()
	o.cfg.Plan.Server = ""
	if s.Files != nil {
		o.cfg.Plan.Files = s.Files
	}
	if o.state == "" {
		o.cfg.StateFile = s.StateFile
	}
	o.rename = map[string]string{}
	for _, n := range s.Nodes {
		o.rename[n.IP.String()] = n.Name
	}
	o.cfg.Watch = func(r *sender.Report) {
		named := *r
		named.Nodes = slices.Clone(r.Nodes)
		for i, n := range named.Nodes {
			named.Nodes[i].Name = o.rename[n.Name]
		}
		if s.Watch != nil {
			s.Watch(&named)
		}
	}
	return &o
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
