package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/relay"
	"github.com/herdproject/herd/ring/sender"
	"github.com/herdproject/herd/ring/source"
	"github.com/herdproject/herd/ring/wire"
	"github.com/spf13/pflag"
)

const herdUsage = `Usage: herd COMMAND [OPTIONS]

herd installs and refreshes Linux clusters over the network. Its transfer
engine streams images through a TCP ring (or tree) of nodes: each node
writes the stream and forwards it at the same time, so cloning to 500
nodes takes about as long as cloning to one.

Commands:
  send      send files, devices or directory trees through a ring of nodes
  recv      be a ring node: receive, write, verify and forward one session
  serve     boot services + wait for the rack's agents + the ring session
  pxe       boot services only: DHCP/proxyDHCP, TFTP, HTTP, status page
  nodes     list nodes and their boot state; reinstall NAME|all
  power     power status/on/off/cycle/reset and boot device through the BMCs
  agent     the boot-stage agent the herd initramfs runs
  build     build boot: kernel + herd initramfs + iPXE/pxelinux boot tree
  image     golden images: build one, capture a disk, show an image's info
  plan      check an install plan (kickstart, ka-deploy description)
  version   print the version

The compatibility entry points dolly, dollyS and dollyC take the command
lines of dolly and dolly+; herd also answers to those names when called
through a link.

Run 'herd COMMAND --help' for a command's options.
`

// Herd is the herd command.
func Herd(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, herdUsage)
		return ExitUsage
	}
	switch args[0] {
	case "send":
		return status(env, "herd send", herdSend(ctx, args[1:], env))
	case "recv", "receive":
		return status(env, "herd recv", herdRecv(ctx, args[1:], env))
	case "pxe":
		return status(env, "herd pxe", herdPXE(ctx, args[1:], env))
	case "serve":
		return status(env, "herd serve", herdServe(ctx, args[1:], env))
	case "build":
		return status(env, "herd build", herdBuild(ctx, args[1:], env))
	case "agent":
		return status(env, "herd agent", herdAgent(ctx, args[1:], env))
	case "nodes":
		return status(env, "herd nodes", herdNodes(ctx, args[1:], env))
	case "power":
		return status(env, "herd power", herdPower(ctx, args[1:], env))
	case "image":
		return status(env, "herd image", herdImage(ctx, args[1:], env))
	case "plan":
		return status(env, "herd plan", herdPlan(ctx, args[1:], env))
	case "version", "--version", "-V":
		return status(env, "herd version", herdVersion(ctx, args[1:], env))
	case "help", "--help", "-h":
		fmt.Fprint(env.Stdout, herdUsage)
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "herd: unknown command %q\n\n%s", args[0], herdUsage)
	return ExitUsage
}

// ByName picks the entry point for a program name (argv[0]), so one
// binary can be installed as herd, dolly, dollyS and dollyC.
func ByName(argv0 string) Main {
	switch strings.TrimSuffix(filepath.Base(argv0), ".exe") {
	case "dolly":
		return Dolly
	case "dollyS":
		return DollyS
	case "dollyC":
		return DollyC
	case "init":
		// The golden image's /init and /sbin/init (imagebuilder/golden).
		if os.Getpid() == 1 {
			return goldenInit
		}
	}
	return Herd
}

const sendUsage = `Usage: herd send [OPTIONS] (--config FILE | --hosts LIST (--input IN [--output OUT] | --file 'IN > OUT'... | --dirs DIR,...))

Send files, block devices or directory trees to every node of a ring.

Each node must run 'herd recv' (or dolly, dollyC). herd send contacts every
node on its control port (9997), and each node checks that it can write
every output -- it writes nothing yet. Nodes that cannot be reached or
refuse are reported failed; the others are linked into a chain (or a tree
with --fanout) and the inputs are read once and streamed through it. Every
node writes the stream and forwards it at the same time, computes the
digest of what it wrote (--digest: the tree digest, BLAKE3 over 1 MiB
leaves, by default; or SHA-256) and reports it; herd send compares it with
its own.

Failures: a node that resets or makes no progress for --bypass-timeout is
bypassed (its upstream feeds the next node from where that one is) and
reported failed with the reason. While the session runs, herd send keeps
trying the nodes that could not be reached or stopped; one that answers
again joins late and is fed from the start (--no-late-join turns that off).
--failed FILE writes the failed nodes' names; --only-failed FILE runs a
session for just those. Killed (SIGKILL, a crash), herd send leaves the
nodes waiting for --sender-wait; the same command started again resumes
the session from its state file (--state), unless the input changed
(refused; --fresh starts anew).

Files:
  --input/--output send one file; --file 'IN > OUT' (raw) or 'IN >> OUT'
  (cooked: decoded by the input's name: .gz .zst .xz .Z .tar .tar.gz .tgz
  .tar.Z .tar.zst .cpio .cpio.gz .cpio.Z; archives unpack under OUT) may be
  repeated, as dolly+'s iofiles. --config takes dolly's, openSUSE dolly's
  or dolly+'s configuration files. OUT "-" writes to the node's standard
  output. Zero blocks travel as holes: regular files stay sparse, block
  devices get zeros written.

Output:
  live progress on standard error (a table on a terminal, a line every 5
  seconds otherwise), then one line per node on standard output:
  NODE STATE BYTES SECONDS MB/s VERIFIED REASON, and dolly's totals
  (Time, MBytes/s, Aggregate MBytes/s).

Exit status:
  0 every node verified every file; 1 the session ran and some node
  failed; 2 bad usage, configuration or input (nothing was sent).

Options:
`

// sendFlags are the ring-session options shared by herd send and herd
// serve (which takes its hosts from the inventory).
type sendFlags struct {
	config, input, output, dirs, exclude, block, sockBuf, logFile, keyFile *string
	window, congestion, verify, state, digest                              *string
	files                                                                  *[]string
	fanout, retries, chunks                                                *int
	timeout, dummy, bypass, senderWait                                     *time.Duration
	requireAll, noSync, ipv6, activate, verbose, quiet, noLateJoin, fresh  *bool
	noDigestCache                                                          *bool
	ports                                                                  portFlags
}

func addSendFlags(fs *pflag.FlagSet) *sendFlags {
	f := &sendFlags{
		config:     fs.StringP("config", "f", "", "dolly/dolly+ configuration `FILE`"),
		input:      fs.StringP("input", "I", "", "input `FILE` or device"),
		output:     fs.StringP("output", "O", "", "output `PATH` on the nodes (default: same as --input); - for standard output"),
		files:      fs.StringArray("file", nil, "`'IN > OUT'` (raw) or 'IN >> OUT' (cooked); repeatable"),
		dirs:       fs.StringP("dirs", "D", "", "send these directory trees (`DIR[,DIR]`) to --output on the nodes"),
		exclude:    fs.StringP("exclude", "X", "", "with --dirs, leave out `PATTERN[,PATTERN]`"),
		fanout:     fs.Int("fanout", 1, "children per node: 1 is a chain, 2 a binary tree, ..."),
		timeout:    secondsFlag(fs, "timeout", "a", "fail when no data moved for this `DURATION` (30 or 30s, 2m); 0 waits forever"),
		bypass:     secondsFlag(fs, "bypass-timeout", "", "bypass a node that is frozen or unreachable for this `DURATION`, or alive but making no progress (slow disk aside) for 2-3 times as long (default 5s, or half of -a); a node that resets is bypassed at once"),
		window:     fs.String("window", "64M", "recent stream `SIZE` each process keeps to feed a node again after a bypass (older data is re-read from the input)"),
		retries:    fs.IntP("retries", "r", 5, "tries to reach each node, a second apart (at least one)"),
		requireAll: fs.Bool("require-all", false, "abort before anything is written when any node fails set-up"),
		state:      fs.String("state", "", "keep what a restarted sender needs to resume the session in `FILE`, written atomically while it runs and removed when it ends: the same command started again after herd was killed resumes the session (default: a file per command under "+stateDirHelp+"; none: keep nothing)"),
		fresh:      fs.Bool("fresh", false, "start a new session even when the state file holds an unfinished one (whose nodes are told to drop it); without it, a state file of the same command with other input data is refused"),
		senderWait: secondsFlag(fs, "sender-wait", "", "nodes keep the session this `DURATION` when the sender goes away, waiting for it to be started again (default 5m; 0: their session ends at once)"),
		noLateJoin: fs.Bool("no-late-join", false, "do not take back, during the session, nodes that could not be reached or stopped (by default they are tried every 2s and fed from the start when they answer)"),
		block:      fs.StringP("block-size", "b", "", "transfer block `SIZE` (default 512K, 256K beyond 16 nodes)"),
		chunks:     fs.Int("chunks", 8, "blocks in flight per process (memory = chunks x block size)"),
		sockBuf:    fs.StringP("buffer-size", "u", "", "TCP socket buffer `SIZE`"),
		congestion: fs.String("tcp-congestion", sender.DefaultCongestion, "TCP congestion control `NAME` of the data connections, the nodes' too; "+sender.SystemCongestion+" keeps each machine's own"),
		noSync:     fs.BoolP("no-sync", "n", false, "nodes do not fsync their outputs"),
		verify:     fs.String("verify", "", "how nodes verify their outputs, `MODE`: readback (after the stream, re-read them from the disk with O_DIRECT: a disk that returns other bytes than written fails its node; herd serve's default) or stream (the digest of the stream as it was written; herd send's default)"),
		ipv6:       fs.BoolP("ipv6", "6", false, "resolve host names to IPv6 addresses"),
		dummy:      secondsFlag(fs, "dummy", "t", "benchmark: send generated data for this `DURATION` (10 or 10s); nodes write nothing"),
		activate:   fs.BoolP("systemd", "d", false, "poke each node's report port first (systemd socket activation)"),
		logFile:    fs.StringP("log", "o", "", "append dolly's statistics lines to `FILE`"),
		keyFile:    fs.String("key-file", "", "ring key `FILE`: connections authenticated both ways, every frame MACed; nodes need the same key"),
		verbose:    fs.BoolP("verbose", "v", false, "print set-up messages"),
		quiet:      fs.BoolP("quiet", "q", false, "no progress display"),
		ports:      addPortFlags(fs),
	}
	f.digest = fs.String("digest", string(digest.Default), "`ALG` the nodes and the sender verify every file with: tree (BLAKE3 over 1 MiB leaves: about 3x faster than SHA-256, and holes cost nothing) or sha256 (the SHA-256 of the stream, as sha256sum prints it); every node must compute it (an older herd computes sha256 only)")
	f.noDigestCache = fs.Bool("no-digest-cache", false, "hash every input: by default an input whose digest cache (IMAGE"+source.DigestCacheSuffix+", written by herd image info and capture) still matches its size, times and inode is not hashed by the sender (the nodes still hash what they receive, so a stale cache fails them)")
	return f
}

// options turns the flags into a session; hosts is the -H list ("" when
// the hosts come from elsewhere: a configuration file, or herd serve's
// inventory, which sets them per session).
func (f *sendFlags) options(env Env, fs *pflag.FlagSet, prog, hosts string) (*sendOpts, error) {
	o := &sendOpts{prog: prog, verbose: *f.verbose, quiet: *f.quiet, logFile: *f.logFile}
	c := &o.cfg
	var err error
	if *f.block != "" {
		if c.ChunkSize, err = parseSize(*f.block, "--block-size"); err != nil {
			return nil, err
		}
	}
	if *f.sockBuf != "" {
		if c.SockBuf, err = parseSize(*f.sockBuf, "--buffer-size"); err != nil {
			return nil, err
		}
	}
	if c.Congestion, err = parseCongestion(env, prog, *f.congestion); err != nil {
		return nil, err
	}
	switch {
	case *f.config != "":
		if hosts != "" || *f.input != "" || len(*f.files) > 0 || *f.dirs != "" {
			return nil, usagef("--config cannot be combined with --hosts, --input, --file or --dirs")
		}
		if err := loadConfig(env, prog, *f.config, &c.Plan); err != nil {
			return nil, err
		}
	case len(*f.files) > 0:
		if *f.input != "" || *f.dirs != "" {
			return nil, usagef("--file cannot be combined with --input or --dirs")
		}
		if err := commandLinePlan(&c.Plan, "x", "x", hosts, "", "", false); err != nil {
			return nil, err
		}
		c.Plan.Files = nil
		for _, spec := range *f.files {
			pf, err := parseFileSpec(spec)
			if err != nil {
				return nil, err
			}
			c.Plan.Files = append(c.Plan.Files, pf)
		}
	default:
		if err := commandLinePlan(&c.Plan, *f.input, *f.output, hosts, *f.dirs, *f.exclude, *f.dummy > 0); err != nil {
			return nil, err
		}
	}
	if fs.Changed("fanout") || c.Plan.Fanout == 0 {
		c.Plan.Fanout = *f.fanout
	}
	if c.Key, err = readKeyFile("--key-file", *f.keyFile); err != nil {
		return nil, err
	}
	c.PoolChunks = *f.chunks
	c.Timeout = *f.timeout
	c.Retries = max(*f.retries, 1) // one try at least, as dolly's -r 0
	c.Bypass = *f.bypass
	if c.Window, err = parseSize(*f.window, "--window"); err != nil {
		return nil, err
	}
	if c.Window < 1<<20 {
		return nil, usagef("--window %q: want at least 1M (a few blocks)", *f.window)
	}
	c.RequireAll = *f.requireAll
	c.NoLateJoin = *f.noLateJoin
	o.state = *f.state
	c.Fresh = *f.fresh
	c.SenderWait = *f.senderWait
	if fs.Changed("sender-wait") && c.SenderWait == 0 {
		c.SenderWait = -1 // no wait at all (0 is the default's)
	}
	c.NoSync = *f.noSync
	c.NoDigestCache = *f.noDigestCache
	if c.Digest, err = parseDigest(*f.digest); err != nil {
		return nil, err
	}
	if c.Verify, err = parseVerify(prog, *f.verify); err != nil {
		return nil, err
	}
	c.Dummy = *f.dummy
	c.Activate = *f.activate
	if *f.ipv6 {
		c.Network = "ip6"
	}
	if err := f.ports.apply(&c.DataPort, &c.ControlPort, &c.ReportPort); err != nil {
		return nil, err
	}
	return o, nil
}

func herdSend(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("herd send", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	hosts := fs.StringP("hosts", "H", "", "nodes in ring order, comma-separated; ranges like 10.0.1.45-80 or node[01-16]")
	kill := fs.StringP("kill", "K", "", "send nothing: tell the waiting nodes `HOST[,HOST...]` to stop (with --key-file when they have a key)")
	failedFile := fs.String("failed", "", "after the session, write the nodes that failed to `FILE` (one per line, with the reason)")
	onlyFailed := fs.String("only-failed", "", "send only to the nodes listed in `FILE` (written by --failed), then rewrite it with those that fail again")
	f := addSendFlags(fs)
	if err := parseFlags(fs, env, sendUsage, args, " (see herd send --help)"); err != nil {
		return err
	}
	if *kill != "" {
		key, err := readKeyFile("--key-file", *f.keyFile)
		if err != nil {
			return err
		}
		cfg := sender.Config{Key: key}
		if err := f.ports.apply(&cfg.DataPort, &cfg.ControlPort, &cfg.ReportPort); err != nil {
			return err
		}
		return runKill(ctx, env, "herd send", cfg, *kill)
	}
	if *hosts == "" && *f.config == "" {
		return errNoClients
	}
	o, err := f.options(env, fs, "herd send", *hosts)
	if err != nil {
		return err
	}
	if *onlyFailed != "" {
		names, err := readFailed(*onlyFailed)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			fmt.Fprintf(env.Stderr, "herd send: %s lists no failed node: nothing to send\n", *onlyFailed)
			return nil
		}
		o.cfg.Plan.Hosts = names
		if *failedFile == "" {
			*failedFile = *onlyFailed
		}
	}
	rep, err := runSendReport(ctx, env, o)
	if *failedFile != "" && rep != nil {
		if werr := writeFailed(*failedFile, rep); werr != nil {
			return errors.Join(err, werr)
		}
	}
	return err
}

// writeFailed writes the nodes of rep that failed to path, one per line
// with the reason after a '#'.
func writeFailed(path string, rep *sender.Report) error {
	var b strings.Builder
	for _, n := range rep.Failed() {
		reason := strings.ReplaceAll(n.Reason, "\n", " ")
		if reason == "" {
			reason = string(n.State)
		}
		fmt.Fprintf(&b, "%s # %s\n", n.Name, reason)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("--failed: %w", err)
	}
	return nil
}

// readFailed reads the node names of a --failed file: the first word of
// each line; blank lines and '#' comments are skipped.
func readFailed(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--only-failed: %v", err)
	}
	var names []string
	for i, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case len(f) > 1 || strings.ContainsAny(f[0], ",;"):
			return nil, usagef("--only-failed: %s line %d: want one node name per line, got %q", path, i+1, strings.TrimSpace(line))
		default:
			names = append(names, f[0])
		}
	}
	return names, nil
}

// parseFileSpec reads "IN > OUT" or "IN >> OUT".
func parseFileSpec(spec string) (plan.File, error) {
	mode, sep := plan.Raw, ">"
	if strings.Contains(spec, ">>") {
		mode, sep = plan.Cooked, ">>"
	}
	in, out, ok := strings.Cut(spec, sep)
	in, out = strings.TrimSpace(in), strings.TrimSpace(out)
	if !ok || in == "" || out == "" || strings.Contains(out, ">") {
		return plan.File{}, usagef("--file %q: want 'IN > OUT' or 'IN >> OUT'", spec)
	}
	return plan.File{Input: in, Output: out, Mode: mode}, nil
}

const recvUsage = `Usage: herd recv [OPTIONS]

Be a ring node: wait for a sender (herd send, dolly -s, dollyS) on the
control port, check the outputs it asks for, receive the stream on the data
port from the previous node while writing it, hashing it and forwarding it
to the next node(s), then report the digest of every file written (the
one the sender names: the tree digest or SHA-256).

A node finds itself in the sender's host list by the address the sender
reached it on (or --listen), then its interface addresses, then MYNODENAME,
HOSTNAME or HOST, then its host name. Several nodes can share one machine
with --listen 127.0.0.2, --listen 127.0.0.3, ...

A sender that goes away mid-session (killed, its machine restarted) may
come back: the node keeps the session for the time the sender asked
(herd send --sender-wait, default 5m), says so in its log, goes on
receiving from its upstream, and answers the sender started again with
what it has.

Exit status: 0 the session's files were all written and hashed; 1 it
failed; 2 bad usage.

Options:
`

func herdRecv(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("herd recv", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	listen := fs.StringP("listen", "L", "", "listen on this `ADDRESS` only")
	serve := fs.Bool("serve", false, "keep serving sessions instead of exiting after one")
	timeout := secondsFlag(fs, "timeout", "a", "fail when no data arrived for this `DURATION` (30 or 30s)")
	noSync := fs.BoolP("no-sync", "n", false, "do not fsync outputs")
	chunks := fs.Int("chunks", 8, "blocks in flight")
	verbose := fs.BoolP("verbose", "v", false, "print progress")
	keyFile := fs.String("key-file", "", "ring key `FILE`: take sessions and data only from holders of the same key")
	allow := fs.StringArray("allow", nil, "write only to outputs matching `PATTERN` (e.g. '/dev/vd*'); repeatable")
	window := fs.String("window", "64M", "recent stream `SIZE` kept to feed the next nodes again when a child stops")
	ports := addPortFlags(fs)
	if err := parseFlags(fs, env, recvUsage, args, " (see herd recv --help)"); err != nil {
		return err
	}
	cfg := relay.Config{ListenAddr: *listen, Once: !*serve, Verbose: *verbose, NoSync: *noSync, Timeout: *timeout, PoolChunks: *chunks, Allow: *allow}
	for _, p := range *allow {
		if _, err := filepath.Match(p, ""); err != nil || !filepath.IsAbs(p) {
			return usagef("--allow %q: want an absolute shell pattern such as '/dev/vd*'", p)
		}
	}
	if err := ports.apply(&cfg.DataPort, &cfg.ControlPort, &cfg.ReportPort); err != nil {
		return err
	}
	var err error
	if cfg.Window, err = parseSize(*window, "--window"); err != nil {
		return err
	}
	if cfg.Key, err = readKeyFile("--key-file", *keyFile); err != nil {
		return err
	}
	return runRecv(ctx, env, "herd recv", cfg)
}

// seconds is a duration flag that also takes a plain number of seconds, as
// dolly's -a and -t do.
type seconds time.Duration

// String is "0" for zero, which pflag takes for no default to show.
func (s *seconds) String() string {
	if *s == 0 {
		return "0"
	}
	return time.Duration(*s).String()
}
func (s *seconds) Type() string { return "duration" }
func (s *seconds) Set(v string) error {
	if n, err := strconv.ParseFloat(v, 64); err == nil && n >= 0 {
		*s = seconds(time.Duration(n * float64(time.Second)))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("want seconds (30) or a duration (30s, 2m)")
	}
	*s = seconds(d)
	return nil
}

func secondsFlag(fs *pflag.FlagSet, name, short, usage string) *time.Duration {
	var s seconds
	fs.VarP(&s, name, short, usage)
	return (*time.Duration)(&s)
}

// parseVerify maps --verify MODE onto sender.Config.Verify: "" for
// stream, wire.VerifyReadback for readback. Unset, herd serve (installs)
// reads back and herd send does not.
func parseVerify(prog, mode string) (string, error) {
	if mode == "" {
		mode = "stream"
		if prog == "herd serve" {
			mode = "readback"
		}
	}
	switch mode {
	case "stream":
		return "", nil
	case "readback":
		return wire.VerifyReadback, nil
	}
	return "", usagef("--verify %q: want readback (each node re-reads what it wrote from its disk) or stream (the digest of the stream only)", mode)
}

// parseCongestion checks a --tcp-congestion NAME (a kernel algorithm's
// name, or sender.SystemCongestion) and warns when this machine does not
// offer it (the nodes may).
func parseCongestion(env Env, prog, name string) (string, error) {
	if name == sender.SystemCongestion {
		return name, nil
	}
	if !congestionName.MatchString(name) {
		return "", usagef("--tcp-congestion %q: want an algorithm's name (cubic, reno, bbr, ...) or %s", name, sender.SystemCongestion)
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control"); err == nil && !slices.Contains(strings.Fields(string(b)), name) {
		fmt.Fprintf(env.Stderr, "%s: warning: --tcp-congestion %s: this machine offers only %s; its own connections keep the system's\n", prog, name, strings.TrimSpace(string(b)))
	}
	return name, nil
}

// congestionName is what the kernel accepts as an algorithm's name
// (TCP_CA_NAME_MAX is 16 with the NUL).
var congestionName = regexp.MustCompile(`^[a-z0-9_]{1,15}$`)
